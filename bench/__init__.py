"""The benchmark harness behind ``lab bench`` and ``lab report`` (docs/results-schema.md).

- ``method``: how a run measures (``[bench]`` of lab/matrix.toml + options)
- ``targets``: the matrix's pairs and the floors (``[floors.*]``), as things to start
- ``plan``: cells, server starts, rounds (repeats interleaved across targets)
- ``load`` + ``lua/lab.lua``: wrk, whose ``done()`` writes JSON
- ``checks``: the single request checked before and after each cell
- ``monitor``: CPU time and peak RSS of the server's process tree
- ``stats``: medians, spread, the failed/noisy/censored rules, ranks, floor ratios
- ``results``, ``manifest``: the run folder, atomic writes, resume
- ``runner``: runs a plan; ``preflight``, ``ui``, ``report``, ``cli``: the command

Scenarios themselves are declared in lab/matrix.toml and loaded by ``lab.scenarios`` (shared
with the conformance suite).
"""
