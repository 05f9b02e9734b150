"""The CPU workload (SPEC §3.14)."""

from __future__ import annotations

from functools import reduce

import pytest

from common.cpu import spin


def _reference(n: int) -> int:
    return reduce(lambda x, i: (x * 31 + i) % 1_000_000_007, range(n), 0)


@pytest.mark.parametrize(("n", "expected"), [(0, 0), (1, 0), (2, 1), (3, 33), (4, 1026)])
def test_small_values(n: int, expected: int) -> None:
    assert spin(n) == expected


@pytest.mark.parametrize("n", [10, 1000, 100_000])
def test_matches_the_formula(n: int) -> None:
    assert spin(n) == _reference(n)


def test_stays_in_the_modulus() -> None:
    assert 0 <= spin(12345) < 1_000_000_007
