"""Requests per connection, read from ``ss``'s per-socket byte counts (bench/fairness.py)."""

from __future__ import annotations

from bench import fairness

SS = """\
0      0      127.0.0.1:41000 127.0.0.1:8000 users:(("wrk",pid=4242,fd=5))
\t cubic rto:204 rtt:0.03/0.01 bytes_sent:9000 bytes_acked:9000 bytes_received:20000 segs_out:90
0      0      127.0.0.1:41002 127.0.0.1:8000 users:(("wrk",pid=4242,fd=6))
\t cubic rto:204 rtt:0.03/0.01 bytes_sent:900 bytes_acked:900 bytes_received:2000 segs_out:9
0      0      127.0.0.1:41004 127.0.0.1:8000 users:(("python",pid=77,fd=9))
\t cubic rto:204 rtt:0.03/0.01 bytes_sent:90 bytes_acked:90 bytes_received:200 segs_out:1
0      0      127.0.0.1:41006 127.0.0.1:8000 users:(("wrk",pid=4242,fd=7))
\t cubic rto:204 rtt:0.03/0.01 bytes_sent:9000 bytes_acked:9000 bytes_received:18000 segs_out:90
"""


def test_only_the_load_tools_sockets_are_counted() -> None:
    assert fairness.parse_ss(SS, "wrk") == [20000, 2000, 18000]
    assert fairness.parse_ss(SS, "python") == [200]
    assert fairness.parse_ss("", "wrk") == []


def test_a_starved_connection_shows_in_the_least_share() -> None:
    shares = fairness.requests_per_connection([20000, 2000, 18000], 200.0, connections=3, at_s=3.5)
    assert shares is not None
    assert (shares["min"], shares["median"], shares["max"]) == (10.0, 90.0, 100.0)
    assert shares["min_share_of_median"] == 0.111
    assert shares["reconnected"] is False
    assert fairness.requests_per_connection([], 200.0, connections=3, at_s=1.0) is None


def test_a_connection_without_a_socket_late_in_the_window_was_served_nothing() -> None:
    shares = fairness.requests_per_connection([2000, 2200], 200.0, connections=3, at_s=4.5)
    assert shares is not None and shares["connections_seen"] == 2
    assert (shares["min"], shares["min_share_of_median"], shares["reconnected"]) == (
        0.0,
        0.0,
        False,
    )


def test_sockets_of_one_response_each_are_a_server_that_closes_connections() -> None:
    shares = fairness.requests_per_connection([200, 200, 0], 200.0, connections=64, at_s=4.5)
    assert shares is not None and shares["reconnected"] is True
    assert shares["connections_seen"] == 3  # no made-up zeros for the sockets not open now
