"""Typed access to ``matrix.toml``: the frameworks, the server registry and their pairs.

This is the one list the conformance suite and the harness share: adding a framework or a
server there adds its pairs everywhere.
"""

from __future__ import annotations

import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["REPO_ROOT", "Framework", "Pair", "Server", "framework", "frameworks", "pairs", "server"]

REPO_ROOT = Path(__file__).resolve().parent.parent
MATRIX_FILE = Path(__file__).with_name("matrix.toml")


@dataclass(frozen=True, slots=True)
class Framework:
    name: str
    kind: str  # asgi | wsgi | aiohttp
    app: str
    servers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    doc: str
    command: str
    env: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, dict[str, str]] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)  # template values an experiment may change


@dataclass(frozen=True, slots=True)
class Pair:
    framework: Framework
    server: Server

    @property
    def id(self) -> str:
        return f"{self.framework.name}-{self.server.name}"

    def argv(
        self, *, host: str, port: int | str, workers: int, python: str | None = None
    ) -> list[str]:
        """The server's command line for this pair, from the registry's template (``port``
        may be ``lab.scaleout``'s ``{port}`` placeholder, filled per instance)."""
        values = {
            "python": python or sys.executable,
            "app": self.framework.app,
            "host": host,
            "port": str(port),
            "workers": str(workers),
            "kind_flags": "",
            **self.server.vars,
            **self.server.kinds.get(self.framework.kind, {}),
        }
        return shlex.split(self.server.command.format(**values))

    @property
    def env(self) -> dict[str, str]:
        return dict(self.server.env)


@cache
def _load() -> dict[str, Any]:
    with MATRIX_FILE.open("rb") as fh:
        return tomllib.load(fh)


@cache
def frameworks() -> tuple[Framework, ...]:
    return tuple(
        Framework(name, spec["kind"], spec["app"], tuple(spec["servers"]))
        for name, spec in _load()["frameworks"].items()
    )


@cache
def servers() -> tuple[Server, ...]:
    return tuple(
        Server(
            name,
            spec.get("doc", ""),
            spec["command"],
            dict(spec.get("env", {})),
            {k: dict(v) for k, v in spec.get("kinds", {}).items()},
            {k: str(v) for k, v in spec.get("vars", {}).items()},
        )
        for name, spec in _load()["servers"].items()
    )


def framework(name: str) -> Framework:
    for fw in frameworks():
        if fw.name == name:
            return fw
    raise KeyError(f"unknown framework {name!r}; known: {', '.join(f.name for f in frameworks())}")


def server(name: str) -> Server:
    for srv in servers():
        if srv.name == name:
            return srv
    raise KeyError(f"unknown server {name!r}; known: {', '.join(s.name for s in servers())}")


def pairs(frameworks_: tuple[str, ...] = (), servers_: tuple[str, ...] = ()) -> list[Pair]:
    """Every declared pair, optionally filtered by framework and server names."""
    return [
        Pair(fw, server(name))
        for fw in frameworks()
        if not frameworks_ or fw.name in frameworks_
        for name in fw.servers
        if not servers_ or name in servers_
    ]


def pair(framework_name: str, server_name: str) -> Pair:
    fw = framework(framework_name)
    if server_name not in fw.servers:
        raise KeyError(
            f"{framework_name} does not run on {server_name}; its servers: {', '.join(fw.servers)}"
        )
    return Pair(fw, server(server_name))
