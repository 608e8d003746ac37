"""``GET /metrics`` of ``newsletter serve``: Prometheus text format (prometheus-client).

The figures are read from the database at each scrape, so they cover what every
process did (the scheduled runs, other `serve` replicas), not just this one:

    newsletter_deliveries{digest,status}              deliveries by status
    newsletter_webhook_events_total{type}             provider events received
    newsletter_batches_held                           batches with deliveries held for a decision
    newsletter_subscribers{status}                    subscribers (signups) by status
    newsletter_last_run_timestamp_seconds{digest}     when a run last handled the digest
    newsletter_last_run_exit_code{digest}             that run's exit code
    newsletter_last_run_outcome{digest,status}        1 for its outcome (sent, no-subscribers …)
    newsletter_periods_without_edition{digest}        schedule periods in a row with no edition
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter.store import Store


class StoreCollector(Collector):
    """Reads the counts from the store when Prometheus scrapes."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        totals = self.store.totals()
        deliveries = GaugeMetricFamily(
            "newsletter_deliveries", "Deliveries by digest and status.", labels=["digest", "status"]
        )
        for (digest, status), n in sorted(totals.deliveries.items()):
            deliveries.add_metric([digest, status], n)
        yield deliveries
        events = CounterMetricFamily(
            "newsletter_webhook_events", "Provider events received, by type.", labels=["type"]
        )
        for kind, n in sorted(totals.events.items()):
            events.add_metric([kind], n)
        yield events
        yield GaugeMetricFamily(
            "newsletter_batches_held",
            "Batches whose outcome is unknown, held for an operator's decision.",
            value=totals.batches_held,
        )
        subs = GaugeMetricFamily(
            "newsletter_subscribers", "Subscribers by status.", labels=["status"]
        )
        for status, n in sorted(totals.subscribers.items()):
            subs.add_metric([status], n)
        yield subs
        when = GaugeMetricFamily(
            "newsletter_last_run_timestamp_seconds",
            "Unix time of the last run that handled the digest.",
            labels=["digest"],
        )
        code = GaugeMetricFamily(
            "newsletter_last_run_exit_code",
            "Exit code of the last run that handled the digest.",
            labels=["digest"],
        )
        outcome = GaugeMetricFamily(
            "newsletter_last_run_outcome",
            "1 for the digest's outcome in the last run.",
            labels=["digest", "status"],
        )
        idle = GaugeMetricFamily(
            "newsletter_periods_without_edition",
            "Schedule periods in a row that ended without an edition.",
            labels=["digest"],
        )
        for run in self.store.digest_runs():
            when.add_metric([run.digest], run.ran_at.timestamp())
            code.add_metric([run.digest], run.exit_code)
            outcome.add_metric([run.digest, run.status], 1)
            idle.add_metric([run.digest], run.idle_periods)
        yield from (when, code, outcome, idle)


def metrics_endpoint(store: Store):  # noqa: ANN201 - a Starlette endpoint
    """The /metrics endpoint over ``store``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))

    async def metrics(request: Request) -> Response:
        # the format Prometheus asks for (text 0.0.4 when it says nothing; OpenMetrics)
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await run_in_threadpool(encode, registry)
        return Response(body, headers={"Content-Type": content_type})

    return metrics
