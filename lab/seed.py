"""``lab db init``: the schema of SPEC §1 and its deterministic seed data.

Every seed value is a pure function of ``(SEED, table, id)``: the bytes come from
``blake2b(f"{SEED}:{table}:{id}:{block}")``, never from :mod:`random`, so the data is the same
on every machine and Python version.

Idempotency (SPEC §1): each table is checked and re-seeded on its own, inside one
transaction, only when its seed rows are not all there.

- ``items``: the count of ids in 1..100000 must be 100000 and the md5 of a sample of whole
  rows (every id with ``id % 97 == 1``, 1031 rows, all columns) must equal the md5 computed
  here. That catches a missing row, a partial load and data from another seed or generator
  version; it does not catch a hand edit of a row outside the sample (nothing in the lab
  edits items). A re-seed deletes and reloads only ids 1..100000: rows created through
  ``POST /items`` (ids above 100000) are never touched, and the identity is moved past every
  existing id so new rows cannot collide with seed rows.
- ``world``: ids 1..10000 all present with ``randomnumber`` in 1..10000. The values
  themselves are not compared: ``/updates`` rewrites them by design (TechEmpower's rule).
- ``fortune``: the 12 canonical rows, compared in full.

Loading uses COPY, then ``VACUUM (FREEZE, ANALYZE)`` so statistics, hint bits and the
visibility map are settled before anything is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import NamedTuple

import asyncpg

from common.items import CATEGORIES
from lab.cache import cache_dir, partial

__all__ = [
    "FORTUNES",
    "ITEM_COUNT",
    "SEED",
    "WORLD_COUNT",
    "command_init",
    "init_db",
    "item_row",
    "world_row",
]

SEED = "pyweb-lab-v1"
ITEM_COUNT = 100_000
WORLD_COUNT = 10_000
ITEMS_SAMPLE_STRIDE = 97  # the checksum covers ids with id % 97 == 1

ItemRow = tuple[int, str, str, Decimal, str, datetime]

# TechEmpower's canonical fortune rows, verbatim (ids 1..12).
FORTUNES: tuple[tuple[int, str], ...] = (
    (1, "fortune: No such file or directory"),
    (2, "A computer scientist is someone who fixes things that aren't broken."),
    (3, "After enough decimal places, nobody gives a damn."),
    (4, "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1"),
    (5, "A computer program does what you tell it to do, not what you want it to do."),
    (6, "Emacs is a nice operating system, but I prefer UNIX. \u2014 Tom Christaensen"),
    (7, "Any program that runs right is obsolete."),
    (8, "A list is only as strong as its weakest link. \u2014 Donald Knuth"),
    (9, "Feature: A bug with seniority."),
    (10, "Computers make very fast, very accurate mistakes."),
    (11, '<script>alert("This should not be displayed in a browser alert box.");</script>'),
    (12, "\u30d5\u30ec\u30fc\u30e0\u30ef\u30fc\u30af\u306e\u30d9\u30f3\u30c1\u30de\u30fc\u30af"),
)

# Fixed word lists: their sizes divide 256, so one hash byte picks a word uniformly. Kept as
# text (noqa SIM905): a 128-line list literal would hide the lists instead of showing them.
_ADJECTIVES = (  # noqa: SIM905
    "Ancient Bold Bright Classic Compact Cozy Crisp Deluxe Durable Elegant Fancy Fresh "
    "Gentle Golden Handy Heavy Light Lucky Modern Noble Polished Quiet Rapid Rustic Sleek "
    "Smart Solid Sturdy Tiny Vintage Vivid Witty"
).split()
_NOUNS = (  # noqa: SIM905
    "bag basket bench blanket book bottle bowl brush candle chair clock compass cup drum "
    "kettle lamp lantern mirror notebook pan pillow plant radio rug scarf shelf speaker "
    "spoon table teapot toolkit watch"
).split()
_WORDS = (  # noqa: SIM905
    "a about after all also an and any are as at be because been best better both but by "
    "can care comes daily day design does each easy even every extra feel fine first fit "
    "for from full gives good great hand has have high home how in into is it its just "
    "keeps kind last life light like long look made make many more most much new nice no "
    "not now of on one only or other our out over part people perfect place quality "
    "ready real right room see set simple size so some soft space still "
    "strong style than that the their them then there these this through time to "
    "together use used very way well when which while with work works year you your"
).split()

_YEAR_START = datetime(2024, 1, 1, tzinfo=UTC)
_YEAR_SECONDS = 366 * 86_400  # 2024 is a leap year
_DESCRIPTION_MIN, _DESCRIPTION_MAX = 120, 400
_LONGEST_WORD = max(len(w) for w in _WORDS)


def _stream(table: str, row_id: int) -> Iterator[int]:
    """The row's bytes: blake2b-512 blocks of ``SEED:table:id:block``, as long as needed."""
    block = 0
    while True:
        yield from hashlib.blake2b(f"{SEED}:{table}:{row_id}:{block}".encode()).digest()
        block += 1


def _take(stream: Iterator[int], n: int) -> int:
    """The next ``n`` bytes of ``stream`` as a big-endian unsigned integer."""
    value = 0
    for _ in range(n):
        value = value << 8 | next(stream)
    return value


def item_row(item_id: int) -> ItemRow:
    """Seed row ``item_id`` of ``items``: ``(id, name, category, price, description,
    created_at)``. Pure and deterministic; price in 1.00..2000.00 with 2 decimals,
    created_at a whole second of 2024 in UTC, description 120..400 characters."""
    stream = _stream("items", item_id)
    category = CATEGORIES[next(stream) % len(CATEGORIES)]
    adjective = _ADJECTIVES[next(stream) % len(_ADJECTIVES)]
    noun = _NOUNS[next(stream) % len(_NOUNS)]
    name = f"{adjective} {noun} {item_id}"
    cents = 100 + _take(stream, 8) % (200_000 - 100 + 1)
    price = Decimal(f"{cents // 100}.{cents % 100:02d}")
    created_at = _YEAR_START + timedelta(seconds=_take(stream, 8) % _YEAR_SECONDS)
    # Words until the text reaches `target`, in sentences of 6..15 words. The last word
    # overshoots by at most a full stop, a space, a word and the final full stop, which the
    # upper bound of `target` leaves room for: 120 <= len(description) <= 400.
    target = _DESCRIPTION_MIN + _take(stream, 2) % (
        _DESCRIPTION_MAX - _LONGEST_WORD - 2 - _DESCRIPTION_MIN + 1
    )
    words: list[str] = []
    length = left = 0
    while length < target:
        word = _WORDS[next(stream) % len(_WORDS)]
        if left == 0:  # a new sentence
            word = word.capitalize()
            left = 6 + next(stream) % 10
            if words:
                words[-1] += "."
                length += 1
        left -= 1
        length += len(word) + (1 if words else 0)
        words.append(word)
    description = " ".join(words) + "."
    return (item_id, name, category, price, description, created_at)


def world_row(world_id: int) -> tuple[int, int]:
    """Seed row ``world_id`` of ``world``: ``(id, randomnumber)`` with randomnumber in
    1..10000."""
    return (world_id, 1 + _take(_stream("world", world_id), 8) % WORLD_COUNT)


def _item_checksum_line(row: ItemRow) -> str:
    """One sampled row as the checksum query renders it (see ``_ITEMS_CHECK``)."""
    item_id, name, category, price, description, created_at = row
    epoch = int((created_at - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    return "|".join((str(item_id), name, category, str(price), description, str(epoch)))


@cache
def _items_expected_md5() -> str:
    sample = range(1, ITEM_COUNT + 1, ITEMS_SAMPLE_STRIDE)
    text = "\n".join(_item_checksum_line(item_row(i)) for i in sample)
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


SCHEMA = f"""
CREATE TABLE IF NOT EXISTS items (
    id int PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY (START WITH {ITEM_COUNT + 1}),
    name text NOT NULL,
    category text NOT NULL,
    price numeric(10,2) NOT NULL,
    description text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS items_category_id_idx ON items (category, id);
CREATE TABLE IF NOT EXISTS world (id int PRIMARY KEY, randomnumber int NOT NULL);
CREATE TABLE IF NOT EXISTS fortune (id int PRIMARY KEY, message text NOT NULL);
"""

_ITEMS_CHECK = f"""
SELECT
  (SELECT count(*) FROM items WHERE id BETWEEN 1 AND {ITEM_COUNT}) AS n,
  (SELECT md5(string_agg(
      concat_ws('|', id, name, category, price, description,
                extract(epoch FROM created_at)::bigint),
      E'\\n' ORDER BY id))
   FROM items
   WHERE id BETWEEN 1 AND {ITEM_COUNT} AND id % {ITEMS_SAMPLE_STRIDE} = 1) AS md5
"""
_WORLD_CHECK = f"""
SELECT count(*) = {WORLD_COUNT} AND coalesce(min(randomnumber) >= 1, false)
       AND coalesce(max(randomnumber) <= {WORLD_COUNT}, false)
FROM world WHERE id BETWEEN 1 AND {WORLD_COUNT}
"""
_FORTUNE_CHECK = (
    f"SELECT id, message FROM fortune WHERE id BETWEEN 1 AND {len(FORTUNES)} ORDER BY id"
)

# One lab-wide advisory lock, so two concurrent `lab db init` do not both load.
_LOCK_KEY = 0x1AB5EED


async def _items_ok(conn: asyncpg.Connection) -> bool:
    row = await conn.fetchrow(_ITEMS_CHECK)
    return row is not None and row["n"] == ITEM_COUNT and row["md5"] == _items_expected_md5()


async def _world_ok(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval(_WORLD_CHECK))


async def _fortune_ok(conn: asyncpg.Connection) -> bool:
    rows = await conn.fetch(_FORTUNE_CHECK)
    return [(r["id"], r["message"]) for r in rows] == list(FORTUNES)


class _Table(NamedTuple):
    name: str
    columns: tuple[str, ...]
    last_id: int  # seed rows are ids 1..last_id
    rows: Callable[[], Iterable[tuple[object, ...]]]
    seeded: Callable[[asyncpg.Connection], Awaitable[bool]]


_TABLES = (
    _Table(
        "items",
        ("id", "name", "category", "price", "description", "created_at"),
        ITEM_COUNT,
        lambda: (item_row(i) for i in range(1, ITEM_COUNT + 1)),
        _items_ok,
    ),
    _Table(
        "world",
        ("id", "randomnumber"),
        WORLD_COUNT,
        lambda: (world_row(i) for i in range(1, WORLD_COUNT + 1)),
        _world_ok,
    ),
    _Table("fortune", ("id", "message"), len(FORTUNES), lambda: FORTUNES, _fortune_ok),
)


def _cache_file(table: _Table) -> Path:
    """Where ``table``'s seed rows are kept as CSV once generated: computing the 100,000 items
    takes about 15 s of CPU, and the tests seed a fresh embedded PostgreSQL a dozen times a
    run. The name holds a digest of this module and of the categories, so any change to the
    generator leaves the old file unused."""
    source = Path(__file__).read_bytes() + repr(CATEGORIES).encode()
    digest = hashlib.sha256(source).hexdigest()[:16]
    return cache_dir() / f"seed-{table.name}-{digest}.csv"


async def _copy_seed_rows(conn: asyncpg.Connection, table: _Table) -> None:
    """COPY ids 1..last_id in: from the cache when it holds them, else generated here and then
    written to the cache (to a temporary file renamed into place, so that concurrent seeds
    never read half a file). The caller checks the rows either way."""
    columns = list(table.columns)
    cached = _cache_file(table)
    if cached.is_file():
        await conn.copy_to_table(table.name, source=cached, columns=columns, format="csv")
        return
    await conn.copy_records_to_table(table.name, records=table.rows(), columns=columns)
    with contextlib.suppress(OSError):  # an unwritable cache only costs the next seed time
        cached.parent.mkdir(parents=True, exist_ok=True)
        written = partial(cached)
        query = (
            f"SELECT {', '.join(columns)} FROM {table.name} WHERE id BETWEEN 1 AND {table.last_id}"
        )
        await conn.copy_from_query(query, output=written, format="csv")
        written.replace(cached)


async def _reseed(conn: asyncpg.Connection, table: _Table) -> None:
    """Replace ids 1..last_id of ``table`` by its seed rows with COPY, in one transaction;
    rows outside that range are left alone."""
    async with conn.transaction():
        await conn.execute(f"DELETE FROM {table.name} WHERE id BETWEEN 1 AND {table.last_id}")
        await _copy_seed_rows(conn, table)
        if not await table.seeded(conn):
            # A cache file that does not hold this generator's rows (edited, truncated):
            # generate them instead, and let the next seed write a good one.
            _cache_file(table).unlink(missing_ok=True)
            await conn.execute(f"DELETE FROM {table.name} WHERE id BETWEEN 1 AND {table.last_id}")
            await conn.copy_records_to_table(
                table.name, records=table.rows(), columns=list(table.columns)
            )
        if table.name == "items":
            # New rows must get ids above every existing one, never a seed id.
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('items', 'id'), "
                f"GREATEST((SELECT max(id) FROM items), {ITEM_COUNT}))"
            )
    await conn.execute(f"VACUUM (FREEZE, ANALYZE) {table.name}")


async def _init(database_url: str) -> list[str]:
    """Seed what is missing; returns one line per table saying what was done."""
    report: list[str] = []
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"SELECT pg_advisory_lock({_LOCK_KEY})")
        await conn.execute(SCHEMA)
        for table in _TABLES:
            started = time.perf_counter()
            if await table.seeded(conn):
                report.append(f"{table.name}: seed rows present")
                continue
            await _reseed(conn, table)
            elapsed = time.perf_counter() - started
            report.append(f"{table.name}: seeded {table.last_id} rows in {elapsed:.2f} s")
    finally:
        await conn.close()
    return report


def init_db(database_url: str) -> None:
    """Create the schema and seed it (SPEC §1); idempotent and fast when already seeded.

    Call from synchronous code (it runs its own event loop)."""
    asyncio.run(_init(database_url))


def command_init() -> int:
    """``lab db init``: seed the database that ``lab services`` resolves."""
    from . import services

    try:
        url = services.current_urls().database_url
    except services.ServicesError as exc:
        print(f"lab db init: {exc}", file=sys.stderr)
        return 1
    print(f"lab db init: {url}")
    started = time.perf_counter()
    try:
        report = asyncio.run(_init(url))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"lab db init: failed: {exc}", file=sys.stderr)
        return 1
    for line in report:
        print(f"  {line}")
    print(f"lab db init: done in {time.perf_counter() - started:.2f} s")
    return 0
