"""Settings from LAB_* variables, problem bodies, SQL placeholder rewriting, the matrix."""

from __future__ import annotations

import pytest

from common.problems import Problem, method_not_allowed
from common.settings import RateLimit, Settings, SettingsError
from common.sql import ITEMS_PAGE_IN_CATEGORY, placeholder_order, psycopg_style
from lab import matrix


def test_defaults_and_parsing() -> None:
    s = Settings.from_env({"LAB_RATE_LIMIT": "5/2s", "LAB_TRUSTED_PROXIES": "10.0.0.0/8, ::1"})
    assert s.rate_limit == RateLimit(5, 2)
    assert s.trusted_proxies == ("10.0.0.0/8", "::1")
    assert s.cache_ttl_s == 60 and s.upstream_timeout_ms == 1000
    assert s.redis_pool() == {
        "max_connections": 1000,
        "timeout": 1.0,
        "socket_timeout": 0.5,
        "socket_connect_timeout": 0.5,
        "health_check_interval": 0,
    }


@pytest.mark.parametrize(
    "env",
    [
        {"LAB_RATE_LIMIT": "many"},
        {"LAB_CACHE_TTL": "-1"},
        {"LAB_CPU_EXECUTOR": "gpu"},
        {"LAB_LIMITER_FAIL": "maybe"},
        {"LAB_DB_POOL_SIZE": "x"},
        {"LAB_REDIS_POOL_SIZE": "0"},
    ],
)
def test_bad_settings_fail_at_start(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_problem_shape() -> None:
    problem = method_not_allowed(["POST", "GET"])
    assert problem.headers == {"Allow": "GET, POST"}
    assert problem.as_dict() == {
        "type": "urn:lab:problem:method-not-allowed",
        "title": "Method Not Allowed",
        "status": 405,
        "detail": "Allowed methods: GET, POST.",
    }
    assert Problem(503, "x").type == "urn:lab:problem:backend-unavailable"


def test_psycopg_placeholders() -> None:
    assert psycopg_style("SELECT $1, $2") == "SELECT %s, %s"
    assert placeholder_order(ITEMS_PAGE_IN_CATEGORY) == [0, 2, 1]


def test_matrix_declares_thirteen_pairs() -> None:
    ids = [p.id for p in matrix.pairs()]
    assert len(ids) == 13 and len(set(ids)) == 13
    assert "flask-gunicorn-gthread" in ids and "aiohttp-aiohttp" in ids


def test_pair_command_comes_from_the_template() -> None:
    argv = matrix.pair("flask", "gunicorn").argv(host="127.0.0.1", port=9, workers=3, python="py")
    assert argv[:4] == ["py", "-m", "gunicorn", "impls.flask.app:app"]
    assert "--worker-class" in argv and argv[argv.index("--worker-class") + 1] == "sync"
    assert argv[argv.index("--workers") + 1] == "3"
    with pytest.raises(KeyError):
        matrix.pair("flask", "uvicorn")
