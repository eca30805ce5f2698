"""A topology decision as what the etcd applier writes: Calico v3 BGPPeers and cluster IDs."""

from __future__ import annotations

from hooks.calico import label_value
from hooks.controllers import TopologyDecision
from hooks.datastores.etcd import DesiredState


def desired_state(decision: TopologyDecision) -> DesiredState:
    """Every planned RR gets its cluster ID; an RR of the previous plan that left, or a node still
    carrying the RR label (a lost status), is cleared."""
    plan, settings = decision.plan, decision.settings
    if plan is None or settings is None:
        raise ValueError("a decision without a plan has nothing to apply")
    peers = tuple(
        {"name": peer["metadata"]["name"], "spec": peer["spec"]} for peer in decision.bgp_peers
    )
    cluster_ids: dict[str, str | None] = {rr.node: None for rr in decision.previous.routeReflectors}
    cluster_ids.update({rr.node: rr.cluster_id for rr in plan.reflectors})
    return DesiredState(owner=label_value(decision.owner), peers=peers, cluster_ids=cluster_ids)
