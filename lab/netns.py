"""``lab netns up|down|status|exec``: two hosts on one machine (docs/scale-out.md).

``up`` creates two network namespaces joined by a veth pair: ``<name>-srv`` holds the
server side (10.203.0.1/24 by default), ``<name>-cli`` the load generator (10.203.0.2/24).
Each has only its own loopback and the veth: nothing is routed to or from the machine's
network, so traffic stays between the two namespaces.

The server namespace is a host of its own, so PostgreSQL and Redis run inside it: the
machine's services on 127.0.0.1 are not reachable from a new namespace, and putting them on
the namespace's loopback keeps the server side exactly as on a real server machine (app,
database and cache together; only HTTP crosses the link). ``lab netns exec server -- ...``
runs a command there with ``LAB_STATE_DIR`` pointing at a state folder of that namespace,
so its embedded services never mix with the machine's ``.lab/``.

What ``up`` created is written to ``<LAB_STATE_DIR>/netns-<name>.json``; ``down`` deletes
exactly those namespaces (which removes the veth pair inside them) and refuses while a
process still runs in one. Needs root (``ip netns``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from . import services

__all__ = ["Link", "command", "down", "exec_argv", "up"]

ROLES = ("server", "client")


class NetnsError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Link:
    name: str
    server_ns: str
    client_ns: str
    server_if: str
    client_if: str
    server_ip: str
    client_ip: str
    prefixlen: int

    @classmethod
    def plan(cls, name: str, subnet: str) -> Link:
        net = ipaddress.ip_network(subnet, strict=True)
        if net.version != 4 or net.prefixlen > 30:
            raise NetnsError(f"--subnet must be an IPv4 network of at least 4 addresses: {subnet}")
        hosts = list(net.hosts())[:2] if net.prefixlen >= 24 else [net[1], net[2]]
        # Interface names are at most 15 bytes (IFNAMSIZ - 1).
        if len(name) > 11 or not name.replace("-", "").isalnum():
            raise NetnsError(f"--name must be at most 11 letters, digits or '-': {name!r}")
        return cls(
            name=name,
            server_ns=f"{name}-srv",
            client_ns=f"{name}-cli",
            server_if=f"{name}-s",
            client_if=f"{name}-c",
            server_ip=str(hosts[0]),
            client_ip=str(hosts[1]),
            prefixlen=net.prefixlen,
        )

    def namespace(self, role: str) -> str:
        return self.server_ns if role == "server" else self.client_ns


def _state_file(name: str) -> Path:
    return services.state_dir() / f"netns-{name}.json"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    result = subprocess.run([ip, *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def existing_namespaces() -> set[str]:
    out = _ip("netns", "list").stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def load(name: str) -> Link | None:
    path = _state_file(name)
    if not path.exists():
        return None
    return Link(**json.loads(path.read_text()))


def up(name: str, subnet: str) -> Link:
    link = Link.plan(name, subnet)
    known = load(name)
    present = existing_namespaces()
    if known is not None and {known.server_ns, known.client_ns} <= present:
        return known  # already up: idempotent
    clash = {link.server_ns, link.client_ns} & present
    if clash:
        raise NetnsError(
            f"namespace(s) {', '.join(sorted(clash))} exist and were not created by this "
            "lab state: choose another --name (lab netns never adopts or deletes them)"
        )
    state = _state_file(name)
    state.parent.mkdir(parents=True, exist_ok=True)
    created: list[str] = []
    try:
        for ns in (link.server_ns, link.client_ns):
            _ip("netns", "add", ns)
            created.append(ns)
            # Record as we go, so `down` can remove a half-built pair too.
            state.write_text(json.dumps(asdict(link), indent=2) + "\n")
        _ip(
            "link", "add", link.server_if, "netns", link.server_ns, "type", "veth",
            "peer", "name", link.client_if, "netns", link.client_ns,
        )  # fmt: skip
        for ns, ifname, addr in (
            (link.server_ns, link.server_if, link.server_ip),
            (link.client_ns, link.client_if, link.client_ip),
        ):
            _ip("-n", ns, "addr", "add", f"{addr}/{link.prefixlen}", "dev", ifname)
            _ip("-n", ns, "link", "set", ifname, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
    except BaseException:
        for ns in created:
            _ip("netns", "del", ns, check=False)
        state.unlink(missing_ok=True)
        raise
    return link


def down(name: str) -> Link | None:
    link = load(name)
    if link is None:
        return None
    present = existing_namespaces()
    mine = [ns for ns in (link.server_ns, link.client_ns) if ns in present]
    busy = {ns: _ip("netns", "pids", ns, check=False).stdout.split() for ns in mine}
    busy = {ns: pids for ns, pids in busy.items() if pids}
    if busy:
        detail = "; ".join(f"{ns}: pids {' '.join(p)}" for ns, p in busy.items())
        raise NetnsError(f"processes still run in the namespaces (stop them first): {detail}")
    for ns in mine:
        _ip("netns", "del", ns)  # removes the veth end inside it, and so the pair
    _state_file(name).unlink(missing_ok=True)
    return link


def exec_argv(link: Link, role: str, argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``ip netns exec`` for a role, with ``LAB_STATE_DIR`` set to that namespace's own
    state folder (its embedded services are not the machine's)."""
    ns = link.namespace(role)
    env = dict(os.environ)
    env["LAB_STATE_DIR"] = str(services.state_dir() / "netns" / ns)
    ip = shutil.which("ip") or "/usr/sbin/ip"
    return [ip, "netns", "exec", ns, *argv], env


def command(action: str, name: str, subnet: str, role: str | None, argv: Sequence[str]) -> int:
    try:
        if action == "up":
            link = up(name, subnet)
            print(
                f"lab netns: {link.server_ns} {link.server_ip}/{link.prefixlen} <-> "
                f"{link.client_ns} {link.client_ip}/{link.prefixlen}\n"
                f"  server side: lab netns exec server -- lab services up; ... lab db init; "
                f"... lab serve --host {link.server_ip} --port 8000 --framework F --server S\n"
                f"  client side: lab netns exec client -- lab bench "
                f"--target http://{link.server_ip}:8000 --scenario json",
                file=sys.stderr,
            )
            return 0
        if action == "down":
            gone = down(name)
            print(
                f"lab netns: removed {gone.server_ns}, {gone.client_ns}"
                if gone
                else f"lab netns: nothing recorded for {name!r}",
                file=sys.stderr,
            )
            return 0
        link_or_none = load(name)
        if action == "status":
            if link_or_none is None:
                print(f"lab netns: {name!r} is not up", file=sys.stderr)
                return 1
            present = existing_namespaces()
            print(json.dumps({**asdict(link_or_none), "present": sorted(
                ns for ns in (link_or_none.server_ns, link_or_none.client_ns) if ns in present
            )}, indent=2))  # fmt: skip
            return 0
        assert action == "exec"
        if link_or_none is None:
            raise NetnsError(f"{name!r} is not up: run `lab netns up` first")
        if role not in ROLES or not argv:
            raise NetnsError("usage: lab netns exec server|client -- COMMAND ...")
        full, env = exec_argv(link_or_none, role, argv)
        # Replace this process, so signals (Ctrl-C, SIGTERM) reach the command itself.
        os.execve(full[0], full, env)  # noqa: S606 - an argv list, no shell
        raise AssertionError("unreachable")
    except (NetnsError, ValueError, OSError) as exc:
        print(f"lab netns: {exc}", file=sys.stderr)
        return 2
