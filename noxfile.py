"""Sessions for the lab. A bare ``nox`` runs lint and tests, never a load test.

nox -s tests          unit, harness and conformance tests (every framework x server pair)
nox -s conformance    only the black-box conformance suite
nox -s lint           ruff (lint + format check) and mypy --strict
nox -s bench          the quick benchmark matrix (`lab bench --quick`), posargs passed on
nox -s reliability    faults under load and hostile clients on every pair (minutes), figures
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


def install(session: nox.Session, *extras: str) -> None:
    """One editable install of the project with the extras a session needs."""
    session.install("-e", f".[{','.join(extras)}]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit, harness and conformance tests against every declared pair."""
    install(session, "all")
    # The reliability suite has its own session (below): minutes of load per pair.
    session.run("pytest", "-m", "not reliability", *(session.posargs or ["tests"]))


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """The black-box conformance suite only (LAB_TEST_PAIRS selects pairs)."""
    install(session, "all")
    session.run("pytest", "tests/conformance", *session.posargs)


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
