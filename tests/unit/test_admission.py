"""``LAB_MAX_INFLIGHT`` (SPEC §6): the gate's arithmetic, the setting, and the ASGI layer driven
in-process with requests held in flight on purpose. The conformance suite checks the same
behaviour over HTTP on every async pair (tests/conformance/test_switches.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from common.admission import InFlight, worker_gate
from common.asgi import LabMiddleware, Message, Receive, Scope, Send
from common.settings import Settings, SettingsError, check_framework

SETTINGS = Settings(database_url="", redis_url="", upstream_url="", max_inflight=2)


def test_the_gate_admits_up_to_its_limit_and_again_after_a_release() -> None:
    gate = InFlight(2)
    assert [gate.admit(), gate.admit(), gate.admit()] == [True, True, False]
    assert gate.count == 2  # a refusal is not counted in
    gate.release()
    assert gate.admit() and not gate.admit()
    gate.release()
    gate.release()
    with pytest.raises(RuntimeError, match="released more"):
        gate.release()
    with pytest.raises(ValueError, match="at least 1"):
        InFlight(0)


def test_the_setting() -> None:
    assert Settings.from_env({}).max_inflight is None
    assert Settings.from_env({"LAB_MAX_INFLIGHT": "off"}).max_inflight is None
    assert Settings.from_env({"LAB_MAX_INFLIGHT": "64"}).max_inflight == 64
    for bad in ("0", "-1", "many", "100001"):
        with pytest.raises(SettingsError, match="LAB_MAX_INFLIGHT"):
            Settings.from_env({"LAB_MAX_INFLIGHT": bad})
    on = Settings.from_env({"LAB_MAX_INFLIGHT": "8"})
    for framework in ("fastapi", "litestar", "aiohttp"):
        check_framework(on, framework)
    with pytest.raises(SettingsError, match="LAB_MAX_INFLIGHT=8 applies only to"):
        check_framework(on, "flask")
    check_framework(Settings.from_env({}), "flask")


def test_one_gate_per_worker() -> None:
    assert worker_gate(Settings.from_env({})) is None
    assert worker_gate(SETTINGS) is worker_gate(SETTINGS)  # every route counts on one bound


def test_asgi_layer_sheds_past_the_limit_and_spares_health() -> None:
    """Two requests held in the app fill a gate of two; a third is a 503 ``overloaded``
    problem that never reaches the app, with the middleware's head rules; ``/health`` still
    reaches it; once one held request is answered, the next is admitted."""

    async def scenario() -> None:
        release = asyncio.Event()
        reached: list[str] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            reached.append(scope["path"])
            if scope["path"] == "/slow":
                await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        mw = LabMiddleware(app, SETTINGS)
        gate = worker_gate(SETTINGS)
        assert gate is not None and gate.count == 0

        async def request(path: str) -> list[Message]:
            sent: list[Message] = []

            async def receive() -> Message:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: Message) -> None:
                sent.append(message)

            scope: dict[str, Any] = {"type": "http", "method": "GET", "path": path, "headers": []}
            await mw(scope, receive, send)
            return sent

        held = [asyncio.create_task(request("/slow")) for _ in range(2)]
        await asyncio.sleep(0)  # both reach the app and wait there
        assert gate.count == 2
        start, body = await request("/json")
        assert start["status"] == 503 and "/json" not in reached
        headers = dict(start["headers"])
        assert headers[b"retry-after"] == b"1"
        assert headers[b"content-type"] == b"application/problem+json"
        assert headers[b"server-timing"].startswith(b"app;dur=")
        problem = json.loads(body["body"])
        assert problem["type"] == "urn:lab:problem:overloaded" and problem["status"] == 503
        start, _ = await request("/health")
        assert start["status"] == 200 and "/health" in reached and gate.count == 2
        release.set()
        await asyncio.gather(*held)
        assert gate.count == 0
        start, _ = await request("/json")
        assert start["status"] == 200 and gate.count == 0

    asyncio.run(scenario())


def test_a_failing_app_releases_its_place() -> None:
    async def scenario() -> None:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            raise RuntimeError("boom")

        mw = LabMiddleware(app, SETTINGS)
        scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/x", "headers": []}

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            pass

        for _ in range(3):  # more than the limit: each failure gave its place back
            with pytest.raises(RuntimeError):
                await mw(scope, receive, send)
        gate = worker_gate(SETTINGS)
        assert gate is not None and gate.count == 0

    asyncio.run(scenario())
