"""Every floor, on every server ``[floors.*]`` of lab/matrix.toml declares it on, answers each
scenario it lists as that scenario declares, and answers it right.

The floors are the denominators of the lab's ratios (``x server``, ``x fw``): a floor that
answered wrongly, or faster because it skipped the work, would make every figure read
against it wrong. The harness checks each cell's responses too (before, during, after), but
only in a run; this keeps a broken floor from reaching one. Each floor starts from the same
command template as in a run (``bench.targets``), on a free port, and is waited for on
``/health``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bench.checks import check_once
from bench.targets import Target, floor_targets
from lab import matrix
from lab.scenarios import scenario
from tests.support.client import TLS
from tests.support.expect import json_body
from tests.support.processes import ManagedProcess, free_port
from tests.support.servers import HOST, base_env

HELLO = {"message": "Hello, World!"}
DB_SAMPLES = 20  # random ids: enough that a floor answering one fixed row would show


@pytest.fixture(scope="module")
def served(
    request: pytest.FixtureRequest, services: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Target, str]]:
    """The floor ``request.param`` and its base URL on a free port, shared by this module's
    tests of it."""
    target: Target = request.param
    port = free_port(HOST)
    url = f"http://{HOST}:{port}"
    env = base_env() | {
        "LAB_DATABASE_URL": services.database_url,
        "LAB_REDIS_URL": services.redis_url,
        **target.pair.env,
    }
    argv = target.pair.argv(host=HOST, port=port, workers=1)
    log_dir = tmp_path_factory.mktemp(target.id)
    proc = ManagedProcess(target.id, argv, env, matrix.REPO_ROOT, log_dir, f"{url}/health")
    proc.start()
    try:
        yield target, url
    finally:
        proc.stop()


FLOORS = floor_targets()


@pytest.mark.parametrize("served", FLOORS, ids=[t.id for t in FLOORS], indirect=True)
def test_a_floor_answers_its_scenarios_as_declared(served: tuple[Target, str]) -> None:
    target, url = served
    assert target.floor is not None
    for name in target.floor.scenarios:
        result = check_once(url, scenario(name))
        assert result.ok, (name, result.problems)


@pytest.mark.parametrize("served", FLOORS, ids=[t.id for t in FLOORS], indirect=True)
def test_a_floor_serves_the_bodies_its_pairs_serve(served: tuple[Target, str], db: Any) -> None:
    """The same bodies as the contract's routes (SPEC §3), so a ratio compares the same
    answer: ``/json`` and the control's ``/json-work`` the hello message, ``/plaintext`` its
    text, ``/db`` a random row of ``world`` as it is in PostgreSQL."""
    target, url = served
    assert target.floor is not None
    routes = target.floor.scenarios
    with httpx.Client(base_url=url, timeout=30, verify=TLS) as client:
        for name in ("json", "json-work"):
            if name in routes:
                assert json_body(client.get(scenario(name).path)) == HELLO, name
        if "plaintext" in routes:
            assert client.get(scenario("plaintext").path).content == b"Hello, World!"
        if "db" in routes:
            rows = [json_body(client.get(scenario("db").path)) for _ in range(DB_SAMPLES)]
            ids = [row["id"] for row in rows]
            assert len(set(ids)) > 1, ids  # random ids, not one row
            stored = dict(
                db.execute("SELECT id, randomnumber FROM world WHERE id = ANY(%s)", (ids,))
            )
            assert set(ids) <= stored.keys(), ids  # rows of the table
            assert rows == [{"id": i, "randomNumber": stored[i]} for i in ids]
