"""SPEC §3.14 (``GET /cpu``) and §3.15 (``POST /tasks``, ``GET /tasks/{id}``)."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import httpx
import pytest

from tests.conformance import cases
from tests.support.client import LabClient
from tests.support.expect import assert_media_type, assert_problem, json_body
from tests.support.rules import cpu_result

pytestmark = pytest.mark.conformance

TASK_DEADLINE_S = 15.0


# --- §3.14 ------------------------------------------------------------------------------------


@pytest.mark.per_framework
@pytest.mark.parametrize("n", [1, 2, 10, 1000, 54_321, 10_000_000])
def test_cpu_result_is_the_formula(client: LabClient, n: int) -> None:
    """SPEC §3.14: ``{"n": n, "result": x}`` with x from the formula, n in 1..10,000,000."""
    resp = client.get(f"/cpu?n={n}")
    assert resp.status_code == 200
    assert_media_type(resp, "application/json")
    assert json_body(resp) == {"n": n, "result": cpu_result(n)}


def test_cpu_default(client: LabClient) -> None:
    """SPEC §3.14: n defaults to 100000."""
    assert json_body(client.get("/cpu")) == {"n": 100_000, "result": cpu_result(100_000)}


def test_other_requests_flow_while_cpu_runs(server, pair) -> None:
    """SPEC §3.14: the computation runs off the event loop / request thread, so /json keeps
    being answered while a long /cpu (n = 10,000,000, about a second) is running.
    Deviation D1 (gunicorn's sync worker): the one request thread waits, so no /json is
    answered in the middle of the /cpu; the suite asserts that instead."""
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def long_cpu() -> None:
        try:
            with server.client(timeout=60) as c:
                outcome["sent"] = time.monotonic()
                outcome["resp"] = c.get("/cpu?n=10000000")
                outcome["received"] = time.monotonic()
        except BaseException as exc:  # re-raised by the test's thread
            outcome["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=long_cpu)
    worker.start()
    answered: list[tuple[float, float]] = []  # (sent, answered) of each /json
    with server.client(timeout=30) as c:
        while not done.is_set():
            t0 = time.monotonic()
            resp = c.get("/json")
            answered.append((t0, time.monotonic()))
            assert resp.status_code == 200
    worker.join(60)
    if "error" in outcome:
        raise outcome["error"]
    assert outcome["resp"].status_code == 200
    # The middle of the /cpu: after it surely reached the app, before its answer. A server
    # that blocks answers at most one /json there (the one released as the /cpu ends).
    start, end = outcome["sent"] + 0.1, outcome["received"] - 0.05
    assert end - start > 0.2, f"the /cpu took {end - start + 0.15:.2f} s, too quick to tell"
    during = [t for _, t in answered if start <= t <= end]
    slowest = max(t1 - t0 for t0, t1 in answered)
    if "D1" in cases.DEVIATIONS.get(pair.id, ()):
        assert not during, f"{len(during)} /json answered during the /cpu: D1 no longer holds"
        assert slowest >= end - start, f"the slowest /json took {slowest:.2f} s: it did not wait"
        return
    assert len(during) >= 3, (
        f"{len(during)} /json answered in the middle of a {end - start + 0.15:.2f} s /cpu; "
        f"slowest /json took {slowest:.2f} s"
    )


# --- §3.15 ------------------------------------------------------------------------------------


def _submit(client: LabClient, **kwargs: Any) -> tuple[str, str]:
    resp = client.post("/tasks", **kwargs)
    assert resp.status_code == 202, resp.text[:300]
    assert_media_type(resp, "application/json")
    body = json_body(resp)
    assert re.fullmatch(r"[0-9a-f]{32}", body["id"]), body
    assert body["status"] == "queued", body
    assert resp.headers["location"] == f"/tasks/{body['id']}"
    return body["id"], resp.headers["location"]


def _wait_done(get: Any, location: str) -> tuple[dict, list[str]]:
    """Poll (bounded) until the task is done; returns its last body and the statuses seen."""
    seen: list[str] = []
    deadline = time.monotonic() + TASK_DEADLINE_S
    while True:
        resp = get(location)
        assert resp.status_code == 200, resp.text[:300]
        body = json_body(resp)
        seen.append(body["status"])
        assert body["status"] in {"queued", "running", "done"}, body
        if body["status"] == "done":
            return body, seen
        assert time.monotonic() < deadline, f"task not done after {TASK_DEADLINE_S} s: {seen}"
        time.sleep(0.02)


@pytest.mark.per_framework
@pytest.mark.parametrize("n", [1, 1000, 250_000])
def test_task_runs_to_the_formula(client: LabClient, n: int) -> None:
    """SPEC §3.15: 202 + ``Location: /tasks/<32 hex>``; polling it shows queued/running then
    done with ``result: {"n", "result"}`` equal to §3.14's formula, and ``created_at``."""
    task_id, location = _submit(client, json={"n": n})
    body, _ = _wait_done(client.get, location)
    assert body["id"] == task_id
    assert body["result"] == {"n": n, "result": cpu_result(n)}
    assert isinstance(body["created_at"], str) and body["created_at"], body


@pytest.mark.per_framework
@pytest.mark.parametrize(
    ("kwargs", "n"),
    [
        ({}, 10_000),
        ({"content": b"", "headers": {"Content-Type": "application/json"}}, 10_000),
        ({"json": {}}, 10_000),
        ({"json": {"delay_ms": 0}}, 10_000),
        ({"json": {"n": 7}}, 7),
    ],
    ids=["no-body", "empty-json-body", "empty-object", "only-delay", "only-n"],
)
def test_task_body_is_optional(client: LabClient, kwargs: dict, n: int) -> None:
    """SPEC §3.15: the body is optional (empty, or an object; ``{}`` valid), n defaults to
    10000 and delay_ms to 0."""
    _, location = _submit(client, **kwargs)
    body, _ = _wait_done(client.get, location)
    assert body["result"] == {"n": n, "result": cpu_result(n)}


def test_task_waits_its_delay(client: LabClient) -> None:
    """SPEC §3.15: the task computes after ``delay_ms``: not done right away, done later."""
    submitted = time.monotonic()
    _, location = _submit(client, json={"n": 10, "delay_ms": 1000})
    first = json_body(client.get(location))
    if time.monotonic() - submitted < 0.8:
        assert first["status"] in {"queued", "running"}, first
    body, _ = _wait_done(client.get, location)
    assert time.monotonic() - submitted >= 1.0
    assert body["result"] == {"n": 10, "result": cpu_result(10)}


@pytest.mark.parametrize("case", cases.oversize(cases.TASK_BODIES), ids=lambda c: c.id)
def test_oversize_task_bodies_are_413(client: LabClient, case: cases.BodyCase) -> None:
    """SPEC §3.15 with §2.1: too large → 413, on every server."""
    _assert_rejected(client, case)


@pytest.mark.per_framework
@pytest.mark.parametrize("case", cases.within_limit(cases.TASK_BODIES), ids=lambda c: c.id)
def test_task_rejections(client: LabClient, case: cases.BodyCase) -> None:
    """SPEC §3.15 with §2.1: invalid bodies (unknown fields, out of range) → 422 with loc;
    malformed → 400; wrong type → 415."""
    _assert_rejected(client, case)


def _assert_rejected(client: LabClient, case: cases.BodyCase) -> None:
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    resp = client.post("/tasks", content=case.body, headers=headers)
    assert_problem(resp, case.status, case.slug, case.loc)


def test_task_state_is_shared_by_workers(limits_server) -> None:
    """SPEC §3.15: state lives in Redis, so any worker answers: polls over new connections
    to a 2-worker server all see the task."""
    with limits_server.client() as c:
        _, location = _submit(c, json={"n": 50_000, "delay_ms": 200})

    def fresh_get(url: str) -> httpx.Response:
        with limits_server.client(headers={"Connection": "close"}) as c:
            return c.get(url)

    body, _ = _wait_done(fresh_get, location)
    assert body["result"] == {"n": 50_000, "result": cpu_result(50_000)}


MAX_TASKS = 3  # the limits configuration's LAB_MAX_TASKS, per worker
WORKERS = 2  # the limits configuration's workers


def test_past_the_task_bound_nothing_is_accepted(limits_server) -> None:
    """SPEC §3.15: a worker holds at most LAB_MAX_TASKS unfinished tasks; past it POST /tasks
    is a 503 `overloaded` and accepts nothing, and every task it did accept runs. Requests
    may reach either worker (gunicorn's sync worker closes every connection), and a task of
    an earlier test may still hold a slot, so the refusal comes within the workers' room."""
    accepted: list[str] = []
    with limits_server.client() as c:
        for _ in range(MAX_TASKS * WORKERS + 1):
            resp = c.post("/tasks", json={"n": 1_000, "delay_ms": 2_000}, allow={503})
            if resp.status_code != 202:
                break
            accepted.append(resp.headers["location"])
        assert_problem(resp, 503, "overloaded")
        assert resp.headers.get("retry-after") == "1"
        assert 1 <= len(accepted) <= MAX_TASKS * WORKERS
        for location in accepted:
            _wait_done(c.get, location)
        _wait_done(c.get, _submit(c, json={"n": 1_000})[1])  # finished tasks free their slots
