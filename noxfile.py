"""Sessions for the lab. A bare ``nox`` runs lint and tests, never a load test.

nox -s tests          unit, harness and conformance tests (every framework x server pair), parallel
nox -s conformance    only the black-box conformance suite, parallel
nox -s lint           ruff (lint + format check) and mypy --strict
nox -s bench          the quick benchmark matrix (`lab bench --quick`), posargs passed on
nox -s reliability    faults under load and hostile clients on every pair (minutes), figures
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
DEBIAN_PACKAGES = Path(__file__).parent / "scripts" / "debian-packages"
PACKAGES = ("common", "lab", "bench", "impls", "tests")  # the project's own, compiled at install


def install(session: nox.Session, *extras: str) -> None:
    """One editable install of the project with the extras a session needs, compiled to
    bytecode: the tests and the harness start servers hundreds of times, and where
    PYTHONDONTWRITEBYTECODE is set (CI's machines set it) every start would otherwise compile
    the frameworks and the lab from source again (3-6 s of CPU each instead of 1-2)."""
    session.install("-e", f".[{','.join(extras)}]", env={"UV_COMPILE_BYTECODE": "1"})
    session.run("python", "-m", "compileall", "-q", *PACKAGES, silent=True)


def require(session: nox.Session, *packages: str) -> None:
    """Stop at the start, with one message, when a Debian tool the session calls is missing
    (``scripts/setup`` installs them all): not with dozens of failing tests later."""
    provides = {}
    for line in DEBIAN_PACKAGES.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            package, path = line.split()[:2]
            provides[package] = path
    wanted = packages or tuple(provides)
    missing = [
        p
        for p in wanted
        if not os.access(provides[p], os.X_OK) and not shutil.which(Path(provides[p]).name)
    ]
    if missing:
        session.error(
            f"missing Debian packages: {' '.join(missing)}. Run `bash scripts/setup` "
            f"(or: apt-get install -y {' '.join(missing)})"
        )


def parallel() -> list[str]:
    """pytest-xdist options: the servers under test often wait (on I/O, on timeouts the tests
    provoke), so two cores keep four workers busy; ``loadgroup`` gives each worker whole pairs
    (tests/support/by_pair.py), so a pair's servers start once. ``LAB_TEST_WORKERS`` sets the
    count (0: no workers, one process)."""
    return ["-n", os.environ.get("LAB_TEST_WORKERS", "4"), "--dist", "loadgroup"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit, harness and conformance tests against every declared pair, in parallel."""
    require(session)
    install(session, "all")
    # The reliability suite has its own session (below): minutes of load per pair.
    session.run("pytest", "-m", "not reliability", *parallel(), *(session.posargs or ["tests"]))


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """The black-box conformance suite only (LAB_TEST_PAIRS selects pairs), in parallel."""
    require(session, "nginx-light")
    install(session, "all")
    session.run("pytest", *parallel(), "tests/conformance", *session.posargs)


@nox.session(python=PYTHON)
def reliability(session: nox.Session) -> None:
    """Faults under load and hostile clients on every pair; figures to .lab/reliability/."""
    install(session, "all")
    session.run("pytest", "-m", "reliability", "tests/reliability", *session.posargs)
    session.run("python", "-m", "tests.reliability.figures")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, mypy --strict on common/, bench/ and lab/."""
    install(session, "all")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The quick benchmark matrix (minutes); pass `-- --help` for the harness's options."""
    require(session, "wrk")
    install(session, "all")
    # `lab services status` exits 0 when both services are usable already (configured or left
    # up by the user); then they are the user's and stay up. Otherwise this session starts
    # embedded ones and stops them when it ends (`down` never touches configured servers).
    lab = str(Path(session.bin) / "lab")
    already_up = subprocess.run([lab, "services", "status"], capture_output=True).returncode == 0
    session.run("lab", "services", "up")
    try:
        session.run("lab", "db", "init")
        session.run("lab", "bench", *(session.posargs or ["--quick"]))
    finally:
        if not already_up:
            session.run("lab", "services", "down")
