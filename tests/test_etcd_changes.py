"""What the etcd applier changes, computed on plain entries: order, ownership, held breaks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hooks.calico import OWNER_LABEL
from hooks.datastores.etcd_changes import Changes, DesiredState, plan_changes
from hooks.datastores.etcd_documents import (
    DELETE,
    NODES_PREFIX,
    OWNED_PREFIX,
    OWNER_UID_ANNOTATION,
    OWNERS_PREFIX,
    PEERS_PREFIX,
    STATUSES_PREFIX,
    DocumentError,
    Entry,
    Fresh,
    Step,
    dump,
)
from hooks.datastores.etcd_mesh import CONFIG_KEY, MESH_RECORD_KEY, MeshRecord
from hooks.datastores.etcd_sweep import HELD_BY_OUR_MAKE, SWEEP_GRACE, Liveness, MeshHeld

OWNER = "default"
OWNED = OWNED_PREFIX + OWNER + "/"
RECORD = b'{"routeReflectorClusterID":"224.0.0.1"}'


def fresh() -> Fresh:
    return Fresh(new_uid=lambda: "uid-new", created="2026-01-01T00:00:00Z")


def entry(key: str, document: Mapping[str, Any] | bytes, revision: int = 7) -> Entry:
    value = document if isinstance(document, bytes) else json.dumps(document).encode()
    return Entry(key=key, value=value, mod_revision=revision)


def node(name: str, cluster_id: str | None = None) -> Entry:
    bgp: dict[str, Any] = {"ipv4Address": "10.0.0.1/24"}
    if cluster_id is not None:
        bgp["routeReflectorClusterID"] = cluster_id
    document = {"kind": "Node", "metadata": {"name": name}, "spec": {"bgp": bgp, "other": [1]}}
    return entry(NODES_PREFIX + name, document)


def ours(name: str, group: str) -> Entry:
    document = {
        "kind": "BGPPeer",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, "uid": "old", "labels": {OWNER_LABEL: OWNER}},
        "spec": spec(group),
    }
    return entry(PEERS_PREFIX + name, document)


def foreign(name: str) -> Entry:
    document = {"kind": "BGPPeer", "metadata": {"name": name}, "spec": {"peerIP": "10.9.9.9"}}
    return entry(PEERS_PREFIX + name, document)


def spec(group: str) -> dict[str, str]:
    return {
        "nodeSelector": f"route-reflector.dev/group == '{group}'",
        "peerSelector": f"route-reflector.dev/reflector == '{group}'",
    }


def desired(peers: Mapping[str, str], cluster_ids: Mapping[str, str | None]) -> DesiredState:
    return DesiredState(
        owner=OWNER,
        peers=tuple({"name": name, "spec": spec(group)} for name, group in peers.items()),
        cluster_ids=dict(cluster_ids),
    )


def changes(
    state: DesiredState,
    peers: tuple[Entry, ...] = (),
    nodes: tuple[Entry, ...] = (),
    owned: tuple[str, ...] = (),
) -> Changes:
    records = {name: entry(OWNED + name, RECORD) for name in owned}
    return plan_changes(
        state,
        {e.key.rpartition("/")[2]: e for e in peers},
        {e.key.rpartition("/")[2]: e for e in nodes},
        records,
        fresh(),
    )


def outcome(step: Step, current: Entry | None) -> Any:
    """What the step writes on `current`: the parsed document, "delete", or None (no-op)."""
    result = step.change(current)
    if result is None or result is DELETE:
        return None if result is None else "delete"
    assert isinstance(result, bytes)
    return json.loads(result)


def test_a_first_plan_sets_cluster_ids_with_their_ownership_record_then_creates_peers() -> None:
    planned = changes(desired({"rr-a": "a"}, {"n1": "224.0.0.1"}), nodes=(node("n1"),))

    assert [step.key for step in planned.steps] == [NODES_PREFIX + "n1", PEERS_PREFIX + "rr-a"]
    set_id, create = planned.steps
    assert outcome(set_id, node("n1")) == json.loads(node("n1", "224.0.0.1").value)
    assert set_id.also == ((OWNED + "n1", RECORD),)
    assert outcome(create, None) == {
        "kind": "BGPPeer",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {
            "name": "rr-a",
            "uid": "uid-new",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {OWNER_LABEL: OWNER},
        },
        "spec": spec("a"),
    }


def test_a_converged_snapshot_needs_no_step() -> None:
    planned = changes(
        desired({"rr-a": "a"}, {"n1": "224.0.0.1", "n2": None}),
        peers=(ours("rr-a", "a"),),
        nodes=(node("n1", "224.0.0.1"), node("n2")),
        owned=("n1",),
    )

    assert planned.steps == ()


def test_a_changed_spec_keeps_the_peers_uid_and_labels() -> None:
    planned = changes(desired({"rr-a": "z"}, {}), peers=(ours("rr-a", "a"),))

    (update,) = planned.steps
    written = outcome(update, ours("rr-a", "a"))
    assert written["spec"] == spec("z")
    assert written["metadata"] == {"name": "rr-a", "uid": "old", "labels": {OWNER_LABEL: OWNER}}


def test_a_plan_change_makes_before_it_breaks() -> None:
    planned = changes(
        desired({"rr-g2": "g2"}, {"n1": None, "n2": "224.0.0.2"}),
        peers=(ours("rr-g1", "g1"),),
        nodes=(node("n1", "224.0.0.1"), node("n2")),
        owned=("n1",),
    )

    assert [(step.key, outcome(step, None) is not None) for step in planned.steps] == [
        (NODES_PREFIX + "n2", False),  # a change of an existing node: no-op on an absent key
        (PEERS_PREFIX + "rr-g2", True),
        (PEERS_PREFIX + "rr-g1", False),
        (NODES_PREFIX + "n1", False),
    ]
    assert outcome(planned.steps[2], ours("rr-g1", "g1")) == "delete"
    assert planned.steps[3].also == ((OWNED + "n1", DELETE),)
    cleared = outcome(planned.steps[3], node("n1", "224.0.0.1"))
    assert cleared == json.loads(node("n1").value)


@pytest.mark.parametrize(
    ("peers", "nodes", "conflicts", "missing"),
    [
        (
            (ours("rr-g1", "g1"), foreign("rr-g2")),
            (node("n1", "224.0.0.1"), node("n2")),
            {"rr-g2"},
            set(),
        ),
        ((ours("rr-g1", "g1"),), (node("n1", "224.0.0.1"),), set(), {"n2"}),
    ],
    ids=["foreign-peer-in-the-way", "reflector-without-calico-node"],
)
def test_a_make_that_cannot_happen_holds_every_break(
    peers: tuple[Entry, ...], nodes: tuple[Entry, ...], conflicts: set[str], missing: set[str]
) -> None:
    planned = changes(
        desired({"rr-g2": "g2"}, {"n1": None, "n2": "224.0.0.2"}), peers, nodes, owned=("n1",)
    )

    assert (set(planned.conflicts), set(planned.missing)) == (conflicts, missing)
    keys = [step.key for step in planned.steps]
    assert PEERS_PREFIX + "rr-g1" not in keys and NODES_PREFIX + "n1" not in keys
    assert PEERS_PREFIX + "rr-g2" not in keys or not conflicts


def test_a_foreign_peer_is_never_overwritten_or_deleted() -> None:
    planned = changes(desired({"rr-a": "a"}, {}), peers=(foreign("rr-a"), foreign("tor")))

    assert planned.steps == () and planned.conflicts == {"rr-a"}
    (create,) = changes(desired({"rr-a": "a"}, {})).steps
    # A foreign writer took the name between our read and our write: the change backs off.
    assert create.change(foreign("rr-a")) is None


def test_an_ownership_record_left_behind_clears_its_node_or_goes_alone() -> None:
    planned = changes(
        desired({}, {}),
        nodes=(node("n1", "224.0.0.1"), node("n2")),
        owned=("n1", "n2", "gone"),
    )

    assert [(step.key, step.also) for step in planned.steps] == [
        (OWNED + "gone", ()),
        (NODES_PREFIX + "n1", ((OWNED + "n1", DELETE),)),
        (OWNED + "n2", ()),
    ]


def test_a_node_that_is_not_json_stops_the_plan_before_any_step() -> None:
    broken = entry(NODES_PREFIX + "broken", b"{truncated")

    with pytest.raises(DocumentError, match="broken"):
        changes(desired({"rr-a": "a"}, {"broken": "224.0.0.2"}), nodes=(broken,))


NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


def live(*uids: str, owners: tuple[str, ...] = (OWNER,), now: datetime = NOW) -> Liveness:
    return Liveness(uids=frozenset(("uid-default", *uids)), owners=frozenset(owners), now=now)


def of(owner: str, name: str, uid: str | None) -> Entry:
    """A BGPPeer another owner wrote (`uid` None: before uids were recorded)."""
    metadata: dict[str, Any] = {"name": name, "labels": {OWNER_LABEL: owner}}
    if uid is not None:
        metadata["annotations"] = {OWNER_UID_ANNOTATION: uid}
    return entry(PEERS_PREFIX + name, {"kind": "BGPPeer", "metadata": metadata, "spec": {}})


def record(owner: str, uid: str, unseen: str | None = None) -> Entry:
    value = {"name": owner, "uid": uid} | ({"unseenSince": unseen} if unseen else {})
    return entry(OWNERS_PREFIX + owner, value)


def sweep(
    liveness: Liveness,
    peers: tuple[Entry, ...],
    owners: tuple[Entry, ...] = (),
    others: Mapping[str, tuple[str, ...]] | None = None,
    nodes: tuple[Entry, ...] = (),
    state: DesiredState | None = None,
    statuses: tuple[Entry, ...] = (),
    mesh: MeshHeld | None = None,
) -> Changes:
    base = state or desired({}, {})
    mine = DesiredState(
        owner=OWNER,
        peers=base.peers,
        cluster_ids=base.cluster_ids,
        uid="uid-default",
        name=OWNER,
        liveness=liveness,
    )
    records = {
        label: {n: entry(f"{OWNED_PREFIX}{label}/{n}", RECORD) for n in names}
        for label, names in (others or {}).items()
    }
    return plan_changes(
        mine,
        {e.key.rpartition("/")[2]: e for e in peers},
        {e.key.rpartition("/")[2]: e for e in nodes},
        {},
        fresh(),
        records,
        {e.key.rpartition("/")[2]: e for e in owners},
        {e.key.rpartition("/")[2]: e for e in statuses},
        mesh,
    )


def test_an_owner_no_sync_shows_is_marked_then_swept_after_the_grace() -> None:
    peers = (of("evil", "evil-rr-a", "uid-evil"),)
    first = sweep(live(), peers)
    (orphan,) = first.orphans
    assert (orphan.owner, orphan.uid, orphan.swept) == ("evil", "uid-evil", False)
    assert OWNERS_PREFIX + "evil" in [step.key for step in first.steps]

    marked = (record("evil", "uid-evil", "2026-11-26T10:00:00Z"),)
    early = sweep(live(now=NOW + SWEEP_GRACE - timedelta(seconds=1)), peers, marked)
    assert not early.orphans[0].swept and all(not step.sweeps for step in early.steps)
    late = sweep(live(now=NOW + SWEEP_GRACE), peers, marked)
    assert late.orphans[0].swept and late.orphans[0].held == ""
    assert [step.key for step in late.steps][-2:] == [
        OWNERS_PREFIX + "evil",
        PEERS_PREFIX + "evil-rr-a",
    ]


def test_an_owner_shown_again_is_unmarked_and_kept() -> None:
    peers = (of("other", "other-rr-a", "uid-other"),)
    marked = (record("other", "uid-other", "2026-11-26T10:00:00Z"),)

    planned = sweep(live("uid-other", now=NOW + 2 * SWEEP_GRACE), peers, marked)

    assert planned.orphans == ()
    (unmark,) = [step for step in planned.steps if step.key == OWNERS_PREFIX + "other"]
    assert outcome(unmark, marked[0]) == {"name": "other", "uid": "uid-other"}


def test_objects_without_a_uid_are_kept_while_their_label_names_a_live_topology() -> None:
    peers = (of("old", "old-rr-a", None), of("gone", "gone-rr-a", None))

    planned = sweep(live(owners=(OWNER, "old")), peers)

    assert [orphan.owner for orphan in planned.orphans] == ["gone"]


def test_nothing_is_swept_while_our_own_make_is_held_and_live_owners_keep_their_ids() -> None:
    peers = (of("evil", "evil-rr-a", "uid-evil"),)
    marked = (record("evil", "uid-evil", "2026-11-26T10:00:00Z"),)
    others = {"evil": ("n1", "n2"), "other": ("n2",)}
    nodes = (node("n1", "224.0.0.1"), node("n2", "224.0.0.1"))
    later = live("uid-other", now=NOW + SWEEP_GRACE)
    owners = (*marked, record("other", "uid-other"))

    held = sweep(later, peers, owners, others, nodes, desired({}, {"ghost": "224.0.0.9"}))
    assert not held.orphans[0].swept and all(step.sweeps == "" for step in held.steps)

    done = sweep(later, peers, owners, others, nodes)
    assert [(step.key, step.also) for step in done.steps if step.sweeps] == [
        (OWNERS_PREFIX + "evil", ()),
        (PEERS_PREFIX + "evil-rr-a", ()),
        (NODES_PREFIX + "n1", ((OWNED_PREFIX + "evil/n1", DELETE),)),
        (OWNED_PREFIX + "evil/n2", ()),  # n2 is other's RR: only evil's record goes
    ]


# --- CalicoNodeStatus requests, and the mesh an orphan switched off ------------------------------

STATUS_SPEC = {"node": "n1", "classes": ["BGP"], "updatePeriodSeconds": 10}


def status_of(owner: str | None, name: str, node: str = "n1") -> Entry:
    """A CalicoNodeStatus calico-node has reported into (`owner` None: not one of ours)."""
    metadata: dict[str, Any] = {"name": name}
    if owner is not None:
        metadata["labels"] = {OWNER_LABEL: owner}
    document = {
        "kind": "CalicoNodeStatus",
        "apiVersion": "projectcalico.org/v3",
        "metadata": metadata,
        "spec": STATUS_SPEC | {"node": node},
        "status": {"lastUpdated": "2026-11-26T10:00:00Z", "bgp": {"numberEstablishedV4": 2}},
    }
    return entry(STATUSES_PREFIX + name, document)


def test_status_requests_are_made_kept_as_reported_and_dropped_even_while_held() -> None:
    wanted = DesiredState(
        owner=OWNER,
        peers=(),
        cluster_ids={"ghost": "224.0.0.9"},  # no Calico Node: the make is held
        statuses=(
            {"name": "default-rr-n1", "spec": STATUS_SPEC},
            {"name": "default-rr-n2", "spec": STATUS_SPEC | {"node": "n2"}},
            {"name": "default-rr-n3", "spec": STATUS_SPEC | {"node": "n3"}},
        ),
    )
    found = (
        status_of(OWNER, "default-rr-n1"),  # as wanted, with calico-node's report: untouched
        status_of(None, "default-rr-n2", "n2"),  # someone else's under our name: never written
        status_of(OWNER, "default-rr-n9", "n9"),  # an RR that left
        status_of("other", "other-rr-n1"),
    )
    planned = plan_changes(
        wanted, {}, {}, {}, fresh(), statuses={e.key.rpartition("/")[2]: e for e in found}
    )

    assert planned.missing == {"ghost"}
    assert [step.key for step in planned.steps] == [
        STATUSES_PREFIX + "default-rr-n3",
        STATUSES_PREFIX + "default-rr-n9",
    ]
    create, drop = planned.steps
    assert outcome(create, None)["spec"] == STATUS_SPEC | {"node": "n3"}
    assert outcome(create, None)["kind"] == "CalicoNodeStatus"
    assert outcome(drop, found[2]) == "delete"
    changed = status_of(OWNER, "default-rr-n3", "n3")  # a spec of ours changed: status kept
    respecified = plan_changes(
        replace(wanted, statuses=({"name": "default-rr-n3", "spec": STATUS_SPEC},)),
        {},
        {},
        {},
        fresh(),
        statuses={"default-rr-n3": changed},
    )
    rewritten = outcome(respecified.steps[0], changed)
    assert rewritten["spec"] == STATUS_SPEC
    assert rewritten["status"] == json.loads(changed.value)["status"]


def mesh_of(owner: str, config: Entry | None) -> MeshHeld:
    made = MeshRecord(owner, f"uid-{owner}", created=True, previous=None)
    return MeshHeld(made, Entry(MESH_RECORD_KEY, made.encode(), 3), config)


CREATED_OFF = {
    "kind": "BGPConfiguration",
    "apiVersion": "projectcalico.org/v3",
    "metadata": {"name": "default", "uid": "x", "creationTimestamp": "2026-01-01T00:00:00Z"},
    "spec": {"nodeToNodeMeshEnabled": False},
}


def test_a_swept_owner_that_switched_the_mesh_off_turns_it_on_first_and_alone() -> None:
    peers = (of("evil", "evil-rr-a", "uid-evil"),)
    statuses = (status_of("evil", "evil-rr-n1"),)
    marked = (record("evil", "uid-evil", "2026-11-26T10:00:00Z"),)
    later = live(now=NOW + SWEEP_GRACE)
    off = mesh_of("evil", entry(CONFIG_KEY, CREATED_OFF))

    first = sweep(later, peers, marked, statuses=statuses, mesh=off)
    assert not first.orphans[0].swept
    (restore,) = [step for step in first.steps if step.sweeps]
    assert (restore.key, restore.also) == (CONFIG_KEY, ((MESH_RECORD_KEY, DELETE),))
    assert outcome(restore, off.config) == "delete"  # it created the document: mesh on

    broken = mesh_of("evil", entry(CONFIG_KEY, b"{not json"))
    held = sweep(later, peers, marked, statuses=statuses, mesh=broken)
    assert not held.orphans[0].swept and not [step for step in held.steps if step.sweeps]
    assert "stays off: " + CONFIG_KEY + ": value is not JSON" in held.orphans[0].held

    on = mesh_of("evil", None)  # on again (gone): the record goes with the rest
    done = sweep(later, peers, marked, statuses=statuses, mesh=on)
    assert done.orphans[0].swept
    assert [step.key for step in done.steps if step.sweeps] == [
        OWNERS_PREFIX + "evil",
        MESH_RECORD_KEY,
        PEERS_PREFIX + "evil-rr-a",
        STATUSES_PREFIX + "evil-rr-n1",
    ]
    other = sweep(later, peers, marked, statuses=statuses, mesh=mesh_of("default", None))
    assert MESH_RECORD_KEY not in [step.key for step in other.steps]  # a live owner's record


# Our own owner record as our sync writes it: no step of ours in the way.
MINE = entry(OWNERS_PREFIX + OWNER, dump({"name": OWNER, "uid": "uid-default"}))


def test_a_mesh_record_left_alone_marks_its_owner_then_turns_the_mesh_on_then_goes() -> None:
    off = mesh_of("gone", entry(CONFIG_KEY, CREATED_OFF))

    first = sweep(live(), (), (MINE,), mesh=off)
    (orphan,) = first.orphans
    assert (orphan.owner, orphan.uid, orphan.peers, orphan.cluster_ids) == (
        "gone",
        "uid-gone",
        0,
        0,
    )
    (mark,) = first.steps  # its owner record, written again to carry the mark
    assert mark.key == OWNERS_PREFIX + "gone"
    assert outcome(mark, None) == {
        "name": "gone",
        "uid": "uid-gone",
        "unseenSince": "2026-11-26T10:00:00Z",
    }

    marked = (MINE, record("gone", "uid-gone", "2026-11-26T10:00:00Z"))
    early = sweep(live(now=NOW + SWEEP_GRACE - timedelta(seconds=1)), (), marked, mesh=off)
    assert early.steps == () and not early.orphans[0].swept
    later = live(now=NOW + SWEEP_GRACE)
    held = sweep(later, (), marked, state=desired({}, {"ghost": "224.0.0.9"}), mesh=off)
    assert not [step for step in held.steps if step.sweeps]  # our own make is held
    assert held.orphans[0].held == HELD_BY_OUR_MAKE

    restoring = sweep(later, (), marked, mesh=off)
    (restore,) = restoring.steps
    assert (restore.key, restore.also) == (CONFIG_KEY, ((MESH_RECORD_KEY, DELETE),))
    assert outcome(restore, off.config) == "delete"
    assert not restoring.orphans[0].swept

    done = sweep(later, (), marked)  # the mesh record went with the mesh back on
    assert [step.key for step in done.steps] == [OWNERS_PREFIX + "gone"]
    assert done.orphans[0].swept
    turned_on = sweep(later, (), marked, mesh=mesh_of("gone", None))  # on by someone else
    assert [step.key for step in turned_on.steps] == [OWNERS_PREFIX + "gone", MESH_RECORD_KEY]


def test_a_mesh_record_of_a_live_owner_or_of_our_own_name_is_left_alone() -> None:
    off = entry(CONFIG_KEY, CREATED_OFF)
    later = live("uid-other", now=NOW + 3 * SWEEP_GRACE)
    assert sweep(later, (), (MINE,), mesh=mesh_of("other", off)).steps == ()
    unrecorded = MeshRecord("old", "", created=True, previous=None)  # written before uids
    by_label = MeshHeld(unrecorded, Entry(MESH_RECORD_KEY, unrecorded.encode(), 3), off)
    assert sweep(live(owners=(OWNER, "old"), now=later.now), (), (MINE,), mesh=by_label).steps == ()
    # Our name, an older uid (deleted and created again): our finalize turns it back on.
    ours_before = MeshRecord(OWNER, "uid-before", created=True, previous=None)
    before = MeshHeld(ours_before, Entry(MESH_RECORD_KEY, ours_before.encode(), 3), off)
    planned = sweep(later, (), (MINE,), mesh=before)
    assert planned.steps == () and planned.orphans == ()
    for forged in ("", "a/b"):  # not an owner label this service writes: no key is made of it
        made = MeshRecord(forged, "uid-x", created=True, previous=None)
        held = MeshHeld(made, Entry(MESH_RECORD_KEY, made.encode(), 3), off)
        assert sweep(later, (), (MINE,), mesh=held).steps == ()
