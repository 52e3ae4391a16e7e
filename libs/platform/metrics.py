"""Prometheus metrics (scraped on MEDSETTLE_METRICS_PORT)."""

from __future__ import annotations

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
FEED_LAG_EVENTS = Gauge("medsettle_feed_lag_events", "Feed events published but not yet ingested")
FEED_LAG_SECONDS = Gauge("medsettle_feed_lag_seconds", "Age of the newest ingested feed event")


def observe_rpc(method: str, code: str, seconds: float) -> None:
    service, _, name = method.lstrip("/").rpartition("/")
    RPC_DURATION.labels(service, name, code).observe(seconds)


def serve_metrics(port: int) -> None:
    start_http_server(port)
