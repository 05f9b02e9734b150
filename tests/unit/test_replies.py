"""common.replies: the shaping both the async service and the sync twin share."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from common import replies
from common.items import CATEGORIES, TaskIn
from common.problems import Problem


def row(i: int, category: str = "books") -> tuple[object, ...]:
    return (i, f"item {i}", category, 1.5, "words", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))


def test_item_shape_and_timestamp() -> None:
    body = json.loads(replies.item_reply(row(3)).body)
    assert body == {
        "id": 3,
        "name": "item 3",
        "category": "books",
        "price": 1.5,
        "description": "words",
        "created_at": "2024-01-02T03:04:05Z",
    }


def test_missing_item_is_404() -> None:
    with pytest.raises(Problem) as info:
        replies.item_reply(None)
    assert info.value.status == 404


def test_page_next_link_only_when_more_rows() -> None:
    full = json.loads(replies.page_reply([row(1), row(2), row(3)], 2, "books").body)
    assert [i["id"] for i in full["items"]] == [1, 2]
    assert full["next"] == "/items?limit=2&after=2&category=books"
    last = json.loads(replies.page_reply([row(5)], 2, None).body)
    assert last["next"] is None


def test_batch_keeps_requested_order_and_drops_missing() -> None:
    body = json.loads(replies.batch_reply([row(1), row(9)], [9, 4, 1]).body)
    assert [i["id"] for i in body["items"]] == [9, 1]


def test_cached_reply_304_keeps_validators() -> None:
    first = replies.cached_item_reply(b'{"id":1}', ttl_s=60, x_cache="MISS", if_none_match=None)
    etag = first.headers["ETag"]
    again = replies.cached_item_reply(
        b'{"id":1}', ttl_s=60, x_cache="HIT", if_none_match=f"W/{etag}"
    )
    assert (again.status, again.body, again.headers["ETag"]) == (304, b"", etag)
    assert again.headers["Cache-Control"] == "public, max-age=60"


def test_aggregate_partial_and_total_failure() -> None:
    ok = json.loads(replies.aggregate_reply([{"i": 0}, "timeout"], 0.0).body)
    assert ok["results"] == [{"i": 0}] and ok["errors"] == [{"i": 1, "error": "timeout"}]
    with pytest.raises(Problem) as timeouts:
        replies.aggregate_reply(["timeout", "timeout"], 0.0)
    assert timeouts.value.status == 504
    with pytest.raises(Problem) as mixed:
        replies.aggregate_reply(["timeout", "status 503"], 0.0)
    assert mixed.value.status == 502
    assert mixed.value.as_dict()["errors"][1] == {"i": 1, "error": "status 503"}


def test_products_negotiation_406_before_io() -> None:
    with pytest.raises(Problem) as info:
        replies.products_media_type("image/png")
    assert info.value.status == 406
    assert replies.products_media_type(None) == "application/json"


def test_task_lifecycle_shapes() -> None:
    accepted = replies.task_accepted_reply("ab" * 16)
    assert accepted.status == 202 and accepted.headers["Location"] == "/tasks/" + "ab" * 16
    state = replies.task_state("ab" * 16, TaskIn(n=5))
    assert json.loads(replies.task_reply(state).body)["status"] == "queued"
    done = json.loads(replies.task_reply({**state, "status": "done", "result": "42"}).body)
    assert done["result"] == {"n": 5, "result": 42}
    with pytest.raises(Problem):
        replies.task_reply({})


def test_health_names_the_failing_part() -> None:
    assert json.loads(replies.health_reply(True, True).body)["status"] == "ok"
    with pytest.raises(Problem) as info:
        replies.health_reply(False, True)
    assert info.value.status == 503
    assert info.value.as_dict()["db"] == "down" and info.value.as_dict()["cache"] == "ok"


def test_categories_are_the_eight() -> None:
    assert len(CATEGORIES) == 8 and list(CATEGORIES) == sorted(CATEGORIES)
