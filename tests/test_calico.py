"""BGPPeer rendering: a selector over Calico's 1,024-character limit is split into BGPPeers."""

from __future__ import annotations

from hooks.calico import (
    REFLECTOR_LABEL,
    SELECTOR_LIMIT,
    bgp_peer_name,
    reflector_token,
    render_bgp_peers,
)
from hooks.config import load_settings
from hooks.model import AllReflectors, Peering, Plan, Reflectors
from hooks.selectors import parse_selector

SETTINGS = load_settings({}, {})
OWNER = "default"


def plan_with(*peerings: Peering) -> Plan:
    return Plan("multi", (), (), (), peerings)


def test_a_selector_over_the_limit_is_split_into_disjoint_bgp_peers_covering_every_rr() -> None:
    names = tuple(f"ip-10-0-{i // 256}-{i % 256}.eu-west-1.compute.internal" for i in range(90))
    peering = Peering("rrs", Reflectors(names), AllReflectors())

    peers = render_bgp_peers(plan_with(peering), SETTINGS, OWNER)

    assert len(peers) > 1
    base = bgp_peer_name(OWNER, "rrs")
    assert [p["metadata"]["name"] for p in peers] == sorted(
        f"{base}-{i + 1}" for i in range(len(peers))
    )
    covered: list[str] = []
    for peer in peers:
        node_selector = peer["spec"]["nodeSelector"]
        assert len(node_selector) <= SELECTOR_LIMIT
        assert peer["spec"]["peerSelector"] == peers[0]["spec"]["peerSelector"]
        selector = parse_selector(node_selector)
        covered += [n for n in names if selector.matches({REFLECTOR_LABEL: reflector_token(n)})]
    assert sorted(covered) == sorted(names)  # each RR in exactly one part


def test_a_selector_within_the_limit_stays_one_bgp_peer() -> None:
    names = tuple(f"rr-{i}" for i in range(5))

    peers = render_bgp_peers(
        plan_with(Peering("rrs", Reflectors(names), AllReflectors())), SETTINGS, OWNER
    )

    assert [p["metadata"]["name"] for p in peers] == [bgp_peer_name(OWNER, "rrs")]
    assert len(peers[0]["spec"]["nodeSelector"]) <= SELECTOR_LIMIT


def test_both_sides_over_the_limit_give_every_pair_of_parts() -> None:
    left = tuple(f"left-node-number-{i:03d}.example.internal" for i in range(60))
    right = tuple(f"right-node-number-{i:03d}.example.internal" for i in range(60))

    peers = render_bgp_peers(
        plan_with(Peering("x", Reflectors(left), Reflectors(right))), SETTINGS, OWNER
    )

    node_parts = {p["spec"]["nodeSelector"] for p in peers}
    peer_parts = {p["spec"]["peerSelector"] for p in peers}
    assert len(node_parts) > 1 and len(peer_parts) > 1
    assert len(peers) == len(node_parts) * len(peer_parts)
    assert all(len(s) <= SELECTOR_LIMIT for s in node_parts | peer_parts)
