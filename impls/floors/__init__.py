"""The floors of every comparison: apps that do as little as a server or a framework allows.

- ``raw_asgi``, ``raw_wsgi``: a bare callable, no framework, so a figure read against it is
  what the framework and the lab's stack cost on that server.
- ``hello_<framework>``: each framework's own hello world, tuned as its docs advise, so a
  figure read against it is what the lab's production stack (middleware, compression,
  settings, pools) costs on top of the framework.

Each answers ``GET /json``, ``GET /plaintext`` and ``GET /health`` (200, for readiness), and
``GET /json-work``: the same ``/json`` after :func:`app_work`, a fixed amount of interpreter
work, so that the two cells side by side say what the server charges for a request's own
Python time (docs/performance.md, "What a server charges for the app's work"). The
hello worlds also answer ``GET /db``, the database path's floor: the pair's query
(``common.sql.WORLD_BY_ID``) on the pair's own pool (``open_pool`` of ``common.aio.resources``
and ``common.sync.resources``: size, timeouts and all), so they need
PostgreSQL (``services = true``); the raw callables need nothing. The harness runs them on the
servers declared in ``[floors.*]`` of ``lab/matrix.toml``, each on the scenarios its
``scenarios`` key names.
"""

WORK_LOOPS = 400


def app_work() -> int:
    """The control's fixed work: ``WORK_LOOPS`` turns of a pure-Python loop, no I/O and no
    allocation past the first small ints. About 6 µs in a warm loop on the lab's machines
    (the harness times it in its own process and records it in the manifest), about what
    the lab's stack adds to a hello world's request: a stand-in for the app's own Python."""
    total = 0
    for i in range(WORK_LOOPS):
        total += i
    return total
