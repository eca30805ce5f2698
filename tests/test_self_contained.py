"""The suite reads only the repository: a clone with nothing beside it passes `make test`."""

from __future__ import annotations

import conftest


def test_a_file_opened_beside_the_repository_is_caught_by_the_guard() -> None:
    sibling = conftest.BESIDE / "shared" / "schemas" / "crd.projectcalico.org_bgppeers.yaml"
    before = len(conftest.opened_beside)
    try:
        with open(sibling) as handle:
            handle.read(1)
    except OSError:
        pass  # opening is enough for the audit event, whether or not the file exists
    caught = conftest.opened_beside[before:]
    del conftest.opened_beside[before:]
    assert caught == [str(sibling)]


def test_a_file_inside_the_repository_is_not_flagged() -> None:
    before = len(conftest.opened_beside)
    with open(conftest.ROOT / "tests" / "data" / "README.md") as handle:
        handle.read(1)
    assert conftest.opened_beside[before:] == []
