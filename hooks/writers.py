"""What the service writes besides its answers, handed to reconcile (hooks/reconcile.py): the plan
to etcd, the node-to-node mesh switch, the removal of the original operator's BGPPeers. Each
datastore client is made on first use."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from hooks import controllers
from hooks.controllers import Applied
from hooks.decision import TopologyDecision
from hooks.model import Condition
from hooks.reconcile import LegacyRemover, MeshSwitcher, mesh_waiting
from hooks.transitions import Sessions

log = logging.getLogger("hooks")


class Unavailable(Exception):
    """A datastore the plan must be written to did not answer: 503, Metacontroller retries.

    `reason` is what the caller is told (short, no endpoint, no exception text); `detail` goes
    to the log only."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class Etcd:
    """The etcd datastore of the hook service: applies a decision, releases a deleted topology's
    objects. The connection is made on first use; every etcd failure is a 503 (retried)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self._applier: Any = None

    def apply(self, decision: TopologyDecision) -> Applied:
        from hooks.datastores.etcd_changes import desired_state

        desired = desired_state(decision)  # a parent Metacontroller did not send: 400, no write
        result = self._run(lambda applier: applier.apply(desired))
        return Applied(
            datastore="etcdv3",
            revision=result.revision,
            writes=result.writes,
            peers=result.peers,
            missing_nodes=tuple(result.missing_nodes),
            foreign_peers=tuple(result.foreign_conflicts),
            foreign_count=result.foreign_peers,
            orphaned=tuple(
                {
                    "owner": o.owner,
                    "uid": o.uid,
                    "bgpPeers": o.peers,
                    "clusterIDs": o.cluster_ids,
                    "unseenSince": o.unseen_since,
                    "removed": o.swept,
                }
                | ({"held": o.held} if o.held else {})
                for o in result.orphans
            ),
        )

    def release(self, owner: str) -> None:
        from hooks.calico import label_value

        self._run(lambda applier: applier.release(label_value(owner)))

    def sessions(self, owner: str) -> Sessions:
        """The session state the CalicoNodeStatus documents of `owner`'s RRs in etcd report; a
        failed read proves nothing (`unproven`), and is not an error: the apply decides that."""
        from hooks.calico import label_value, name_part
        from hooks.node_status import read_sessions, unproven

        try:
            documents = self._run(
                lambda applier: applier.read_reports(label_value(owner), f"{name_part(owner)}-rr-")
            )
        except Unavailable as error:
            log.warning(json.dumps({"session_reports": "failed", "error": error.detail}))
            return unproven(error.detail)
        return read_sessions(documents)

    def mesh_off(self, decision: TopologyDecision) -> None:
        from hooks.calico import label_value

        owner, uid = label_value(decision.owner), decision.owner_uid
        self._run(lambda applier: applier.mesh_off(owner, uid))

    def mesh_restore(self, owner: str) -> bool:
        """Turn the mesh back on if `owner` switched it off; True when it was written."""
        from hooks.calico import label_value

        restored: bool = self._run(lambda applier: applier.mesh_restore(label_value(owner)))
        return restored

    def _run(self, action: Callable[[Any], Any]) -> Any:
        from hooks.datastores.etcd import (
            EtcdApplier,
            EtcdConflict,
            EtcdError,
            EtcdSettings,
            EtcdUnavailable,
        )

        if self._applier is None:
            try:
                self._applier = EtcdApplier(EtcdSettings.from_environ(self._env))
            except ValueError as error:
                raise Unavailable("etcd settings are invalid", str(error)) from None
        try:
            return action(self._applier)
        except EtcdUnavailable as error:
            raise Unavailable("etcd unavailable, will retry", str(error)) from None
        except EtcdConflict as error:
            raise Unavailable("etcd keys kept changing under us, will retry", str(error)) from None
        except EtcdError as error:
            raise Unavailable("etcd refused the plan", str(error)) from None


def mesh_switch_for(env: Mapping[str, str], etcd: Etcd) -> MeshSwitcher:
    """Turn the node-to-node mesh off (reconcile calls it once the decision proves the RRs carry
    every session), in the datastore Calico reads: etcd in etcdv3 mode, else the Kubernetes API.

    A failure is reported as a condition, never as a non-200: BGPPeer updates must go on."""
    state: dict[str, Any] = {}

    def switch(decision: TopologyDecision) -> Condition:
        if not decision.mesh_can_go:  # reconcile asks only then; never act on less, whoever asks
            return mesh_waiting(decision)
        from hooks.calico import label_value
        from hooks.datastores.kubernetes import MeshSwitch, MeshSwitchError

        in_etcd = decision.settings is not None and decision.settings.datastore == "etcdv3"
        try:
            if in_etcd:
                etcd.mesh_off(decision)
            else:
                if "switch" not in state:
                    state["switch"] = MeshSwitch.from_environ(env)
                state["switch"].disable(label_value(decision.owner), decision.owner_uid)
        except (MeshSwitchError, Unavailable) as error:
            said = error.detail if isinstance(error, Unavailable) else str(error)
            log.warning(json.dumps({"mesh_switch": "failed", "error": said}))
            return Condition("NodeToNodeMesh", "True", "SwitchFailed", said)
        return Condition(
            "NodeToNodeMesh",
            "False",
            "Disabled",
            "node-to-node mesh is off in BGPConfiguration default"
            + (" (etcd)" if in_etcd else "")
            + "; the RRs carry every route",
        )

    return switch


def mesh_restorer_for(env: Mapping[str, str]) -> Callable[[str], bool]:
    """KDD uninstall: turn the mesh back on in BGPConfiguration `default` if the topology named
    (its owner label) switched it off, as `Etcd.mesh_restore` does in etcd; True when written.
    A failure is Unavailable (503): the finalizer stays and nothing is released."""
    state: dict[str, Any] = {}

    def restore(owner: str) -> bool:
        from hooks.calico import label_value
        from hooks.datastores.kubernetes import MeshSwitch, MeshSwitchError

        try:
            if "switch" not in state:
                state["switch"] = MeshSwitch.from_environ(env)
            restored: bool = state["switch"].restore(label_value(owner))
        except MeshSwitchError as error:
            raise Unavailable("Kubernetes API unavailable, will retry", str(error)) from None
        return restored

    return restore


def legacy_remover_for(env: Mapping[str, str]) -> LegacyRemover:
    """Delete the original operator's BGPPeers (the decision says ours carry every session).

    A failure is reported as a condition, never as a non-200: BGPPeer updates must go on."""
    state: dict[str, Any] = {}

    def remove(decision: TopologyDecision) -> Condition:
        from hooks.datastores.kubernetes import (
            KubernetesAPI,
            KubernetesAPIError,
            LegacyPeerRemoval,
        )

        try:
            if "removal" not in state:
                state["removal"] = LegacyPeerRemoval(KubernetesAPI.from_environ(env))
            removed = state["removal"].remove((p.name, p.uid) for p in decision.legacy_peers)
        except KubernetesAPIError as error:
            log.warning(json.dumps({"legacy_bgp_peers": "failed", "error": str(error)}))
            return Condition(controllers.LEGACY_CONDITION, "True", "RemoveFailed", str(error))
        log.info(json.dumps({"legacy_bgp_peers": "removed", "names": removed}))
        return Condition(
            controllers.LEGACY_CONDITION,
            "False",
            "Removed",
            f"deleted {len(removed)} BGPPeer(s) of the original operator; ours carry every session",
        )

    return remove
