"""``report.html`` in a real browser: Debian's headless Chromium, driven over the DevTools
protocol (a WebSocket; the ``websockets`` client), loads the page from a ``file://`` URL,
sorts the table by clicking a header, filters it by typing, sees the charts and finds no
console error. Without Chromium the test fails and says how to install it: CI must."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from bench.reporting import load, write_report
from tests.bench.test_report import make_run

CHROMIUM = os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium")
INSTALL = "apt-get update && apt-get install -y chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--window-size=1400,1000",
    "--remote-debugging-port=0",
]


class Page:
    """One page target over the DevTools protocol: commands, and every event kept."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
        mid = next(self.ids)
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 15.0) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            self.events.append(msg)
            if msg.get("method") == method:
                return msg

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in {"error", "assert"}:
                out.append(json.dumps(params.get("args")))
            elif method == "Runtime.exceptionThrown":
                out.append(json.dumps(params.get("exceptionDetails")))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.append(params["entry"].get("text", ""))
        return out


@contextlib.contextmanager
def chromium() -> Iterator[Page]:
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"no Chromium at {CHROMIUM}: the browser test needs it. Install: {INSTALL}")
    profile = tempfile.mkdtemp(prefix="lab-chromium-")
    log_path = Path(profile) / "chromium.log"
    with log_path.open("w") as log:  # a file, not a pipe: a full pipe would stall Chromium
        proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}/data", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            m = re.search(r"DevTools listening on (ws://\S+)", log_path.read_text())
            url = m.group(1) if m else None
            time.sleep(0.05)
        assert url, (
            f"Chromium did not start its DevTools endpoint (exit {proc.poll()}):\n"
            + log_path.read_text()[-2000:]
        )
        with connect(url, max_size=2**26, open_timeout=15) as browser_ws:
            browser = Page(browser_ws)
            targets = browser.send("Target.getTargets")["targetInfos"]
            page_id = next(t["targetId"] for t in targets if t["type"] == "page")
            port = url.split(":")[2].split("/")[0]
            with connect(
                f"ws://127.0.0.1:{port}/devtools/page/{page_id}", max_size=2**26, open_timeout=15
            ) as ws:
                yield Page(ws)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _column(page: Page, name: str) -> list[float | None]:
    """The visible rows' sort values in the column headed ``name``."""
    return list(
        page.js(
            "(() => { const hs = [...document.querySelectorAll('#rows thead th')];"
            f" const i = hs.findIndex(h => h.textContent.trim() === {json.dumps(name)});"
            " return [...document.querySelectorAll('#rows tbody tr')].filter(r => !r.hidden)"
            "  .map(r => { const v = r.cells[i].getAttribute('data-v');"
            "  return v === '' ? null : parseFloat(v); }); })()"
        )
    )


def test_report_in_a_real_browser(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    write_report(load(run_dir))
    with chromium() as page:
        for domain in ("Page", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        page.send("Page.navigate", url=(run_dir / "report.html").resolve().as_uri())
        page.wait_for("Page.loadEventFired")

        total = page.js("document.querySelectorAll('#rows tbody tr').length")
        assert total >= 10
        assert page.js("document.getElementById('count').textContent") == (
            f"{total} of {total} rows"
        )

        # the charts: inline SVGs, laid out with a real size
        sizes = page.js(
            "[...document.querySelectorAll('figure.chart svg')]"
            ".map(s => s.getBoundingClientRect().width * s.getBoundingClientRect().height)"
        )
        assert len(sizes) >= 6 and all(s > 1000 for s in sizes)

        # sort by requests/s: descending on the first click, ascending on the second
        page.click("#rows thead th:nth-child(8)")
        assert page.js("document.querySelector('#rows thead th:nth-child(8)').textContent") == (
            "req/s"
        )
        values = [v for v in _column(page, "req/s") if v is not None]
        assert values == sorted(values, reverse=True) and len(values) > 5
        assert _column(page, "req/s")[0] == max(values)
        page.click("#rows thead th:nth-child(8)")
        values = [v for v in _column(page, "req/s") if v is not None]
        assert values == sorted(values)
        assert page.js(
            "document.querySelector('#rows thead th:nth-child(8)').getAttribute('aria-sort')"
        ) == ("ascending")

        # filter by typing into the box: fewer rows, each matching
        page.click("#filter")
        page.send("Input.insertText", text="flask")
        shown = page.js(
            "[...document.querySelectorAll('#rows tbody tr')].filter(r => !r.hidden)"
            ".map(r => r.textContent)"
        )
        assert 0 < len(shown) < total
        assert all("flask" in row for row in shown)
        assert page.js("document.getElementById('count').textContent") == (
            f"{len(shown)} of {total} rows"
        )
        page.send("Input.insertText", text=" failed")
        failed = page.js(
            "[...document.querySelectorAll('#rows tbody tr')].filter(r => !r.hidden).length"
        )
        assert failed == 1  # the failed row is in the table, never hidden

        page.js("new Promise(r => setTimeout(r, 200))")
        assert page.errors() == []
