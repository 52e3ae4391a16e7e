"""Feed lag as Prometheus sees it: what a follower reports through
``libs.platform.metrics.record_feed_progress`` is what ``/metrics`` serves."""

from __future__ import annotations

import datetime as dt
import urllib.request

import pytest
from prometheus_client import REGISTRY

from libs.platform import metrics
from tests.conftest import free_port

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)


def _value(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


def test_follower_behind_the_head_reports_lag_in_events_and_seconds() -> None:
    metrics.record_feed_progress(120, head_position=135, event_time=T0, now=T0 + dt.timedelta(seconds=4.5))
    assert _value("medsettle_feed_ingested_position") == 120
    assert _value("medsettle_feed_lag_events") == 15
    assert _value("medsettle_feed_lag_seconds") == pytest.approx(4.5)


def test_caught_up_follower_reports_no_lag() -> None:
    metrics.record_feed_progress(10, head_position=12, event_time=T0, now=T0 + dt.timedelta(seconds=30))
    metrics.record_feed_progress(12, head_position=12, event_time=None)
    assert _value("medsettle_feed_lag_events") == 0
    assert _value("medsettle_feed_lag_seconds") == 0


def test_head_behind_the_follower_and_clock_skew_never_give_negative_lag() -> None:
    # the head is read before the batch lands, and hosts' clocks differ a little
    metrics.record_feed_progress(50, head_position=48, event_time=T0, now=T0 - dt.timedelta(seconds=1))
    assert _value("medsettle_feed_lag_events") == 0
    assert _value("medsettle_feed_lag_seconds") == 0


def test_naive_event_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        metrics.record_feed_progress(1, event_time=dt.datetime(2026, 3, 1, 8, 0))


def test_feed_lag_is_served_on_the_metrics_port() -> None:
    port = free_port()
    metrics.serve_metrics(port)  # a daemon thread for the rest of the test session
    metrics.record_feed_progress(7, head_position=9, event_time=None)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert "medsettle_feed_lag_events 2.0" in text.splitlines()
    assert "medsettle_feed_ingested_position 7.0" in text.splitlines()
