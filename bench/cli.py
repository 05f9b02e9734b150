"""``lab bench``, ``lab report`` and ``lab compare``: parse the options, then run, report
or compare.

``lab bench`` exits 0 when every planned cell was run (whatever the cells' outcomes: a
failing pair is a result), 1 when a cell failed or errored and ``--strict`` was given, 2 on
a usage or preflight error and 130 when interrupted (finished cells are kept; run the same
command with ``--out <run dir>`` to resume).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import signal
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from lab import matrix
from lab.scenarios import Scenario, matrix_table, parse_offered, scenarios

from . import idle, instructions, load, loadgen, manifest, preflight, report
from .method import Method, method_for
from .plan import Group, build_plan, scenarios_for
from .results import RunDir, stamp, stored_method, write_json
from .runner import Runner, write_summary
from .targets import Target, experiment_targets, select_targets
from .ui import make_console, make_ui

__all__ = ["command"]

RESULTS_ROOT = matrix.REPO_ROOT / "results"


def command(args: argparse.Namespace) -> int:
    if args.command == "report":
        return report.command(args.dir)
    if args.command == "techniques":
        return techniques(Path(args.dir))
    if args.command == "compare":
        from .reporting import compare

        return compare.command(args.old, args.new, args.threshold, out=args.out)
    try:
        return bench(args)
    except preflight.PreflightError as exc:
        print(f"lab bench: {exc}", file=sys.stderr)
        return 2


def techniques(directory: Path) -> int:
    """Fill the technique pages' generated blocks and docs/claims.md from one run."""
    import os

    from . import reporting
    from .reporting import claims, experiments

    try:
        run = reporting.load(directory)
    except FileNotFoundError as exc:
        print(f"lab techniques: {exc}", file=sys.stderr)
        return 2
    if not experiments.in_run(run):
        print(f"lab techniques: {directory} holds no experiment cells", file=sys.stderr)
        return 2
    docs = matrix.REPO_ROOT / "docs"
    link = os.path.relpath(directory.resolve(), docs / "techniques")
    written = experiments.update_pages(run, docs / "techniques", link_base=link)
    # The verdicts come from one run that measured every experiment they cite; a run of a
    # few experiments fills those pages and leaves the verdicts to the run they came from.
    missing = claims.experiments_cited(docs / "claims.toml") - {
        e.name for e in experiments.in_run(run)
    }
    if missing:
        print(
            f"lab techniques: docs/claims.md left as it is ({run.run_id} did not measure "
            f"{', '.join(sorted(missing))})"
        )
    else:
        text = claims.markdown(
            run,
            docs / "claims.toml",
            run_link=os.path.relpath(directory.resolve(), docs) + "/experiments.md",
        )
        (docs / "claims.md").write_text(text, encoding="utf-8")
        written.append(docs / "claims.md")
    print(f"lab techniques: wrote {len(written)} files from {run.run_id}")
    return 0


def _opt(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    return getattr(args, name, default)


def choose_scenarios(names: list[str], *, quick: bool) -> list[Scenario]:
    known = {s.id: s for s in scenarios()}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise preflight.PreflightError(
            f"unknown scenario {unknown[0]!r}; known: {', '.join(known)}"
        )
    if names:
        return [s for s in scenarios() if s.id in names]
    return [s for s in scenarios() if s.in_matrix and (s.quick or not quick)]


def choose_targets(
    args: argparse.Namespace, floor_roles: tuple[str, ...] = ("server", "framework")
) -> list[Target]:
    url = _opt(args, "target")
    if url:
        name = _opt(args, "target_name") or "external"
        fw = matrix.Framework(name, "external", url, ("external",))
        return [Target(matrix.Pair(fw, matrix.Server("external", url, "")), "external")]
    try:
        return select_targets(
            tuple(args.framework),
            tuple(args.server),
            with_floors=not _opt(args, "no_floors", False),
            floor_roles=floor_roles,
        )
    except KeyError as exc:
        raise preflight.PreflightError(str(exc.args[0])) from None


def default_run_dir(method: Method) -> Path:
    stamp_ = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    commit = manifest.git_info().get("commit")
    kind = method.mode if method.mode == "reference" else "rate" if method.rates else method.mode
    return RESULTS_ROOT / (f"{stamp_}-{kind}" + (f"-{commit[:8]}" if commit else ""))


def bench(args: argparse.Namespace) -> int:
    argv = ["lab", *sys.argv[1:]] if Path(sys.argv[0]).name in {"lab", "cli.py"} else sys.argv
    experiments = _opt(args, "experiments")
    reference = bool(_opt(args, "reference", False))
    table: dict[str, Any] = matrix_table("bench")["reference"] if reference else {}
    rates = tuple(str(r) for r in _opt(args, "rate") or ())
    if reference and (
        args.quick
        or experiments is not None
        or args.scenario
        or rates
        or _opt(args, "concurrency")
        or _opt(args, "target")
        or _opt(args, "instances")
    ):
        raise preflight.PreflightError(
            "--reference declares its own scenarios, rates and connections (matrix.toml "
            "[bench.reference]); it takes --framework and --server to narrow it, and "
            "--duration, --warmup and --repeat (recorded in its manifest)"
        )
    for spec in rates:
        if spec == "declared":
            continue
        try:
            offered = parse_offered(spec)
        except ValueError as exc:
            raise preflight.PreflightError(str(exc)) from None
        if offered.rps is not None and (refused := loadgen.check_rate(offered.rps)):
            raise preflight.PreflightError(refused)
    method = method_for(
        quick=args.quick,
        experiments=experiments is not None,
        reference=reference,
        duration_s=args.duration,
        warmup_s=_opt(args, "warmup"),
        repeats=args.repeat,
        concurrency=tuple(_opt(args, "concurrency") or ()),
        workers=_opt(args, "workers"),
        pin=not _opt(args, "no_pin", False),
        instances=_opt(args, "instances"),
        awake=not _opt(args, "allow_idle", False),
        rates=rates,
    )
    if (
        method.duration_s < 1
        or method.duration_s != int(method.duration_s)
        or method.warmup_s < 0
        or method.warmup_s != int(method.warmup_s)
    ):
        raise preflight.PreflightError(
            "--duration and --warmup are whole seconds (wrk's unit); --duration at least 1"
        )
    if method.repeats < 1:
        raise preflight.PreflightError("--repeat must be at least 1")
    if method.instances < 0 or (method.instances and _opt(args, "target")):
        raise preflight.PreflightError(
            "--instances is at least 1, and starts the servers itself (not with --target)"
        )
    if method.instances:
        from lab import scaleout

        try:
            scaleout.find_nginx()
        except FileNotFoundError as exc:
            raise preflight.PreflightError(str(exc)) from None
    if experiments is not None:
        if args.framework or args.server or args.scenario or _opt(args, "target"):
            raise preflight.PreflightError(
                "--experiments declares its own pairs and scenarios (matrix.toml "
                "[experiments.*]); name experiments instead"
            )
        try:
            targets = experiment_targets(tuple(experiments))
        except KeyError as exc:
            raise preflight.PreflightError(str(exc.args[0])) from None
        chosen = []
    elif reference:
        chosen = choose_scenarios(list(table["scenarios"]), quick=False)
        roles = tuple(table.get("floor_roles", ("server", "framework")))
        targets = [t for t in choose_targets(args, roles) if scenarios_for(t, chosen, method)]
    else:
        chosen = choose_scenarios(list(args.scenario), quick=args.quick)
        targets = [t for t in choose_targets(args) if scenarios_for(t, chosen, method)]
    if not targets:
        raise preflight.PreflightError("nothing to run: no target serves the chosen scenarios")
    groups = build_plan(targets, chosen, method)
    for sc in {c.scenario.id: c.scenario for g in groups for c in g.cells if c.offered}.values():
        if refused := loadgen.unsupported(sc):
            raise preflight.PreflightError(refused)
    if method.rates and not groups:
        raise preflight.PreflightError(
            "nothing to run: no chosen scenario declares rates (matrix.toml `rates`)"
        )
    cells = sum(len(g.cells) for g in groups)
    counted = list(table.get("instruction_scenarios", ()))
    counts = instructions.planned(targets, counted)
    if _opt(args, "list", False):
        for group in groups:
            for cell in group.cells:
                print(f"{cell.id}  [{group.config}]")
        for target, name in counts:
            print(f"{target.id}__{name}  [instructions]")
        minutes = estimate_s(method, cells, len(groups), len(counts)) / 60
        print(
            f"{cells} cells, {len(groups)} server starts"
            + (f", {len(counts)} instruction counts" if counts else "")
            + f"; about {minutes:.0f} minutes",
            file=sys.stderr,
        )
        return 0
    if counts:
        instructions.check_tools()

    wrk = load.find_wrk(_opt(args, "wrk"))
    preflight.check_wrk(wrk, pin=method.pin)
    assert wrk is not None
    if method.rates:
        try:
            loadgen.build()
        except load.LoadError as exc:
            raise preflight.PreflightError(str(exc)) from None
    urls = None
    if any(t.needs_services for t in targets):
        urls = preflight.resolve_services()
        preflight.check_seeded(urls.database_url)

    run = RunDir(Path(args.out) if args.out else default_run_dir(method))
    with idle.held_awake(method.awake_cpus) as awake:
        code = _measure(
            args, method, argv, run, targets, groups, wrk, urls, awake, report_now=not counts
        )
    if code == 130 or not counts:
        return code
    assert urls is not None  # a reference's pairs need the services
    if _count_instructions(run, targets, counted, int(table["instruction_requests"]), urls):
        return 130
    write_summary(run, method)  # folds the counts into the fixed-rate rows
    return max(code, report.command(str(run.path)))


def _count_instructions(
    run: RunDir,
    targets: list[Target],
    names: list[str],
    requests: int,
    urls: preflight.ServiceUrls,
) -> bool:
    """The reference's callgrind counts, into the run's folder (resumable as its cells are);
    True when interrupted."""
    standalone = manifest.standalone_in(
        "instructions", run.run_id, run.path, urls, instructions.method_record(requests)
    )
    try:
        instructions.count(
            targets,
            names,
            env=standalone.env,
            out=run.path,
            header=standalone.header,
            requests=requests,
        )
    except KeyboardInterrupt:
        print(
            f"lab bench: interrupted; finished counts are in {run.path}; resume with "
            f"`lab bench --reference --out {run.path}`",
            file=sys.stderr,
        )
        return True
    return False


# What a cell costs beyond its warm-up and measured seconds, a server start and one count
# under callgrind, on this 2-core VM: only for --list's estimate, never a measurement.
CELL_OVERHEAD_S = 0.5
START_S = 2.5
COUNT_S = 11.0


def estimate_s(method: Method, cells: int, starts: int, counts: int) -> float:
    """About how long a run takes, for choosing a matrix that fits a sitting."""
    per_cell = method.duration_s + method.warmup_s + CELL_OVERHEAD_S
    return cells * per_cell + starts * START_S + counts * COUNT_S


def _measure(
    args: argparse.Namespace,
    method: Method,
    argv: list[str],
    run: RunDir,
    targets: list[Target],
    groups: list[Group],
    wrk: str,
    urls: preflight.ServiceUrls | None,
    awake: dict[str, Any],
    *,
    report_now: bool = True,
) -> int:
    """Create or resume the run, measure every cell of ``groups``, summarise and (unless
    ``report_now`` is False: more is measured into the run first) write its report;
    ``awake`` is what :func:`bench.idle.held_awake` did, recorded with the session."""
    cells = sum(len(g.cells) for g in groups)
    selection = {
        "targets": [t.id for t in targets],
        "scenarios": sorted({c.scenario.id for g in groups for c in g.cells}),
        "cells": cells,
        "server_starts": len(groups),
    }
    if run.exists():
        session = _resume_manifest(
            run, method, argv, selection, urls, awake, allow_mixed=_opt(args, "allow_mixed", False)
        )
    else:
        session = 0
        run.create()
        lua = load.LUA_SCRIPT.read_bytes()
        data = manifest.collect(
            run_id=run.run_id,
            argv=argv,
            method=method.to_json(),
            pinning={
                "enabled": method.pin,
                "tool": "taskset" if method.pin else None,
                "server_cpus": list(method.server_cpus) if method.pin else None,
                "client_cpus": list(method.client_cpus) if method.pin else None,
                "note": "server's whole process tree on server_cpus; wrk, the upstream "
                "service and the harness on client_cpus; PostgreSQL and Redis "
                "are not pinned"
                if method.pin
                else "not pinned (--no-pin or fewer than 2 usable CPUs)",
            },
            wrk={
                "path": wrk,
                "version": load.wrk_version(wrk),
                "script": str(load.LUA_SCRIPT.relative_to(matrix.REPO_ROOT)),
                "script_sha256": hashlib.sha256(lua).hexdigest(),
            },
            loadgen=None
            if not method.rates
            else {
                "source": str(loadgen.SOURCE.relative_to(matrix.REPO_ROOT)),
                "source_sha256": hashlib.sha256(loadgen.SOURCE.read_bytes()).hexdigest(),
                "max_rate": loadgen.MAX_RATE,
            },
            services=manifest.service_versions(
                urls.database_url if urls else None, urls.redis_url if urls else None
            ),
            selection=selection,
            idle=awake,
        )
        write_json(run.manifest, stamp("manifest", data))
    run.create()

    console = make_console()
    ui = make_ui(console)
    runner = Runner(
        run,
        method,
        wrk=wrk,
        ui=ui,
        services=urls,
        external_url=_opt(args, "target"),
        session=session,
    )
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        with ui:
            runner.execute(groups)
    except KeyboardInterrupt:
        write_summary(run, method)
        print(
            f"lab bench: interrupted; finished cells are in {run.path}; resume with "
            f"`lab bench ... --out {run.path}`",
            file=sys.stderr,
        )
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    write_summary(run, method)
    if report_now:  # the run ends on its answer: tables, picks, and the files that say why
        report.command(str(run.path))
    done = [c for c in run.iter_cells()]
    bad = [c for c in done if c["outcome"] != "ok"]
    console.print(
        f"lab bench: {len(done)} cells in {run.path} "
        f"({len(done) - len(bad)} ok, {len(bad)} failed or errored)"
    )
    return 1 if bad and _opt(args, "strict", False) else 0


def _mixed_sitting(data: Mapping[str, Any], here: Mapping[str, Any]) -> str:
    """How this session differs from the run's first in machine, boot or commit ("" when
    it does not): absolute figures from two sittings differ up to 2x on one VM type."""
    first_machine = data.get("machine") or {}
    first_git = data.get("git") or {}
    differences = [
        f"on {label} {first_machine.get(key)!r} (now {here['machine'].get(key)!r})"
        for key, label in (("hostname", "host"), ("boot_id", "boot"))
        if first_machine.get(key) and first_machine.get(key) != here["machine"].get(key)
    ]
    if first_git.get("commit") != here["git"].get("commit"):
        differences.append(
            f"at commit {str(first_git.get('commit'))[:12]} "
            f"(now {str(here['git'].get('commit'))[:12]})"
        )
    return ", ".join(differences)


def _changes(before: Mapping[str, Any], now: Mapping[str, Any], keys: Iterable[str]) -> str:
    """``k was a, now b`` for each of ``keys`` whose value differs; empty when none does."""
    return ", ".join(
        f"{k} was {before.get(k)!r}, now {now.get(k)!r}"
        for k in keys
        if before.get(k) != now.get(k)
    )


def _resume_manifest(
    run: RunDir,
    method: Method,
    argv: list[str],
    selection: dict[str, Any],
    urls: preflight.ServiceUrls | None,
    awake: dict[str, Any],
    *,
    allow_mixed: bool = False,
) -> int:
    """Check that a resumed run measures as before, record this session, return its index.

    A run built across sessions (the full matrix takes longer than one) may meet another
    machine or other service versions: each session records its own, so the report can say
    which cells were measured where."""
    data = run.read_manifest()
    stored = stored_method(data.get("method", {}))
    keys = method.comparable()
    if detail := _changes(stored, keys, keys):
        raise preflight.PreflightError(
            f"{run.path} was measured differently ({detail}): resume with the same settings or "
            "choose a new --out"
        )
    before = manifest.server_settings(data.get("env") or {})
    now = manifest.server_settings(manifest.recorded_env())
    if detail := _changes(before, now, sorted(before.keys() | now.keys())):
        raise preflight.PreflightError(
            f"{run.path} was measured with other settings in the environment ({detail}): "
            "resume with the same ones or choose a new --out"
        )
    here = {"machine": manifest.machine(), "git": manifest.git_info()}
    if (mixed := _mixed_sitting(data, here)) and not allow_mixed:
        raise preflight.PreflightError(
            f"{run.path} was measured {mixed}: its tables would mix sittings. Resume it where "
            "it began (same machine, boot and commit), choose a new --out, or pass "
            "--allow-mixed (the report then marks every table that mixes sessions)"
        )
    sessions = data.setdefault("sessions", [])
    sessions.append(
        {
            **manifest.session(argv, idle=awake),
            **manifest.where(urls.database_url if urls else None, urls.redis_url if urls else None),
            "packages_changed": manifest.changed(data.get("packages") or {}, manifest.packages()),
            "method": method.to_json(),
            "selection": selection,
        }
    )
    write_json(run.manifest, data)
    return len(sessions) - 1
