"""The ``lab`` command (SPEC §5). Each sub-command lives in its own module; this file only
declares the command line, so ``lab --help`` is the whole surface in one place."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import matrix


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description="The Python web-API performance lab.")
    sub = parser.add_subparsers(dest="command", required=True)

    services = sub.add_parser("services", help="start, stop or show PostgreSQL and Redis")
    services.add_argument("action", choices=["up", "down", "status"])

    db = sub.add_parser("db", help="database schema and seed data")
    db.add_argument("action", choices=["init"])

    serve = sub.add_parser("serve", help="run one framework x server pair in the foreground")
    serve.add_argument("--framework", required=True, choices=[f.name for f in matrix.frameworks()])
    serve.add_argument("--server", required=True, choices=[s.name for s in matrix.servers()])
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--instances",
        type=int,
        default=0,
        help="run N copies of the pair, each on its own port, behind nginx on --port "
        "(docs/scale-out.md); 0 (default): the pair alone on --port",
    )

    upstream = sub.add_parser("upstream", help="run the upstream service of SPEC §3.12")
    upstream.add_argument("--host", default="127.0.0.1")
    upstream.add_argument("--port", type=int, default=8081)
    upstream.add_argument(
        "--fail-every", type=int, default=0, help="answer 503 to every K-th call (fault tests)"
    )

    netns = sub.add_parser(
        "netns",
        help="two hosts on one machine: server and client network namespaces (root)",
        description="up: create <name>-srv and <name>-cli joined by a veth pair; exec server|"
        "client -- CMD: run CMD in one (LAB_STATE_DIR of its own); down: delete what up made. "
        "See docs/scale-out.md.",
    )
    netns_sub = netns.add_subparsers(dest="action", required=True)
    for action in ("up", "down", "status", "exec"):
        act = netns_sub.add_parser(action)
        act.add_argument("--name", default="lab", help="namespace name prefix (default lab)")
        if action == "up":
            act.add_argument("--subnet", default="10.203.0.0/24")
        if action == "exec":
            act.add_argument("role", choices=["server", "client"])
            act.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ...")

    bench = sub.add_parser("bench", help="run the benchmark matrix")
    bench.add_argument("--framework", action="append", default=[])
    bench.add_argument("--server", action="append", default=[])
    bench.add_argument("--scenario", action="append", default=[])
    bench.add_argument("--quick", action="store_true")
    bench.add_argument(
        "--reference",
        action="store_true",
        help="the published reference in one sitting: saturation and fixed-rate cells in "
        "interleaved rounds, then instruction counts, then the report (matrix.toml "
        "[bench.reference]; about 70 minutes on 2 cores, --list shows the plan)",
    )
    bench.add_argument(
        "--experiments",
        nargs="*",
        metavar="NAME",
        help="run the technique experiments (all, or those named) instead of the matrix",
    )
    bench.add_argument("--repeat", type=int)
    bench.add_argument("--duration", type=float)
    bench.add_argument(
        "--out",
        help="run folder (default results/<run-id>); an existing one "
        "is resumed: finished cells are kept",
    )
    bench.add_argument(
        "--concurrency",
        type=int,
        action="append",
        default=[],
        help="connections (repeatable); default from matrix.toml's [bench]",
    )
    bench.add_argument(
        "--rate",
        action="append",
        default=[],
        metavar="RATE",
        help="offer RATE to each cell with the fixed-rate generator, timing each request from "
        "its intended send (repeatable): N requests/s, P%% of each target's capacity (measured "
        "just before), or 'declared' (each scenario's rates in matrix.toml); default: wrk's "
        "closed loop",
    )
    bench.add_argument("--warmup", type=float, help="warm-up seconds before each cell")
    bench.add_argument("--workers", type=int, help="server workers (default 1: one core)")
    bench.add_argument(
        "--instances",
        type=int,
        help="measure through nginx in front of N instances of each target "
        "(docs/scale-out.md); default: the server alone, no proxy",
    )
    bench.add_argument(
        "--no-floors",
        action="store_true",
        help="skip the floors (raw ASGI/WSGI apps, framework hello worlds)",
    )
    bench.add_argument("--no-pin", action="store_true", help="do not pin server and wrk to CPUs")
    bench.add_argument(
        "--allow-idle",
        action="store_true",
        help="let idle CPUs halt during the run (runs before 2026-12-06 did; bench/idle.py)",
    )
    bench.add_argument("--wrk", help="the load tool's binary (default $LAB_WRK or wrk on PATH)")
    bench.add_argument(
        "--target",
        metavar="URL",
        help="load a server that is already running instead of the matrix",
    )
    bench.add_argument("--target-name", help="the name --target's results go under")
    bench.add_argument(
        "--allow-mixed",
        action="store_true",
        help="resume a run begun on another machine, boot or commit (its tables then mix "
        "sittings, and say so)",
    )
    bench.add_argument("--list", action="store_true", help="print the planned cells and exit")
    bench.add_argument("--strict", action="store_true", help="exit 1 when a cell failed or errored")

    memory = sub.add_parser(
        "memory", help="server RSS while streaming 1,000 vs 100,000 items (issue 8's goal)"
    )
    memory.add_argument("--framework", action="append", default=[])
    memory.add_argument("--server", action="append", default=[])
    memory.add_argument("--format", action="append", default=[], help="ndjson, json or csv")
    memory.add_argument("--rounds", type=int, default=3, help="responses per phase")
    memory.add_argument("--out", help="folder for memory.json and memory.md")

    instructions = sub.add_parser(
        "instructions",
        help="CPU instructions per request of each pair and its floors, under callgrind",
    )
    instructions.add_argument("--framework", action="append", default=[])
    instructions.add_argument("--server", action="append", default=[])
    instructions.add_argument(
        "--scenario", action="append", default=[], help="default: json and db"
    )
    instructions.add_argument("--requests", type=int, default=500, help="counted requests")
    instructions.add_argument("--out", help="folder for instructions.json and .md")

    report = sub.add_parser("report", help="tables, plots and the HTML report from results")
    report.add_argument("dir")
    techniques = sub.add_parser(
        "techniques",
        help="fill docs/techniques/*.md and docs/claims.md from an experiments run",
    )
    techniques.add_argument("dir", help="a run folder made by `lab bench --experiments`")

    compare = sub.add_parser(
        "compare",
        help="regression report between two runs; exit 1 when a threshold is crossed",
    )
    compare.add_argument("old", help="the reference run's folder")
    compare.add_argument("new", help="the run to judge")
    compare.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="METRIC:±N%",
        help="e.g. rps:-5%% (requests/s fell more than 5%%) or p99:+10%%; repeatable; "
        "metrics: rps, p50, p90, p99, p99_9, cpu, rss",
    )
    compare.add_argument("--out", help="also write the markdown report to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "services":
        from . import services

        return services.command(args.action)
    if args.command == "db":
        from . import seed

        return seed.command_init()
    if args.command == "serve":
        from . import serve

        return serve.command(
            args.framework,
            args.server,
            host=args.host,
            port=args.port,
            workers=args.workers,
            instances=args.instances,
        )
    if args.command == "netns":
        from . import netns

        cmd = getattr(args, "cmd", [])
        cmd = cmd[1:] if cmd[:1] == ["--"] else cmd
        return netns.command(
            args.action, args.name, getattr(args, "subnet", ""), getattr(args, "role", None), cmd
        )
    if args.command == "upstream":
        from . import upstream

        return upstream.command(args.host, args.port, fail_every=args.fail_every)
    if args.command in {"memory", "instructions"}:  # one-off measurements beside lab bench
        from bench import instructions, memory, preflight

        measure = memory.command if args.command == "memory" else instructions.command
        try:
            return measure(args)
        except preflight.PreflightError as exc:
            print(f"lab {args.command}: {exc}", file=sys.stderr)
            return 2
    if args.command in {"bench", "report", "compare", "techniques"}:
        from bench import cli as bench_cli

        return int(bench_cli.command(args))
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
