"""CPUs held out of deep idle for a run: an idle client must not tax the server it waits on.

wrk waits in ``epoll_wait`` between responses. When its CPU has nothing else to do, the
kernel idles it; on a virtual machine whose idle state is a halt (``hlt``, a VM exit), the
response that wakes wrk makes the *server's* ``write()`` pay for bringing the halted vCPU
back: an inter-processor interrupt the hypervisor must deliver, several microseconds of
kernel time on the server's core per wake-up (``perf`` shows them under
``sock_def_readable`` -> ``_raw_spin_unlock_irqrestore``). How often wrk is asleep when a
response comes depends on how fast the server is, so the tax grows as the server slows and
every stack's cost over its hello world looks larger than it is (docs/performance.md, "What a
server charges for the app's own work", has the measurements).

The remedy is the kernel's CPU latency QoS (docs.kernel.org, "PM Quality Of Service
Interface"), the mechanism behind tuned's ``latency-performance`` profile (its
``force_latency``): write a latency bound, in µs, to ``/dev/cpu_dma_latency`` and hold the file
open. With 0, cpuidle only picks states that wake at once (polling), and a waker sees the
idle CPU polling and needs no interrupt. Closing the file (or the process exiting) withdraws
the request, so nothing is left changed on the machine. It needs root;
without it the run measures as before and its manifest says so.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["LATENCY_DEVICE", "cpuidle", "held_awake", "was_held"]

LATENCY_DEVICE = Path("/dev/cpu_dma_latency")
_CPUIDLE = Path("/sys/devices/system/cpu/cpuidle")


def cpuidle(root: Path = _CPUIDLE) -> dict[str, str | None]:
    """The kernel's cpuidle driver and governor (``haltpoll`` on the lab's VMs), or None."""

    def read(*names: str) -> str | None:
        for name in names:
            try:
                return (root / name).read_text().strip()
            except OSError:
                continue
        return None

    return {
        "driver": read("current_driver"),
        "governor": read("current_governor_ro", "current_governor"),
    }


def was_held(manifest: dict[str, Any]) -> bool:
    """Whether a run's manifest says its CPUs were held awake (no run before 2026-12-06
    has the record: those let idle CPUs halt)."""
    return bool((manifest.get("idle") or {}).get("held"))


@contextmanager
def held_awake(wanted: bool, device: Path = LATENCY_DEVICE) -> Iterator[dict[str, Any]]:
    """Hold a 0 µs PM QoS latency request for the ``with`` block when ``wanted``; yields
    what was done, for the manifest (``held`` False with ``why_not`` when it could not be)."""
    record: dict[str, Any] = {
        "requested": wanted,
        "held": False,
        "device": str(device),
        "cpuidle": cpuidle(),
    }
    if not wanted:
        yield record
        return
    try:
        fd = os.open(device, os.O_WRONLY)
    except OSError as exc:
        record["why_not"] = f"{device}: {exc.strerror or exc}"
        yield record
        return
    try:
        os.write(fd, struct.pack("i", 0))  # the device takes a native 32-bit int, in µs
        record.update(held=True, latency_us=0)
        yield record
    finally:
        os.close(fd)  # withdraws the request
