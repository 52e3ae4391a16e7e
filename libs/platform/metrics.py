"""Prometheus metrics (scraped on MEDSETTLE_METRICS_PORT).

Names and labels are what docs/operations.md and k8s/observability/grafana-dashboard.json use;
rename nothing without changing both.
"""

from __future__ import annotations

import datetime as dt

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RPC_DURATION = Histogram(
    "medsettle_rpc_duration_seconds",
    "Server-side latency of each RPC",
    ["service", "method", "code"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SETTLEMENTS = Counter(
    "medsettle_settlements_total",
    "Settlements and cancellations committed",
    ["insured_province", "treatment_province", "kind"],
)
FUND_PAID = Counter(
    "medsettle_fund_paid_fen_total",
    "Fund payments committed, in fen",
    ["insured_province", "treatment_province", "fund"],
)
FEED_POSITION = Gauge("medsettle_feed_ingested_position", "Feed position of the newest ingested event")
FEED_LAG_EVENTS = Gauge("medsettle_feed_lag_events", "Feed events published but not yet ingested")
FEED_LAG_SECONDS = Gauge(
    "medsettle_feed_lag_seconds",
    "Seconds from the commit of the newest ingested feed event to its ingestion (0 when caught up)",
)


def observe_rpc(method: str, code: str, seconds: float) -> None:
    service, _, name = method.lstrip("/").rpartition("/")
    RPC_DURATION.labels(service, name, code).observe(seconds)


def record_feed_progress(
    position: int,
    head_position: int | None = None,
    event_time: dt.datetime | None = None,
    *,
    now: dt.datetime | None = None,
) -> None:
    """A feed follower reports what it has ingested.

    ``position``: feed position of the newest event ingested (committed to the follower's own
    database). ``head_position``: the newest position the feed has published, when the follower
    knows it; lag in events is ``head_position - position``. ``event_time``: commit time of the
    newest ingested event (timezone-aware); lag in seconds is measured from it to ``now``. Pass
    ``event_time=None`` when the feed has gone quiet with nothing pending: the lag is then 0.
    """
    FEED_POSITION.set(position)
    if head_position is not None:
        FEED_LAG_EVENTS.set(max(0, head_position - position))
    if event_time is None:
        FEED_LAG_SECONDS.set(0)
        return
    if event_time.tzinfo is None:
        raise ValueError("event_time must be timezone-aware")
    current = now or dt.datetime.now(dt.UTC)
    FEED_LAG_SECONDS.set(max(0.0, (current - event_time).total_seconds()))


def serve_metrics(port: int) -> None:
    start_http_server(port)
