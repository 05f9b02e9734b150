"""The seed data of SPEC §1: pure, deterministic rows, and an idempotent ``lab db init``."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from common.items import CATEGORIES
from lab import seed
from lab.matrix import REPO_ROOT
from lab.services import EmbeddedPostgres, probe_postgres

# Regression pins: computed once from the generator. A change here changes every machine's
# data, so it must be deliberate (and bump seed.SEED).
PINNED_1 = (
    1,
    "Deluxe rug 1",
    "toys",
    Decimal("1556.63"),
    "Not full each more some best long while you keeps have. Which still works full look "
    "because have first well to as last when its while. Because ready to place now more set "
    "about while for together. Can each see keeps extra your only ready these. More high does.",
    datetime(2024, 4, 25, 3, 40, 30, tzinfo=UTC),
)
PINNED_100000 = (
    100000,
    "Ancient scarf 100000",
    "books",
    Decimal("778.42"),
    "Made by look long which home your every new care comes look simple. Of hand hand made "
    "any no other. See year set works some an other.",
    datetime(2024, 4, 25, 1, 30, tzinfo=UTC),
)
PINNED_SAMPLE_MD5 = "6d164fa66d9ea6c620d1deda76a231b3"  # the 1031 rows the checksum samples


def test_item_row_is_pinned() -> None:
    assert seed.item_row(1) == PINNED_1
    assert seed.item_row(100000) == PINNED_100000
    assert seed._items_expected_md5() == PINNED_SAMPLE_MD5


def test_world_row_is_pinned() -> None:
    assert seed.world_row(1) == (1, 739)
    assert seed.world_row(10000) == (10000, 6816)


def test_rows_do_not_depend_on_the_interpreter_hash_seed() -> None:
    code = "from lab import seed; print(repr([seed.item_row(i) for i in (7, 77777)]))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("0", "12345")
    }
    assert len(outputs) == 1


def test_item_rows_are_in_range() -> None:
    word = {w.lower() for w in seed._WORDS}
    seen_categories = set()
    for item_id in range(1, seed.ITEM_COUNT + 1, 11):
        row = seed.item_row(item_id)
        assert row == seed.item_row(item_id)  # pure
        row_id, name, category, price, description, created_at = row
        assert row_id == item_id
        assert re.fullmatch(rf"[A-Z][a-z]+ [a-z]+ {item_id}", name)
        assert category in CATEGORIES
        seen_categories.add(category)
        assert Decimal("1.00") <= price <= Decimal("2000.00")
        assert price.as_tuple().exponent == -2
        assert 120 <= len(description) <= 400
        assert description[0].isupper()
        assert description.endswith(".")
        assert {w.strip(".").lower() for w in description.split()} <= word
        assert created_at.tzinfo is UTC
        assert created_at.year == 2024
        assert created_at.microsecond == 0
    assert seen_categories == set(CATEGORIES)


def test_world_rows_are_in_range() -> None:
    numbers = [seed.world_row(i)[1] for i in range(1, seed.WORLD_COUNT + 1)]
    assert all(1 <= n <= 10_000 for n in numbers)
    assert len(set(numbers)) > 5000  # spread, not constant


def test_fortunes_are_techempowers() -> None:
    assert [i for i, _ in seed.FORTUNES] == list(range(1, 13))
    messages = dict(seed.FORTUNES)
    assert messages[1] == "fortune: No such file or directory"
    assert messages[11] == (
        '<script>alert("This should not be displayed in a browser alert box.");</script>'
    )
    assert messages[12] == "フレームワークのベンチマーク"
    assert messages[8] == "A list is only as strong as its weakest link. — Donald Knuth"


# --------------------------------------------------------------------------- database


def _run(url: str, sql: str, *args: Any, fetch: str = "fetchval") -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await getattr(conn, fetch)(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture
def admin_url() -> Iterator[str]:
    """The machine's PostgreSQL (``LAB_TEST_DATABASE_URL``, default 127.0.0.1:5432); when it
    is not there, a private embedded one."""
    url = os.environ.get("LAB_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    if probe_postgres(url) is None:
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix="lab-test-"))
    folder.chmod(0o755)  # as root, PostgreSQL runs as nobody, who must enter it
    server = EmbeddedPostgres(folder / "pg")
    try:
        server.start()
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def scratch_url(admin_url: str) -> Iterator[str]:
    """A throwaway database, dropped afterwards."""
    name = f"lab_seed_test_{uuid.uuid4().hex[:12]}"
    _run(admin_url, f'CREATE DATABASE "{name}"', fetch="execute")
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        _run(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', fetch="execute")


INSERT = (
    "INSERT INTO items (name, category, price, description, created_at) "
    "VALUES ('posted', 'toys', 9.99, '', now()) RETURNING id"
)
VERSIONS = "SELECT string_agg(xmin::text, ',' ORDER BY id) FROM items WHERE id IN (1, 99999)"


@pytest.mark.services
def test_init_db_seeds_once_and_keeps_posted_rows(scratch_url: str) -> None:
    started = time.perf_counter()
    seed.init_db(scratch_url)
    first = time.perf_counter() - started

    assert _run(scratch_url, "SELECT count(*) FROM items") == 100_000
    assert _run(scratch_url, "SELECT count(*) FROM world") == 10_000
    fortunes = _run(scratch_url, "SELECT id, message FROM fortune ORDER BY id", fetch="fetch")
    assert [tuple(r) for r in fortunes] == list(seed.FORTUNES)
    stored = _run(scratch_url, "SELECT * FROM items WHERE id = 54321", fetch="fetchrow")
    assert tuple(stored) == seed.item_row(54321)
    assert _run(scratch_url, "SELECT randomnumber FROM world WHERE id = 1") == 739

    # Already seeded: fast, and nothing rewritten.
    versions = _run(scratch_url, VERSIONS)
    started = time.perf_counter()
    seed.init_db(scratch_url)
    repeat = time.perf_counter() - started
    assert repeat < max(first / 2, 1.0)
    assert _run(scratch_url, VERSIONS) == versions

    # A POSTed row gets an id above the seed range and survives a re-seed.
    posted = _run(scratch_url, INSERT)
    assert posted > 100_000
    _run(scratch_url, "DELETE FROM items WHERE id = 5", fetch="execute")  # damage the seed
    _run(scratch_url, "UPDATE world SET randomnumber = 1 WHERE id = 2", fetch="execute")
    seed.init_db(scratch_url)
    assert _run(scratch_url, "SELECT count(*) FROM items WHERE id <= 100000") == 100_000
    assert _run(scratch_url, "SELECT name FROM items WHERE id = $1", posted) == "posted"
    assert _run(scratch_url, INSERT) > posted  # the identity moved past every row
    # /updates rewrites world's values by design: they are not re-seeded.
    assert _run(scratch_url, "SELECT randomnumber FROM world WHERE id = 2") == 1


@pytest.mark.services
def test_init_db_reseeds_a_changed_sample_row(scratch_url: str) -> None:
    seed.init_db(scratch_url)
    _run(scratch_url, "UPDATE items SET name = 'edited' WHERE id = 98", fetch="execute")
    seed.init_db(scratch_url)
    assert _run(scratch_url, "SELECT name FROM items WHERE id = 98") == seed.item_row(98)[1]


FINGERPRINT = (
    "SELECT md5(string_agg(concat_ws('|', id, name, category, price, description, created_at),"
    " E'\\n' ORDER BY id)) FROM items WHERE id <= 100000"
)


@pytest.mark.services
def test_a_reseed_copies_the_cached_rows_without_generating_them(
    scratch_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first seed writes the generated rows to the cache; a later one loads them from
    there, and the table holds exactly the rows generating them gives."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    seed.init_db(scratch_url)
    cached = sorted(p.name for p in (tmp_path / "pyweb-lab").iterdir())
    assert [name.split("-")[1] for name in cached] == ["fortune", "items", "world"]
    generated = _run(scratch_url, FINGERPRINT)

    _run(scratch_url, "DELETE FROM items WHERE id BETWEEN 10 AND 20", fetch="execute")

    def no_generating(item_id: int) -> seed.ItemRow:
        raise AssertionError("item rows generated although the cache holds them")

    monkeypatch.setattr(seed, "item_row", no_generating)
    seed.init_db(scratch_url)
    assert _run(scratch_url, FINGERPRINT) == generated


@pytest.mark.services
def test_a_cache_file_with_other_rows_is_not_trusted(
    scratch_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache file whose rows are not the generator's (edited by hand, from another
    version) is dropped and the rows are generated instead."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    seed.init_db(scratch_url)
    generated = _run(scratch_url, FINGERPRINT)
    items = next((tmp_path / "pyweb-lab").glob("seed-items-*.csv"))
    items.write_text(items.read_text().replace("Heavy", "Light"))

    _run(scratch_url, "DELETE FROM items WHERE id = 1", fetch="execute")
    seed.init_db(scratch_url)
    assert _run(scratch_url, FINGERPRINT) == generated
    assert not items.exists()
