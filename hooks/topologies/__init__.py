"""The topologies behind one interface: nodes + settings + what was there before → a Plan.

The package face only: each topology is a module (simple, multi, quorum, hierarchy) built from
the shared pieces in common.py, planes.py and rendezvous.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hooks.config import Settings
from hooks.model import NodeInfo, Plan
from hooks.previous import Previous
from hooks.topologies import hierarchy, multi, quorum, simple
from hooks.topologies.common import PlanError
from hooks.topologies.rendezvous import group_for

__all__ = ["Builder", "PlanError", "builder_for", "group_for"]

Builder = Callable[[Sequence[NodeInfo], Settings, Previous], Plan]

BUILDERS: dict[str, Builder] = {
    "simple": simple.build,
    "multi": multi.build,
    "quorum": quorum.build,
    "hierarchy": hierarchy.build,
}


def builder_for(settings: Settings) -> Builder:
    return BUILDERS[settings.topology]
