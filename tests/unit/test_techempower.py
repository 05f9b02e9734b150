"""TechEmpower rules (SPEC §3.1)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from common.techempower import (
    WORLD_ROWS,
    new_numbers,
    queries_param,
    random_ids,
    random_number,
    render_fortunes,
    world_dict,
)

# The canonical TechEmpower fortune table.
FORTUNES = [
    (1, "fortune: No such file or directory"),
    (2, "A computer scientist is someone who fixes things that aren't broken."),
    (3, "After enough decimal places, nobody gives a damn."),
    (4, "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1"),
    (5, "A computer program does what you tell it to do, not what you want it to do."),
    (6, "Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen"),
    (7, "Any program that runs right is obsolete."),
    (8, "A list is only as strong as its weakest link. — Donald Knuth"),
    (9, "Feature: A bug with seniority."),
    (10, "Computers make very fast, very accurate mistakes."),
    (11, '<script>alert("This should not be displayed in a browser alert box.");</script>'),
    (12, "フレームワークのベンチマーク"),
]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, 1),
        ("", 1),
        ("foo", 1),
        ("1.5", 1),
        ("0", 1),
        ("-5", 1),
        ("1", 1),
        ("20", 20),
        (" 20 ", 20),
        ("+7", 7),
        ("500", 500),
        ("501", 500),
        ("1000000", 500),
        ("9" * 5000, 500),
        ("-" + "9" * 5000, 1),
        ("1_0", 1),
        ("٣", 1),  # a non-ASCII digit is not an integer here
        ("0x10", 1),
    ],
)
def test_queries_param(raw: str | None, expected: int) -> None:
    assert queries_param(raw) == expected


def test_random_ids() -> None:
    ids = random_ids(500)
    assert len(ids) == 500
    assert all(isinstance(i, int) and 1 <= i <= 10000 for i in ids)
    assert len(set(ids)) > 1
    assert random_ids(0) == []


def test_random_ids_cover_the_range_ends() -> None:
    ids = set(random_ids(200_000))
    assert {1, 10000} <= ids


def test_random_number() -> None:
    numbers = [random_number() for _ in range(5000)]
    assert all(1 <= n <= 10000 for n in numbers)
    assert len(set(numbers)) > 100


def test_world_dict() -> None:
    assert world_dict((7, 42)) == {"id": 7, "randomNumber": 42}
    assert list(world_dict([1, 2])) == ["id", "randomNumber"]


class _Table(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("td", "th"):
            self._in_cell = True
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells[-1] += data


def test_fortunes_page() -> None:
    html = render_fortunes(FORTUNES).decode("utf-8")
    assert html.startswith(
        "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
        "<tr><th>id</th><th>message</th></tr>"
    )
    assert html.endswith("</table></body></html>")
    assert (
        "<tr><td>11</td><td>&lt;script&gt;alert(&quot;This should not be displayed in a "
        "browser alert box.&quot;);&lt;/script&gt;</td></tr>"
    ) in html
    assert "<script>" not in html
    assert "<tr><td>12</td><td>フレームワークのベンチマーク</td></tr>" in html
    assert "aren&#x27;t broken" in html
    assert "<tr><td>0</td><td>Additional fortune added at request time.</td></tr>" in html


def test_fortunes_sorted_by_message_with_the_request_time_row() -> None:
    parser = _Table()
    parser.feed(render_fortunes(FORTUNES).decode())
    cells = parser.cells[2:]
    ids = [int(i) for i in cells[0::2]]
    # TechEmpower's expected order for the canonical table.
    assert ids == [11, 4, 5, 2, 8, 0, 3, 7, 10, 6, 9, 1, 12]
    messages = cells[1::2]
    assert messages == sorted(messages)
    assert messages[0].startswith('<script>alert("This')  # unescaped by the parser


def test_fortunes_does_not_modify_input_and_accepts_iterators() -> None:
    rows = list(FORTUNES)
    render_fortunes(rows)
    assert rows == FORTUNES
    assert render_fortunes(iter(FORTUNES)) == render_fortunes(FORTUNES)


def test_fortunes_empty_table_has_only_the_added_row() -> None:
    html = render_fortunes([]).decode()
    assert html.count("<tr><td>") == 1


def test_fortunes_escape_ampersands_and_quotes() -> None:
    html = render_fortunes([(5, "a & b \"c\" 'd' <e>")]).decode()
    assert "<td>a &amp; b &quot;c&quot; &#x27;d&#x27; &lt;e&gt;</td>" in html


def test_new_numbers_answer_what_is_stored_when_ids_repeat() -> None:
    worlds = [{"id": i, "randomNumber": 0} for i in (7, 3, 7, 9, 3)]
    stored = new_numbers(worlds)
    assert list(stored) == [3, 7, 9]  # each id once, sorted: one lock order for every batch
    for world in worlds:
        assert world["randomNumber"] == stored[world["id"]]
        assert 1 <= world["randomNumber"] <= WORLD_ROWS
