"""What the picture shows: zones, their RRs and groups, and a colour per shared cluster ID."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hooks.calico import GROUP_LABEL, REFLECTOR_LABEL, label_value
from hooks.offline import PlanResult
from hooks.plan_view import natural
from hooks.selectors import SelectorError, parse_selector
from hooks.sessions import nodes_from_objects
from hooks.wire import GroupWire, ReflectorWire, TopologyStatusWire

NEUTRAL = "#5b6b7c"  # RRs whose cluster ID nobody else shares
SPINE_COLOUR = "#2b6cb0"
RACK_COLOUR = "#c05621"  # every rack: a tile shows which RRs share a rack's ID, not a colour
PALETTE = (
    "#2b6cb0",
    "#c05621",
    "#2f855a",
    "#9b2c2c",
    "#6b46c1",
    "#b83280",
    "#2c7a7b",
    "#975a16",
    "#1a4971",
    "#434190",
)


@dataclass(frozen=True)
class Reflector:
    node: str
    zone: str
    cluster_id: str
    state: str
    role: str
    serves: str | None
    clients: int


@dataclass(frozen=True)
class Group:
    name: str
    zone: str
    reflectors: tuple[str, ...]
    clients: int
    rack: str | None = None


@dataclass(frozen=True)
class Zone:
    name: str
    counts: Mapping[str, int]
    reflectors: tuple[Reflector, ...]
    groups: tuple[Group, ...]


@dataclass(frozen=True)
class Scene:
    topology: str
    zones: tuple[Zone, ...]
    loose_groups: tuple[Group, ...]  # groups serving no zone drawn here (e.g. the spine)
    colours: Mapping[str, str]  # cluster ID → fill
    rr_sessions: int
    domain: str  # the DNS suffix every RR name shares, left out of the drawing


def _common_domain(names: Sequence[str]) -> str:
    """The longest `.suffix` that all names share (`.eu-west-1.compute.internal`), if any."""
    if len(names) < 2:
        return ""
    first = names[0]
    for i, char in enumerate(first):
        if char == "." and all(n.endswith(first[i:]) and len(n) > len(first) - i for n in names):
            return first[i:]
    return ""


def short(name: str, domain: str) -> str:
    return name[: len(name) - len(domain)] if domain and name.endswith(domain) else name


def _clients_by_group(
    result: PlanResult, status: TopologyStatusWire, groups: Sequence[GroupWire]
) -> dict[str, int]:
    """Clients per group name: non-RR nodes whose group label names the group."""
    rr_names = {rr.node for rr in status.routeReflectors}
    by_label: dict[str, str] = {}
    for group in groups:
        by_label.setdefault(group.name, group.name)
        by_label.setdefault(label_value(group.name), group.name)
    counts = dict.fromkeys((g.name for g in groups), 0)
    for node in result.nodes:
        meta = node.get("metadata", {})
        labels = meta.get("labels") or {}
        if meta.get("name") in rr_names or REFLECTOR_LABEL in labels:
            continue
        named = by_label.get(labels.get(GROUP_LABEL, ""))
        if named is not None:
            counts[named] += 1
    return counts


def _reflector(raw: ReflectorWire, groups: Iterable[Group]) -> Reflector:
    clients = sum(g.clients for g in groups if raw.node in g.reflectors)
    return Reflector(raw.node, raw.zone, raw.clusterID, raw.state, raw.role, raw.serves, clients)


def _colours(reflectors: Iterable[Reflector], topology: str) -> dict[str, str]:
    """A palette colour per cluster ID shared by two or more RRs, in drawing order; in hierarchy
    one colour for the spine and one for every rack (hundreds of racks would repeat a palette,
    and look as if they shared IDs)."""
    seen: dict[str, int] = {}
    if topology == "hierarchy":
        return {
            rr.cluster_id: SPINE_COLOUR if rr.role == "spine" else RACK_COLOUR
            for rr in reflectors
            if rr.role in ("spine", "rack")
        }
    for rr in reflectors:
        seen[rr.cluster_id] = seen.get(rr.cluster_id, 0) + 1
    shared = [cid for cid, count in seen.items() if count > 1]
    return {cid: PALETTE[i % len(PALETTE)] for i, cid in enumerate(shared)}


def _drawing_order(rr: Reflector) -> tuple[int, str, str]:
    return (0 if rr.role == "spine" else 1, rr.serves or "", rr.node)


def _zones(
    status: TopologyStatusWire, rrs: Sequence[Reflector], groups: Sequence[Group]
) -> list[Zone]:
    raw = {z.name: z for z in status.zones}
    names = sorted(set(raw) | {rr.zone for rr in rrs})
    keys = ("nodes", "ready", "eligible", "demand", "expected")
    return [
        Zone(
            name=name,
            counts={k: getattr(raw[name], k) if name in raw else 0 for k in keys},
            reflectors=tuple(sorted((rr for rr in rrs if rr.zone == name), key=_drawing_order)),
            groups=tuple(g for g in groups if g.zone == name),
        )
        for name in names
    ]


def build_scene(result: PlanResult) -> Scene:
    status = result.typed_status
    raw_groups = sorted(status.groups, key=lambda g: natural(g.name))
    clients = _clients_by_group(result, status, raw_groups)
    groups = [
        Group(g.name, g.zone, tuple(g.reflectors), clients[g.name], g.rack or None)
        for g in raw_groups
    ]
    rrs = sorted(
        (_reflector(rr, groups) for rr in status.routeReflectors),
        key=lambda rr: rr.node,
    )
    zones = _zones(status, rrs, groups)
    drawn = {z.name for z in zones}
    return Scene(
        topology=status.topology or "?",
        zones=tuple(zones),
        loose_groups=tuple(g for g in groups if g.zone not in drawn),
        colours=_colours((rr for z in zones for rr in z.reflectors), status.topology),
        rr_sessions=_reflector_sessions(result, {rr.node for rr in rrs}),
        domain=_common_domain([rr.node for rr in rrs]),
    )


def _reflector_sessions(result: PlanResult, rr_names: set[str]) -> int:
    """RR↔RR BGP sessions the BGPPeers make (each unordered pair once)."""
    labels = {n.name: n.labels for n in nodes_from_objects(result.nodes) if n.name in rr_names}
    pairs: set[tuple[str, str]] = set()
    for peer in result.bgp_peers:
        spec = peer.get("spec", {})
        try:
            left = parse_selector(str(spec.get("nodeSelector", "")))
            right = parse_selector(str(spec["peerSelector"]))
        except (KeyError, SelectorError):
            continue
        ones = [n for n, lab in labels.items() if left.matches(lab)]
        others = [n for n, lab in labels.items() if right.matches(lab)]
        pairs.update((min(a, b), max(a, b)) for a in ones for b in others if a != b)
    return len(pairs)
