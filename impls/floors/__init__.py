"""The floors of every comparison: apps that do as little as a server or a framework allows.

- ``raw_asgi``, ``raw_wsgi``: a bare callable, no framework, so a figure read against it is
  what the framework and the lab's stack cost on that server.
- ``hello_<framework>``: each framework's own hello world, tuned as its docs advise, so a
  figure read against it is what the lab's production stack (middleware, compression,
  settings, pools) costs on top of the framework.

Each answers ``GET /json``, ``GET /plaintext`` and ``GET /health`` (200, for readiness). The
hello worlds also answer ``GET /db``, the database path's floor: the pair's query
(``common.sql.WORLD_BY_ID``) on a pool of the pair's size (``db_pool``), so they need
PostgreSQL (``services = true``); the raw callables need nothing. The harness runs them on the
servers declared in ``[floors.*]`` of ``lab/matrix.toml``, each on the scenarios its
``scenarios`` key names.
"""
