"""Prometheus metrics: what the line counts, and GET /metrics for whoever holds METRICS_TOKEN.

With METRICS_TOKEN unset the line keeps no metrics at all (`Metrics`, whose methods do nothing)
and /metrics is 404. With it set, `PrometheusMetrics` counts on a registry of the app's own, so
two apps in one process (tests) never share a count.

Under gunicorn's several workers each worker counts in files of its own in
PROMETHEUS_MULTIPROC_DIR (set by gunicorn_config.py before any worker imports
prometheus_client), and a scrape, whichever worker answers it, sums them all. The live callers
gauge is read from the database at scrape time instead, so it is the same whichever worker or
instance answers.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.exc import SQLAlchemyError

from ivr.store import Outcome, Store

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

# Twilio gives up on a webhook after 15 s; the buckets end there.
WEBHOOK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
# A provider request is cut off after TWILIO_TIMEOUT_SECONDS, at most 14 s.
PROVIDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
# The result label of ivr_provider_requests_total.
OK, ERROR, TIMEOUT, REFUSED = "ok", "error", "timeout", "refused"


class Metrics:
    """Metrics switched off: every method does nothing."""

    def call(self, outcome: Outcome, room: str | None) -> None:
        """Count a call log outcome the line has just recorded."""

    def webhook(self, path: str, seconds: float) -> None:
        """Time one answer to a Twilio webhook, by route."""

    def provider_request(self, operation: str, result: str, seconds: float) -> None:
        """Count and time one Twilio REST request."""

    def code_sent(self, channel: str, purpose: str) -> None:
        """Count a code the provider accepted to send."""

    def lockout(self, kind: str) -> None:
        """Count a number newly locked out (kind "line" or "sign-in")."""


NO_METRICS = Metrics()


class _Children:
    """A metric's children by their label values, kept: `metric.labels(...)` checks and
    converts its arguments and takes a lock on every use (a few microseconds, nine times a
    call), to return the child it made the first time for the same values. (The line never
    removes a child, so the one kept is the one `labels` would return.)"""

    def __init__(self, metric: Counter | Histogram) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str):
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class PrometheusMetrics(Metrics):
    """The line's counters and histograms, and how to read them all."""

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry()
        self._store = store
        self._calls = Counter(
            "ivr_calls_total",
            "Call log outcomes, counted when the line records them.",
            ["outcome", "room"],
            registry=self.registry,
        )
        self._webhooks = Histogram(
            "ivr_webhook_seconds",
            "Time to answer a Twilio webhook, signature check included.",
            ["path"],
            buckets=WEBHOOK_BUCKETS,
            registry=self.registry,
        )
        self._provider_requests = Counter(
            "ivr_provider_requests_total",
            "Twilio REST requests by operation and result (ok, error, timeout, refused).",
            ["operation", "result"],
            registry=self.registry,
        )
        self._provider_seconds = Histogram(
            "ivr_provider_seconds",
            "Time a Twilio REST request took, failures included.",
            ["operation"],
            buckets=PROVIDER_BUCKETS,
            registry=self.registry,
        )
        self._codes_sent = Counter(
            "ivr_codes_sent_total",
            "Codes the provider accepted to send.",
            ["channel", "purpose"],
            registry=self.registry,
        )
        self._lockouts = Counter(
            "ivr_lockouts_total",
            "Numbers locked out after too many wrong codes.",
            ["kind"],
            registry=self.registry,
        )
        self.registry.register(LiveCallers(store))
        self._call_count = _Children(self._calls)
        self._webhook_time = _Children(self._webhooks)
        self._provider_count = _Children(self._provider_requests)
        self._provider_time = _Children(self._provider_seconds)
        self._code_count = _Children(self._codes_sent)

    def call(self, outcome: Outcome, room: str | None) -> None:
        self._call_count(str(outcome), room or "").inc()

    def webhook(self, path: str, seconds: float) -> None:
        self._webhook_time(path).observe(seconds)

    def provider_request(self, operation: str, result: str, seconds: float) -> None:
        self._provider_count(operation, result).inc()
        self._provider_time(operation).observe(seconds)

    def code_sent(self, channel: str, purpose: str) -> None:
        self._code_count(channel, purpose).inc()

    def lockout(self, kind: str) -> None:
        self._lockouts.labels(kind).inc()

    def exposition_registry(self) -> CollectorRegistry:
        """Return the registry a scrape reads: every worker's files, or this process's counts."""
        if not multiprocess():
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(LiveCallers(self._store))
        return registry


class LiveCallers:
    """ivr_live_callers: the conference members table at scrape time, so every worker agrees."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            counts = self._store.live_callers()
        except SQLAlchemyError as error:
            # The counters are still worth a scrape; the gauge's absence says the database is out.
            log.warning("metrics: could not count live callers: %s", type(error).__name__)
            return
        family = GaugeMetricFamily(
            "ivr_live_callers", "Callers in each room's conference now.", labels=["room"]
        )
        for room, count in sorted(counts.items()):
            family.add_metric([room], count)
        yield family


def multiprocess() -> bool:
    """Return whether prometheus_client counts in PROMETHEUS_MULTIPROC_DIR's files."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def build_metrics(settings: dict, store: Store) -> Metrics:
    """Return live metrics if someone can read them (METRICS_TOKEN set), else no-ops."""
    return PrometheusMetrics(store) if settings.get("METRICS_TOKEN") else NO_METRICS


def init_app(app: Flask, metrics: Metrics) -> None:
    """Time the webhooks and serve /metrics, when metrics are on."""
    if not isinstance(metrics, PrometheusMetrics):
        return
    app.register_blueprint(bp)

    @app.before_request
    def start_timing() -> None:
        # App-wide, so it runs before the webhooks' signature check and times it too.
        if request.blueprint == "voice":
            g.ivr_webhook_started = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        started = g.pop("ivr_webhook_started", None)
        rule = request.url_rule if started is not None else None
        if rule is not None:
            # The route rule, not the raw path, so odd URLs cannot grow the label set.
            metrics.webhook(rule.rule, time.perf_counter() - started)
        return response


@bp.get("/metrics")
def scrape() -> Response:
    """Answer Prometheus with every metric, to a bearer of METRICS_TOKEN only."""
    token = current_app.config["METRICS_TOKEN"]
    given = request.headers.get("Authorization", "")
    scheme, _, credentials = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        credentials.strip().encode(), token.encode()
    ):
        abort(403)
    metrics = current_app.extensions["ivr"].metrics
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(metrics.exposition_registry()), headers={"Content-Type": content_type})
