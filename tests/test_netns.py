"""Two-host mode (``lab netns``, docs/scale-out.md): the server side in one network
namespace with its own embedded PostgreSQL and Redis, ``lab bench --target`` in another,
only the veth pair between them; ``down`` removes exactly what ``up`` created.

Needs root and ``ip`` (network namespaces); elsewhere the module is skipped with that reason
(the machine cannot create namespaces, so there is nothing to test there).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import matrix
from tests.support.processes import CLEAN_EXIT_CODES

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None,
        reason="network namespaces need root and iproute2's ip",
    ),
]

LAB = [sys.executable, "-m", "lab.cli"]


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _links() -> set[str]:
    out = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True)
    return {line.split()[0].split("@")[0] for line in out.stdout.splitlines() if line.strip()}


def _lab(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LAB, *args],
        env=env,
        cwd=matrix.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def link() -> Iterator[tuple[str, str, dict[str, str]]]:
    """``lab netns up`` with a name and subnet of this test's own; always ``down`` after."""
    name = f"lt{secrets.token_hex(3)}"
    subnet = f"10.203.{100 + secrets.randbelow(150)}.0/24"
    env = {k: v for k, v in os.environ.items() if k not in {"LAB_DATABASE_URL", "LAB_REDIS_URL"}}
    # Run as root, the lab runs PostgreSQL as an unprivileged user, who cannot enter
    # pytest's 0700 temp folders: the state goes under a folder every user may enter.
    state = Path(tempfile.mkdtemp(prefix="lab-test-netns-"))
    state.chmod(0o755)
    env["LAB_STATE_DIR"] = str(state)
    before_ns, before_links = _namespaces(), _links()
    up = _lab(env, "netns", "up", "--name", name, "--subnet", subnet)
    assert up.returncode == 0, up.stderr
    try:
        assert {f"{name}-srv", f"{name}-cli"} <= _namespaces()
        yield name, subnet.removesuffix("0/24") + "1", env
    finally:
        down = _lab(env, "netns", "down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert _namespaces() == before_ns, "lab netns down left or removed other namespaces"
        assert _links() == before_links, "the machine's own links changed"
        shutil.rmtree(state, ignore_errors=True)


def test_serve_in_one_namespace_bench_from_the_other(
    link: tuple[str, str, dict[str, str]], tmp_path: Path
) -> None:
    name, server_ip, env = link

    def in_ns(role: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return _lab(env, "netns", "exec", "--name", name, role, "--", *LAB, *args, timeout=timeout)

    up = in_ns("server", "services", "up")
    assert up.returncode == 0, up.stderr
    serve: subprocess.Popen[bytes] | None = None
    try:
        assert "embedded" in up.stdout, up.stdout  # on the namespace's own loopback
        init = in_ns("server", "db", "init", timeout=300)
        assert init.returncode == 0, init.stderr
        port = 8000
        with (tmp_path / "serve.log").open("wb") as log:  # the child keeps its own copy
            serve = subprocess.Popen(
                [*LAB, "netns", "exec", "--name", name, "server", "--", *LAB, "serve",
                 "--framework", "fastapi", "--server", "uvicorn", "--host", server_ip,
                 "--port", str(port)],
                env=env, cwd=matrix.REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        url = f"http://{server_ip}:{port}"
        # Ready when the client namespace gets a 200 from /health (no sleeps).
        wait = _lab(
            env, "netns", "exec", "--name", name, "client", "--", sys.executable, "-c",
            "import sys; from lab.procs import wait_http_ok; "
            "wait_http_ok(sys.argv[1], timeout_s=60)", f"{url}/health",
            timeout=90,
        )  # fmt: skip
        assert wait.returncode == 0, wait.stderr + (tmp_path / "serve.log").read_text()
        out = tmp_path / "run"
        bench = in_ns(
            "client",
            "bench",
            "--target",
            url,
            "--target-name",
            "fastapi-uvicorn-netns",
            "--scenario",
            "json",
            "--scenario",
            "db",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--concurrency",
            "8",
            "--repeat",
            "1",
            "--no-pin",
            "--out",
            str(out),
        )
        assert bench.returncode == 0, bench.stderr[-2000:]
        cells = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
        assert {c["scenario"]["id"] for c in cells} == {"json", "db"}
        for cell in cells:
            assert cell["outcome"] == "ok", cell["reasons"]
            assert cell["topology"]["kind"] == "external"
            assert cell["load"]["requests"] > 0
            assert set(cell["load"]["statuses"]) == {"200"}
        # The server's log shows it listened on the namespace's address, not the machine's.
        assert "10.203." in (tmp_path / "serve.log").read_text()
    finally:
        if serve is not None:
            serve.terminate()  # lab netns exec became lab serve: it stops its children
            code = serve.wait(timeout=30)
            assert code in CLEAN_EXIT_CODES, (tmp_path / "serve.log").read_text()[-2000:]
        stopped = in_ns("server", "services", "down")
        assert stopped.returncode == 0, stopped.stderr
        deadline = time.monotonic() + 10
        while _lab(env, "netns", "down", "--name", name).returncode != 0:
            assert time.monotonic() < deadline, "processes still in the namespaces"
            time.sleep(0.2)
        assert not {f"{name}-srv", f"{name}-cli"} & _namespaces()
