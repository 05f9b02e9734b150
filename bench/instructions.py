"""``lab instructions``: what a request costs each pair in CPU instructions, next to its floors.

Requests/s on a shared machine swing by tens of percent between repeats of the same cell
(read the ``spread`` column of any run), which hides a 10 % overhead. An instruction count
does not swing: valgrind's callgrind counts the instructions a process executes, the same
count (to well under 1 %) for the same binary, inputs and environment, whatever else the
machine is doing. So the lab answers "what does the stack cost over the framework's hello
world?" twice: as a requests/s ratio under load (``lab bench``, the goal) and as an
instruction ratio here (steady, and what a profile can be checked against).

Method, per target and scenario: a fresh server under ``valgrind --tool=callgrind
--instr-atstart=no --trace-children=yes`` (pre-fork workers are counted too); warm-up
requests with counting off; counting switched on in every process of the server's tree
(``callgrind_control -i on PID``); ``--requests`` requests one at a time on one keep-alive
connection, each checked for the scenario's status; counting off, a dump, the server
stopped. Instructions per request is the sum over the tree's dumps divided by the count.

What it does not see: time in the kernel (check with ``strace -c`` that a pair and its
floor make the same syscalls per request), cache misses, and waiting; and one request at a
time is not 64 in flight. It complements the requests/s figure; it does not replace it.
Writes ``instructions.json`` (results plus the environment, as ``lab bench``'s manifest)
and ``instructions.md``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab import matrix, procs
from lab.scenarios import scenario

from . import manifest, preflight
from .monitor import tree_pids
from .targets import Target, floor_refs, select_targets

__all__ = [
    "DEFAULT_SCENARIOS",
    "Result",
    "check_tools",
    "command",
    "count",
    "markdown",
    "measure",
    "method_record",
    "planned",
    "ratios",
]

HOST = "127.0.0.1"
DEFAULT_SCENARIOS = ("json", "db")
READY_TIMEOUT_S = 240.0  # start-up under valgrind is tens of times slower
WARMUP_REQUESTS = 100
DUMP_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Result:
    target: str
    role: str  # "pair" | "floor"
    framework: str | None
    server: str
    scenario: str
    requests: int
    processes: int  # processes of the server's tree that were counted
    instructions: int
    # Where they ran: self instructions by binary (the interpreter, the server's native
    # code, libc, C extensions), so a difference can be placed before anyone profiles it.
    by_object: dict[str, int] = field(default_factory=dict)

    @property
    def per_request(self) -> float:
        return self.instructions / self.requests

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "per_request": round(self.per_request)}


def _callgrind_control(*args: str) -> bool:
    done = subprocess.run(
        ["callgrind_control", *args], capture_output=True, check=False, timeout=60
    )
    return done.returncode == 0


def _send(base: str, path: str, count: int, expect: Sequence[int], headers: dict[str, str]) -> None:
    """``count`` requests one after another on one connection (http.client reconnects by
    itself when a server closes it, as gunicorn's sync worker does after every response).

    Each is the request wrk sends for the scenario: ``Host`` and the scenario's headers.
    http.client would add ``Accept-Encoding: identity`` of its own, which the lab's stack
    then negotiates and a hello world ignores: a cost the load never pays."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        for _ in range(count):
            conn.putrequest("GET", path, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            response = conn.getresponse()
            response.read()
            if response.status not in expect:
                raise RuntimeError(f"GET {path}: HTTP {response.status}, expected {expect}")
    finally:
        conn.close()


def _dumped(out_dir: Path, slug: str, pids: Sequence[int]) -> list[Path]:
    """The dump files ``callgrind_control -d`` asked for (``<slug>.<pid>.out.<n>``); the
    dump is written when the process next runs valgrind's scheduler, so wait for it."""
    deadline = time.monotonic() + DUMP_TIMEOUT_S
    while True:
        files = sorted(out_dir.glob(f"{slug}.*.out.*"))
        dumped_pids = {int(f.name.split(".")[-3]) for f in files}
        if set(pids) <= dumped_pids and all(f.stat().st_size > 0 for f in files):
            return files
        if time.monotonic() > deadline:
            missing = sorted(set(pids) - dumped_pids)
            raise RuntimeError(f"callgrind wrote no dump for pid(s) {missing}")
        time.sleep(0.2)


_NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")


def read_dump(dump: Path) -> tuple[int, dict[str, int]]:
    """A callgrind dump's total instructions (its ``totals:`` or ``summary:`` line) and the
    same instructions by the binary that executed them (file name only), in one pass over
    a file that runs to tens of MB, read straight from the format (valgrind's "Callgrind
    Format Specification"):
    ``ob=``/``cob=`` name binaries, compressed as ``(id) name`` the first time and ``(id)``
    after; a cost line is the current function's own cost, except the one after a
    ``calls=`` line, which is the call's inclusive cost and belongs to the callee. The
    values add up to the dump's ``totals``."""
    names: dict[str, str] = {}
    costs: dict[str, int] = {}
    positions = 1
    current = "?"
    skip_next = False

    def name_of(spec: str) -> str:
        m = _NAMED.match(spec)
        if m is None:
            return Path(spec).name
        if m.group(2) is not None:
            names[m.group(1)] = Path(m.group(2)).name
        return names.get(m.group(1), f"({m.group(1)})")

    totals: int | None = None
    for raw in dump.read_text(errors="replace").splitlines():
        line = raw.strip()
        if not line:
            continue
        first = line[0]
        if first.isdigit() or first in "+-*":
            if skip_next:
                skip_next = False
                continue
            fields = line.split()
            if len(fields) > positions:
                costs[current] = costs.get(current, 0) + int(fields[positions])
        elif line.startswith("ob="):
            current = name_of(line[3:])
        elif line.startswith("cob="):
            name_of(line[4:])  # may define a name used by a later ob=
        elif line.startswith("calls="):
            skip_next = True
        elif line.startswith("positions:"):
            positions = len(line.split()[1:])
        elif line.startswith(("totals:", "summary:")):
            totals = int(line.split(":", 1)[1])
    if totals is None:
        raise RuntimeError(f"{dump}: no totals line")
    return totals, costs


def measure(
    target: Target, scenario_name: str, *, env: dict[str, str], out: Path, requests: int
) -> Result:
    """One fresh server for ``target`` under callgrind, ``requests`` counted requests."""
    spec = scenario(scenario_name)
    slug = f"{target.id}__{scenario_name}"
    raw = out / "raw"
    for old in raw.glob(f"{slug}.*"):
        old.unlink()
    port = procs.free_port(HOST)
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--trace-children=yes",
        f"--callgrind-out-file={raw}/{slug}.%p.out",
        *target.pair.argv(host=HOST, port=port, workers=1),
    ]
    base = f"http://{HOST}:{port}"
    with (raw / f"{slug}.server.log").open("ab") as log:
        proc = procs.spawn(
            argv,
            env={**os.environ, **env, **target.pair.env},
            cwd=matrix.REPO_ROOT,
            stdout=log.fileno(),
            stderr=subprocess.STDOUT,
        )
        try:
            procs.wait_http_ok(f"{base}/health", timeout_s=READY_TIMEOUT_S, proc=proc)
            _send(base, spec.sample_path(), WARMUP_REQUESTS, spec.expect, spec.headers)
            pids = [pid for pid in tree_pids(proc.pid) if _callgrind_control("-i", "on", str(pid))]
            if not pids:
                raise RuntimeError("callgrind_control reached no process of the server")
            _send(base, spec.sample_path(), requests, spec.expect, spec.headers)
            for pid in pids:
                _callgrind_control("-i", "off", str(pid))
                _callgrind_control("-d", str(pid))
            instructions = 0
            by_object: Counter[str] = Counter()
            for dump in _dumped(raw, slug, pids):  # one per process of the tree
                totals, costs = read_dump(dump)
                instructions += totals
                by_object.update(costs)
        finally:
            procs.stop_group(proc)
    return Result(
        target.id,
        target.role,
        target.framework,
        target.server,
        scenario_name,
        requests,
        len(pids),
        instructions,
        dict(by_object.most_common()),
    )


def ratios(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Per pair and scenario: its instructions per request and, for each floor measured on
    the same server and scenario, the floor's over the pair's (1.00: the stack costs nothing;
    0.80: the pair executes 1.25 times the floor's instructions)."""
    by_key = {(r.target, r.scenario): r for r in results}
    rows = []
    for r in results:
        if r.role != "pair":
            continue
        row: dict[str, Any] = {
            "target": r.target,
            "scenario": r.scenario,
            "per_request": r.per_request,
        }
        pair = Target(matrix.pair(str(r.framework), r.server), "pair")
        for role, floor_id in floor_refs(pair).items():
            if (ref := by_key.get((floor_id, r.scenario))) is not None:
                row[role] = {
                    "target": floor_id,
                    "per_request": ref.per_request,
                    "ratio": ref.per_request / r.per_request,
                }
        rows.append(row)
    return rows


def _k(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:,.1f}k"


def _ratio(ref: dict[str, Any] | None) -> str:
    return "-" if ref is None else f"{ref['ratio']:.2f}"


def markdown(
    results: Sequence[Result],
    header: dict[str, Any],
    goals: dict[str, float | None] | None = None,
    name: str | None = None,
) -> str:
    """The table; with ``goals`` (scenario -> the ``x fw`` to reach), a column that says
    whether the instruction ratio reaches the goal set for the requests/s ratio. ``name``
    heads it (default: the run id); a committed run's folder name is what a reader finds
    under results/, and two runs started in the same second share a run id."""
    machine = header.get("machine", {})
    method = header.get("method", {})
    goals = goals or {}
    lines = [
        f"# Instructions per request: {name or header.get('run_id', '')}",
        "",
        f"{machine.get('cpu_model') or 'unknown CPU'}, Python "
        f"{header.get('python', {}).get('version', '?')}; commit "
        f"{str(header.get('git', {}).get('commit') or '?')[:12]}; callgrind, "
        f"{method.get('requests', '?')} requests one at a time after "
        f"{method.get('warmup_requests', '?')} uncounted, 1 worker; the server's whole process "
        "tree counted. `x fw`: the framework's hello world's instructions per request over "
        "the pair's; `x server`: the raw ASGI/WSGI callable's over the pair's.",
        "",
        "| pair | scenario | instr/req | hello world | x fw | raw callable | x server | goal |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    rows = ratios(results)
    for row in rows:
        fw, server = row.get("framework"), row.get("server")
        goal = goals.get(row["scenario"])
        verdict = "-"
        if goal is not None and fw is not None:
            verdict = f"{'met' if fw['ratio'] >= goal else '**not met**'} (>= {goal:.2f})"
        lines.append(
            f"| {row['target']} | {row['scenario']} | {_k(row['per_request'])} "
            f"| {_k(fw and fw['per_request'])} | {_ratio(fw)} "
            f"| {_k(server and server['per_request'])} | {_ratio(server)} | {verdict} |"
        )
    return "\n".join(lines + _by_object_table(results, rows)) + "\n"


TOP_OBJECTS = 4


def _by_object_table(results: Sequence[Result], rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per pair of ``rows`` (:func:`ratios`) with a hello world measured beside it: the
    binaries that executed most of the pair's instructions, per request, the hello world's
    in the same binary, and the difference; empty for runs recorded before ``by_object``."""
    by_key = {(r.target, r.scenario): r for r in results}
    lines: list[str] = []
    for row in rows:
        pair = by_key[row["target"], row["scenario"]]
        fw = row.get("framework")
        hello = by_key.get((fw["target"], row["scenario"])) if fw else None
        if hello is None or not pair.by_object or not hello.by_object:
            continue
        for name, cost in list(pair.by_object.items())[:TOP_OBJECTS]:
            mine = cost / pair.requests
            theirs = hello.by_object.get(name, 0) / hello.requests
            lines.append(
                f"| {row['target']} | {row['scenario']} | `{name}` | {_k(mine)} "
                f"| {_k(theirs)} | {(mine - theirs) / 1000:+,.1f}k |"
            )
    if not lines:
        return []
    return [
        "",
        "Where the instructions go: per request, the instructions each binary executed itself "
        f"(the pair's {TOP_OBJECTS} largest), in the pair and in its hello world.",
        "",
        "| pair | scenario | binary | pair | hello world | difference |",
        "|---|---|---|---:|---:|---:|",
        *lines,
    ]


def load_results(path: Path) -> tuple[dict[str, Any], list[Result]]:
    doc = json.loads(path.read_text())
    fields = set(Result.__dataclass_fields__)
    return doc, [Result(**{k: v for k, v in r.items() if k in fields}) for r in doc["results"]]


def check_tools() -> None:
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise preflight.PreflightError(f"{tool} not found: apt-get install valgrind")


def command(args: argparse.Namespace, *, measure_fn: Callable[..., Result] = measure) -> int:
    check_tools()
    names = list(args.scenario or DEFAULT_SCENARIOS)
    for name in names:
        try:
            scenario(name)
        except KeyError:
            raise preflight.PreflightError(f"unknown scenario {name!r}") from None
    try:
        targets = select_targets(tuple(args.framework or ()), tuple(args.server or ()))
    except KeyError as exc:
        raise preflight.PreflightError(str(exc)) from None
    if not targets:
        raise preflight.PreflightError("no pair matches --framework/--server")
    run = manifest.standalone("instructions", args.out, method_record(args.requests))
    count(
        targets,
        names,
        env=run.env,
        out=run.out,
        header=run.header,
        requests=args.requests,
        measure_fn=measure_fn,
    )
    print(f"lab instructions: {run.out / 'instructions.md'}")
    return 0


def method_record(requests: int) -> dict[str, Any]:
    return {
        "requests": requests,
        "warmup_requests": WARMUP_REQUESTS,
        "workers": 1,
        "request": "as wrk sends it: Host and the scenario's headers",
    }


def planned(targets: Sequence[Target], names: Sequence[str]) -> list[tuple[Target, str]]:
    """Each target with each of ``names`` it serves, in order (a floor serves its declared
    scenarios; a pair the contract's, not the floors' control)."""
    out = []
    for target in targets:
        if target.floor is not None:
            served: Sequence[str] = target.floor.scenarios
        else:
            served = [n for n in names if not scenario(n).floor_only]
        out += [(target, n) for n in names if n in served]
    return out


def count(
    targets: Sequence[Target],
    names: Sequence[str],
    *,
    env: dict[str, str],
    out: Path,
    header: dict[str, Any],
    requests: int,
    measure_fn: Callable[..., Result] = measure,
) -> list[Result]:
    """Count every target on each of ``names`` it serves into ``out``/instructions.json
    (rewritten after each, so an interrupted count keeps what it finished, and a second call
    with the same file counts only what is missing), then write instructions.md."""
    path = out / "instructions.json"
    results: list[Result] = []
    if path.exists():
        _, results = load_results(path)
    done = {(r.target, r.scenario) for r in results}
    for target, name in planned(targets, names):
        if (target.id, name) in done:
            continue
        result = measure_fn(target, name, env=env, out=out, requests=requests)
        results.append(result)
        print(f"{target.id:34} {name:9} {result.per_request:>12,.0f} instr/req", flush=True)
        doc = {**header, "results": [r.to_json() for r in results]}
        path.write_text(json.dumps(doc, indent=2) + "\n")
    (out / "instructions.md").write_text(markdown(results, header))
    return results
