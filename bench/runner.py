"""Runs a plan: starts each group's server, measures its cells, writes each as it finishes.

Per cell: warm-up (a load run whose numbers are kept in ``raw/`` only), the scenario's check,
the measured load run with the server's process tree sampled, the check again. The server
is pinned to ``server_cpus`` (``taskset`` on its command, so every worker it forks inherits
the mask); wrk, the upstream service and the harness itself to ``client_cpus``.

Nothing outlives the run: every child has its own process group and a parent-death signal
(``lab.procs.spawn``), and ``finally`` blocks stop each group on the way out of an error,
a crash of the server or Ctrl-C. A server that does not start or dies marks its cells
``error`` and the matrix goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from lab import matrix, procs
from lab.scaleout import PORT_PLACEHOLDER, Topology

from . import checks, fairness, load, loadgen, preflight, stats
from .manifest import now_iso, redact_url
from .method import Method
from .monitor import CpuMeter, TreeSampler, listening_pid, tree_affinity, wait_idle
from .plan import Cell, Group
from .preflight import ServiceUrls
from .probe import Probe
from .results import RunDir, stamp, write_json
from .targets import Target, floor_refs

__all__ = ["UI", "Runner", "target_json"]

HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0  # servers are started with a 5 s graceful timeout (lab/matrix.toml)


class UI(Protocol):
    def plan(self, total: int, done: int) -> None: ...
    def group(self, group: Group, pending: int) -> None: ...
    def cell(self, cell: Cell, phase: str, seconds: float) -> None: ...
    def cell_done(self, record: dict[str, Any], rows: list[dict[str, Any]]) -> None: ...
    def note(self, message: str) -> None: ...


def target_json(target: Target, workers: int) -> dict[str, Any]:
    return {
        "id": target.id,
        "role": target.role,
        "app_name": target.app_name,
        "framework": target.framework,
        "server": target.server,
        "kind": target.kind,
        "app": target.pair.framework.app,
        "floor_of": target.floor.floor_of if target.floor else None,
        "workers": target.workers or workers,
        "floors": floor_refs(target),
        "experiment": target.experiment.name if target.experiment else None,
        "variant": target.variant.name if target.variant else None,
        "pair": target.pair.id,
    }


def scenario_json(cell: Cell) -> dict[str, Any]:
    sc = cell.scenario
    return {
        "id": sc.id,
        "method": sc.method,
        "path": sc.path,
        "headers": sc.headers,
        "body": sc.body,
        "ids": list(sc.ids) if sc.ids else None,
        "expect": list(sc.expect),
        "env": sc.env,
        "overload": sc.overload,
    }


@dataclass
class Server:
    proc: subprocess.Popen[bytes] | None  # None: an external server (--target URL)
    base_url: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    ready_s: float
    affinity: list[int] = field(default_factory=list)

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode


class ServerDied(RuntimeError):
    pass


def _set_process_affinity(cpus: set[int]) -> None:
    """``sched_setaffinity`` applies to one thread: set it on every thread of the process
    (the UI's refresh thread included); threads started later inherit their creator's."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)


def _loopback(url: str) -> bool:
    return urllib.parse.urlsplit(url).hostname in {"127.0.0.1", "localhost", "::1"}


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip()
    except OSError:
        return ""


class Runner:
    def __init__(
        self,
        run: RunDir,
        method: Method,
        *,
        wrk: str,
        ui: UI,
        services: ServiceUrls | None,
        external_url: str | None = None,
        session: int = 0,
    ) -> None:
        self.run = run
        self.session = session  # index into the manifest's sessions: where each cell was measured
        self.method = method
        self.wrk = wrk
        self.ui = ui
        self.services = services
        self.external_url = external_url
        self.upstream: subprocess.Popen[bytes] | None = None
        self.upstream_url: str | None = None
        self._service_pids: dict[str, int | None] | None = None  # PostgreSQL's, Redis's
        self._logs: list[IO[bytes]] = []
        # Direct, or N instances behind nginx: one seam in _start_server, recorded per cell.
        self.topology = Topology(instances=method.instances)
        self._topology_json = (
            self.topology.to_json()
            if external_url is None
            else {"kind": "external", "instances": None, "proxy": None}
        )

    # -- the run ---------------------------------------------------------------------------

    def execute(self, groups: Sequence[Group]) -> None:
        done = self.run.done_cells()
        total = sum(len(g.cells) for g in groups)
        self.ui.plan(total, sum(1 for g in groups for c in g.cells if c.id in done))
        with self._pinned_self():
            try:
                for group in groups:
                    pending = [c for c in group.cells if c.id not in done]
                    if pending:
                        self._run_group(group, pending)
            finally:
                self._stop_upstream()
                for fh in self._logs:
                    fh.close()

    @contextlib.contextmanager
    def _pinned_self(self) -> Iterator[None]:
        """Keep the harness (every thread of it, and what it spawns unpinned: the upstream)
        off the server's CPU."""
        if not self.method.pin:
            yield
            return
        before = os.sched_getaffinity(0)
        _set_process_affinity(set(self.method.client_cpus))
        try:
            yield
        finally:
            _set_process_affinity(before)

    def _run_group(self, group: Group, pending: list[Cell]) -> None:
        self.ui.group(group, len(pending))
        server: Server | None = None
        try:
            try:
                server = self._start_server(group)
            except Exception as exc:
                for cell in pending:
                    self._write_error(cell, f"server did not start: {exc}", group)
                return
            for i, cell in enumerate(pending):
                if not server.alive():
                    for rest in pending[i:]:
                        self._write_error(
                            rest,
                            "server exited with "
                            f"{server.returncode} before this cell: "
                            f"{_tail(server.log, 600)}",
                            group,
                            server,
                        )
                    return
                self._run_cell(cell, group, server)
        finally:
            if server is not None and server.proc is not None:
                self._stop_server(server, group)

    def _stop_server(self, server: Server, group: Group) -> None:
        """Stop the server's tree after its cells. One that outlives its grace after SIGTERM
        is killed, and the stacks it had then go to its log and the console: a hung shutdown
        is a fault of the app's lifespan that no cell would show otherwise."""
        assert server.proc is not None
        stopped = procs.stop_tree(server.proc, grace_s=STOP_GRACE_S)
        if stopped.killed:
            message = (
                f"{group.target.id}: the server did not exit within {STOP_GRACE_S:g} s of "
                f"SIGTERM and was killed; its stacks are at the end of {server.log.name}"
            )
            with server.log.open("a", encoding="utf-8") as log:
                log.write(f"\nlab bench: {message}:\n{stopped.stuck}\n")
            self.ui.note(message)

    # -- processes -------------------------------------------------------------------------

    def _taskset(self, cpus: Sequence[int]) -> list[str]:
        return ["taskset", "-c", ",".join(map(str, cpus))] if self.method.pin else []

    def _ensure_upstream(self) -> str:
        if self.upstream_url is not None:
            return self.upstream_url
        port = procs.free_port(HOST)
        log = (self.run.raw / "upstream.log").open("ab")
        self._logs.append(log)
        self.upstream = procs.spawn(
            [sys.executable, "-m", "lab.cli", "upstream", "--host", HOST, "--port", str(port)],
            cwd=matrix.REPO_ROOT,
            stdout=log.fileno(),
            stderr=subprocess.STDOUT,
        )
        procs.wait_http_ok(f"http://{HOST}:{port}/health", timeout_s=30, proc=self.upstream)
        self.upstream_url = f"http://{HOST}:{port}"
        return self.upstream_url

    def _stop_upstream(self) -> None:
        if self.upstream is not None:
            procs.stop_group(self.upstream, grace_s=5)
            self.upstream = None

    def _start_server(self, group: Group) -> Server:
        log = self.run.raw / f"{group.slug}.server.log"
        if self.external_url is not None:
            return Server(None, self.external_url.rstrip("/"), [], {}, log, 0.0)
        target = group.target
        port = procs.free_port(HOST)
        # With --instances the started process is lab.scaleout's supervisor: nginx and the
        # instances are its children, so pinning, sampling and stopping see the whole topology.
        argv = [
            *self._taskset(target.server_cpus or self.method.server_cpus),
            *self.topology.server_argv(
                target.pair.argv(
                    host=HOST, port=PORT_PLACEHOLDER, workers=target.workers or self.method.workers
                ),
                host=HOST,
                port=port,
            ),
        ]
        lab_env: dict[str, str] = {}
        if target.needs_services:
            if self.services is None:
                raise RuntimeError("no PostgreSQL/Redis URLs (preflight was skipped)")
            lab_env["LAB_DATABASE_URL"] = self.services.database_url
            lab_env["LAB_REDIS_URL"] = self.services.redis_url
            lab_env["LAB_UPSTREAM_URL"] = (
                os.environ.get("LAB_UPSTREAM_URL") or self._ensure_upstream()
            )
        lab_env.update(target.pair.env)
        lab_env.update(dict(group.env))
        fh = log.open("ab")
        self._logs.append(fh)
        started = time.monotonic()
        proc = procs.spawn(
            argv,
            env={**os.environ, **lab_env},
            cwd=matrix.REPO_ROOT,
            stdout=fh.fileno(),
            stderr=subprocess.STDOUT,
        )
        try:
            procs.wait_http_ok(f"http://{HOST}:{port}/health", timeout_s=READY_TIMEOUT_S, proc=proc)
        except BaseException as exc:
            procs.stop_group(proc)
            if isinstance(exc, Exception):
                raise RuntimeError(f"{exc}; log {log.name}: {_tail(log, 600)}") from None
            raise
        shown = {k: redact_url(v) if "://" in v else v for k, v in lab_env.items()}
        return Server(
            proc,
            f"http://{HOST}:{port}",
            argv,
            shown,
            log,
            time.monotonic() - started,
            tree_affinity(proc.pid),
        )

    # -- one cell --------------------------------------------------------------------------

    def _load(
        self, cell: Cell, server: Server, duration: float, tag: str, rate: float | None
    ) -> load.LoadRun:
        cpus = tuple(self.method.client_cpus) if self.method.pin else None
        if rate is not None:
            return loadgen.run_rate_load(
                server.base_url,
                cell.scenario,
                rate=rate,
                connections=cell.concurrency,
                duration_s=duration,
                timeout_s=self.method.timeout_s,
                out=self.run.raw / f"{cell.id}.{tag}.json",
                text_out=self.run.raw / f"{cell.id}.{tag}.txt",
                seed=cell.seed,
                cpus=cpus,
            )
        return load.run_load(
            self.wrk,
            server.base_url,
            cell.scenario,
            connections=cell.concurrency,
            duration_s=duration,
            timeout_s=self.method.timeout_s,
            threads=self.method.threads,
            out=self.run.raw / f"{cell.id}.{tag}.json",
            text_out=self.run.raw / f"{cell.id}.{tag}.txt",
            seed=cell.seed,
            cpus=cpus,
        )

    def _cpu_meter(self, cell: Cell, server: Server) -> CpuMeter | None:
        """What a fixed-rate cell's cost is read from: the server's tree and, for a target
        that uses them, the services on this machine (a loopback URL), found once per run."""
        if cell.offered is None:
            return None
        pids = {"server": server.proc.pid if server.proc is not None else None}
        if not cell.target.needs_services or self.services is None:
            return CpuMeter(pids)
        if self._service_pids is None:
            reported = preflight.service_pids(self.services)
            urls = {"postgresql": self.services.database_url, "redis": self.services.redis_url}
            self._service_pids = {
                name: reported[name] if _loopback(url) else None for name, url in urls.items()
            }
        upstream_url = os.environ.get("LAB_UPSTREAM_URL")
        if upstream_url is None:
            upstream = self.upstream.pid if self.upstream is not None else None
        else:  # the user's own upstream: metered only when it listens here
            port = urllib.parse.urlsplit(upstream_url).port
            upstream = listening_pid(port) if _loopback(upstream_url) and port else None
        return CpuMeter({**pids, **self._service_pids, "upstream": upstream})

    def _probe(self, cell: Cell, server: Server) -> Probe | None:
        exp = cell.target.experiment
        if exp is None or exp.probe is None:
            return None
        return Probe(server.base_url, exp.probe, timeout_s=self.method.timeout_s)

    def _rate(self, cell: Cell) -> tuple[float | None, float | None]:
        """The requests/s to offer ``cell`` (None: closed loop) and, for a share of capacity,
        the capacity it is a share of: the closed-loop cell just measured in the same round
        and server start. Raises ValueError when that cell has no usable figure."""
        offered = cell.offered
        if offered is None:
            return None, None
        if offered.rps is not None:
            return offered.rps, None
        assert offered.share is not None
        path = self.run.cell_path(cell.capacity_cell)
        record = json.loads(path.read_text()) if path.exists() else None
        if record is None or record["outcome"] != "ok":
            raise ValueError(
                f"{offered.label} of capacity: {cell.capacity_cell} "
                + ("was not measured" if record is None else f"is {record['outcome']}")
            )
        capacity = float(record["load"]["rps"])
        rate = round(capacity * offered.share, 1)
        if refused := loadgen.check_rate(rate):
            raise ValueError(f"{offered.label} of {capacity:,.0f} requests/s: {refused}")
        return rate, capacity

    def _run_cell(self, cell: Cell, group: Group, server: Server) -> None:
        m = self.method
        started_at = now_iso()
        try:
            rate, capacity = self._rate(cell)
        except ValueError as exc:
            self._write_error(cell, str(exc), group, server, started_at)
            return
        warm: load.LoadRun | None = None
        primed = None
        try:
            if cell.scenario.prime:
                self.ui.cell(cell, "prime", 0)
                if self.services is not None:
                    checks.forget_cached(self.services.redis_url, cell.scenario)
                primed = checks.prime(server.base_url, cell.scenario, timeout_s=m.timeout_s)
            if m.warmup_s > 0:
                self.ui.cell(cell, "warm-up", m.warmup_s)
                warm = self._load(cell, server, m.warmup_s, "warmup", rate)
            settle_s = wait_idle(server.proc.pid) if server.proc is not None else 0.0
            before = checks.check_once(server.base_url, cell.scenario, timeout_s=m.timeout_s)
            self.ui.cell(cell, "measure", m.duration_s)
            sampler = TreeSampler(server.proc.pid) if server.proc is not None else None
            probe = self._probe(cell, server)
            meter = self._cpu_meter(cell, server)
            with contextlib.ExitStack() as during:
                if sampler is not None:
                    during.enter_context(sampler)
                if probe is not None:
                    during.enter_context(probe)
                if meter is not None:  # entered last, so it reads right around the load
                    during.enter_context(meter)
                snapshot = None
                if rate is None and m.duration_s > 2 * fairness.END_MARGIN_S:
                    snapshot = during.enter_context(
                        fairness.ConnectionSnapshot(
                            urllib.parse.urlsplit(server.base_url).port or 80,
                            Path(self.wrk).name[:15],  # as the kernel names the process
                            m.duration_s - fairness.END_MARGIN_S,
                        )
                    )
                run = self._load(cell, server, m.duration_s, "wrk", rate)
            if cell.scenario.overload and server.proc is not None:
                # what the load left in flight is worked off first: a lone request sent into
                # an overloaded server may rightly be shed, or time out in its queue
                wait_idle(server.proc.pid)
            after = checks.check_once(server.base_url, cell.scenario, timeout_s=m.timeout_s)
        except load.LoadError as exc:
            died = (
                ""
                if server.alive()
                else f" (server exited with {server.returncode}: {_tail(server.log, 600)})"
            )
            self._write_error(cell, f"load tool: {exc}{died}", group, server, started_at)
            return
        if not server.alive():
            self._write_error(
                cell,
                f"server exited with {server.returncode} during the cell: {_tail(server.log, 600)}",
                group,
                server,
                started_at,
            )
            return
        result = run.result
        load_json = {
            "tool": "wrk" if rate is None else "lab-loadgen",
            **result.to_json(),
            "duration_s": m.duration_s,
            "timeout_s": m.timeout_s,
            "seed": cell.seed,
            "argv": run.argv,
            "raw": f"raw/{cell.id}.wrk.json",
        }
        if snapshot is not None:
            load_json["requests_per_connection"] = fairness.requests_per_connection(
                snapshot.received,
                result.bytes_per_response,
                connections=cell.concurrency,
                at_s=snapshot.at_s,
            )
        checks_json = {"before": before.to_json(), "after": after.to_json()}
        reasons = stats.cell_failures(
            load_json, cell.scenario.expect, checks_json, overload=cell.scenario.overload
        )
        server_json = self._server_json(server, group)
        server_json["settle_s"] = round(settle_s, 3)
        if sampler is not None:
            sample = sampler.result()
            server_json.update(sample.to_json())
            server_json["cpu_s_per_1k"] = (
                round(sample.cpu_s / result.requests * 1000, 6) if result.requests else None
            )
            server_json["switches_per_req"] = (
                [
                    round(sample.voluntary_switches / result.requests, 4),
                    round(sample.involuntary_switches / result.requests, 4),
                ]
                if result.requests
                else None
            )
        util = run.client_util
        coverage = stats.latency_coverage(result.rps, result.latency_us["mean"], cell.concurrency)
        load_json["latency_coverage"] = None if coverage is None else round(coverage, 4)
        flags = []
        cost = None
        if rate is None:
            if util >= m.client_saturated:
                flags.append("client-saturated")
            if coverage is not None and coverage < stats.CENSORED_BELOW:
                flags.append("latency-censored")
        else:
            # An open-loop generator is busy by design; it fell behind only if it sent late
            # on a connection that was free (its own lag, not the server's).
            lag_p99 = (result.send_lag_us or {}).get("p99", 0.0)
            if lag_p99 > stats.GENERATOR_LAG_US:
                flags.append("client-saturated")
            if not stats.rate_held(result.rps, rate):
                flags.append("rate-not-held")
            assert meter is not None  # every fixed-rate cell has one
            used = dict(meter.used_s)
            cost = stats.fixed_rate_cost(
                result.requests,
                server_cpu_s=used.pop("server", None),
                services_cpu_s=used,
                unmeasured=[name for name in meter.unmeasured if name != "server"],
            )
        record = {
            **self._cell_head(cell, group, started_at, rate, capacity),
            "outcome": "failed" if reasons else "ok",
            "reasons": reasons,
            "flags": flags,
            "load": load_json,
            "cost": cost,
            "warmup": None
            if warm is None
            else {
                "duration_s": m.warmup_s,
                "requests": warm.result.requests,
                "rps": round(warm.result.rps, 3),
                "socket_errors": warm.result.socket_errors,
                "statuses": {str(k): v for k, v in warm.result.statuses.items()},
                "raw": f"raw/{cell.id}.warmup.json",
            },
            "primed": primed,
            "server": server_json,
            "client": {
                "cpu_s": round(run.client_cpu_s, 4),
                "wall_s": round(run.wall_s, 3),
                "util": round(util, 4),
                "saturated": "client-saturated" in flags,
                "cpus": list(m.client_cpus) if m.pin else None,
            },
            "checks": checks_json,
            "probe": None if probe is None else probe.to_json(),
        }
        self._write(cell, record)

    def _cell_head(
        self,
        cell: Cell,
        group: Group,
        started_at: str,
        rate: float | None = None,
        capacity: float | None = None,
    ) -> dict[str, Any]:
        """What every cell record starts with; ``rate`` is the requests/s a fixed-rate cell
        was offered, ``capacity`` the closed-loop figure a share of capacity was taken of."""
        return {
            "run_id": self.run.run_id,
            "cell_id": cell.id,
            "mode": self.method.mode,
            "target": target_json(cell.target, self.method.workers),
            "scenario": scenario_json(cell),
            "concurrency": cell.concurrency,
            "offered": None if cell.offered is None else cell.offered.label,
            "rate": rate,
            "capacity_share": None if cell.offered is None else cell.offered.share,
            "capacity_rps": capacity,
            "repeat": cell.repeat,
            "round": group.round,
            "session": self.session,
            "server_config": group.config,
            "topology": self._topology_json,
            "started_at": started_at,
            "finished_at": now_iso(),
        }

    def _server_json(self, server: Server | None, group: Group) -> dict[str, Any]:
        if server is None:
            return {"config": group.config}
        return {
            "argv": server.argv,
            "env": server.env,
            "workers": group.target.workers or self.method.workers,
            "pid": server.proc.pid if server.proc else None,
            "ready_s": round(server.ready_s, 3),
            "affinity": server.affinity,
            "config": group.config,
            "log": f"raw/{server.log.name}" if server.proc else None,
            "external": server.proc is None,
        }

    def _write_error(
        self,
        cell: Cell,
        reason: str,
        group: Group,
        server: Server | None = None,
        started_at: str | None = None,
    ) -> None:
        record = {
            **self._cell_head(cell, group, started_at or now_iso()),
            "outcome": "error",
            "reasons": [reason],
            "flags": [],
            "load": None,
            "warmup": None,
            "server": self._server_json(server, group),
            "client": None,
            "checks": None,
        }
        self._write(cell, record)

    def _write(self, cell: Cell, record: dict[str, Any]) -> None:
        self.run.write_cell(cell.id, record)
        rows = write_summary(self.run, self.method)
        self.ui.cell_done(stamp("cell", record), rows)


def write_summary(run: RunDir, method: Method) -> list[dict[str, Any]]:
    """Rebuild ``summary.json`` from every cell on disk (so it is right after a resume)."""
    cells = list(run.iter_cells())
    rows = stats.summarise(
        cells, noisy_threshold=method.noisy_threshold, planned_repeats=method.repeats
    )
    counted = run.path / "instructions.json"
    if counted.exists():  # a reference run counts instructions after its cells
        from .instructions import load_results

        stats.fold_instructions(
            rows, {(r.target, r.scenario): r.per_request for r in load_results(counted)[1]}
        )
    counts = {k: sum(1 for c in cells if c["outcome"] == k) for k in ("ok", "failed", "error")}
    write_json(
        run.summary,
        stamp(
            "summary",
            {
                "run_id": run.run_id,
                "updated_at": now_iso(),
                "noisy_threshold": method.noisy_threshold,
                "planned_repeats": method.repeats,
                "cells": counts,
                "rows_noisy": sum(1 for r in rows if r["noisy"]),
                "rows": rows,
            },
        ),
    )
    return rows
