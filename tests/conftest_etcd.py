"""Pytest fixtures that run real etcd servers for the etcd datastore tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from etcd3gw.client import Etcd3Client
from etcd_server import EtcdNotFound, EtcdServer, find_etcd_binary, make_tls_files

Txn = Callable[[Etcd3Client, dict[str, Any]], Any]
BeforeTxn = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="session")
def etcd_binary() -> str:
    try:
        return find_etcd_binary()
    except EtcdNotFound as missing:
        pytest.fail(str(missing), pytrace=False)


def running(server: EtcdServer) -> Iterator[EtcdServer]:
    """Start `server`, hand it to the test, and always stop it and remove its data."""
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def etcd_server(etcd_binary: str) -> Iterator[EtcdServer]:
    """One plain-HTTP etcd for the whole session."""
    yield from running(EtcdServer(etcd_binary))


@pytest.fixture
def etcd(etcd_server: EtcdServer) -> EtcdServer:
    """The session etcd with Calico's tree and our ownership records wiped: every test starts
    from nothing."""
    etcd_server.delete_prefix("/calico/")
    etcd_server.delete_prefix("/route-reflector.dev/")
    return etcd_server


@pytest.fixture
def private_etcd(etcd_binary: str) -> Iterator[EtcdServer]:
    """An etcd of the test's own, which it may stop and restart."""
    yield from running(EtcdServer(etcd_binary))


@pytest.fixture(scope="session")
def tls_etcd(etcd_binary: str) -> Iterator[EtcdServer]:
    """An etcd serving HTTPS that demands a client certificate signed by its CA."""
    certs = Path(tempfile.mkdtemp(prefix="rr-etcd-tls-"))
    try:
        yield from running(EtcdServer(etcd_binary, tls=make_tls_files(certs)))
    finally:
        shutil.rmtree(certs, ignore_errors=True)


@pytest.fixture
def transactions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BeforeTxn]]:
    """Callbacks run just before each transaction the applier sends (between read and write)."""
    before: list[BeforeTxn] = []
    real: Txn = Etcd3Client.transaction

    def intercepted(client: Etcd3Client, txn: dict[str, Any]) -> Any:
        for callback in before:
            callback(txn)
        return real(client, txn)

    monkeypatch.setattr(Etcd3Client, "transaction", intercepted)
    yield before
