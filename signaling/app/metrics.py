"""``GET /metrics``: the process's counts in the Prometheus text format, through prometheus-client.

The hot paths count in plain integers (the transport's TransportStats, the sessions' SessionCounters, the app's
own); this collector reads them at scrape time, so a relayed message costs a dict increment, not a Prometheus
call. Process metrics (CPU, memory, open files) come from prometheus-client's own collectors. Every app has its
own registry, so several servers in one process (the tests) do not mix their counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from signaling.protocol.facts import END_SESSION_CLOSE_CODE, FINAL_CLOSE_CODES, TAKEN_OVER_CLOSE_CODE
from signaling.ws.aio.stats import Histogram
from signaling.ws.frames import CloseCode

if TYPE_CHECKING:
    from signaling.cluster.node import ClusterNode
    from signaling.interop.peerjs.session import PeerJSCounters

    from .webhooks import WebhookSender
    from .wiring import SignalingApp

__all__ = ["CONTENT_TYPE", "Metrics", "close_code_label"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Close codes with a label of their own: RFC 6455's and the protocol's. A client may close with any of 3000-4999,
#: so the others fold into their thousand (``3xxx``, ``4xxx``): some fifteen series, whatever clients send.
NAMED_CLOSE_CODES: Final = frozenset((*CloseCode, END_SESSION_CLOSE_CODE, TAKEN_OVER_CLOSE_CODE, *FINAL_CLOSE_CODES))


def close_code_label(code: int) -> str:
    """The ``code`` label of ``signaling_closes_total`` for a close code."""
    if code in NAMED_CLOSE_CODES:
        return str(code)
    return f"{code // 1000}xxx" if 3000 <= code <= 4999 else "other"


def _counter(name: str, doc: str, label: str, values: Iterable[tuple[object, int]]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, count in sorted(values, key=lambda kv: str(kv[0])):
        family.add_metric([str(key)], count)
    return family


def _histogram(name: str, doc: str, histogram: Histogram, *, unit_label: Callable[[float], str]) -> Metric:
    buckets = [(unit_label(bound), count) for bound, count in histogram.cumulative()]
    family = HistogramMetricFamily(name, doc)
    family.add_metric([], buckets, sum_value=histogram.sum)
    return family


def _cluster_health(cluster: ClusterNode) -> Iterator[Metric]:
    if cluster.backlog_bytes is not None:
        yield GaugeMetricFamily(
            "signaling_cluster_subscription_backlog_bytes",
            "What Redis holds for this node's subscription, unread (at the last heartbeat); past its "
            "client-output-buffer-limit Redis cuts the node.",
            value=cluster.backlog_bytes,
        )
        yield GaugeMetricFamily(
            "signaling_cluster_lagging",
            "1 while that backlog is past half of Redis's limit for it (soft, or hard without one).",
            value=int(cluster.lagging),
        )
    config = cluster.redis_config
    wrong = {problem.setting for problem in config.problems}
    family = GaugeMetricFamily(
        "signaling_cluster_redis_setting_wrong",
        "1 when a setting of Redis puts the cluster at risk (the log's redis_settings says what to set).",
        labels=["setting"],
    )
    for setting in config.checked:
        family.add_metric([setting], int(setting in wrong))
    yield family


def _webhooks(sender: WebhookSender) -> Iterator[Metric]:
    family = CounterMetricFamily(
        "signaling_webhook_deliveries",
        "Webhook events delivered to a URL (a 2xx), or given up after the retry period, by result.",
        labels=["result"],
    )
    family.add_metric(["sent"], sender.sent)
    family.add_metric(["given_up"], sender.given_up)
    yield family
    yield CounterMetricFamily(
        "signaling_webhook_retries",
        "Webhook tries that failed (not 2xx, no answer) and were retried.",
        value=sender.retried,
    )
    yield GaugeMetricFamily(
        "signaling_webhook_queue_depth",
        "Webhook events waiting or being sent (a cluster's outbox, as its sender last read it).",
        value=sender.outbox.depth(),
    )
    yield CounterMetricFamily(
        "signaling_webhook_events_lost",
        "Webhook events not kept because the queue was full (a gap in their room's seq).",
        value=sender.outbox.lost(),
    )
    yield _histogram(
        "signaling_webhook_delivery_latency_seconds",
        "From the change in the room to its event's 2xx, per URL.",
        sender.latency,
        unit_label=lambda b: "+Inf" if b == float("inf") else f"{b:g}",
    )


class _SignalingCollector(Collector):
    def __init__(self, app: SignalingApp) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        app = self.app
        rooms = app.backends.directory.stats()
        ready = int(app.ready and app.accepting)
        yield GaugeMetricFamily("signaling_ready", "1 while the server accepts new clients.", value=ready)
        yield GaugeMetricFamily("signaling_connections", "Open signaling WebSocket connections.", value=app.connections)
        yield GaugeMetricFamily("signaling_rooms", "Rooms with at least one peer (of the cluster).", value=rooms.rooms)
        yield GaugeMetricFamily("signaling_peers", "Peers in rooms (of the cluster).", value=rooms.peers)
        yield GaugeMetricFamily(
            "signaling_local_peers", "Peers in rooms whose connection is on this node.", value=rooms.local_peers
        )
        if app.cluster is not None:
            yield GaugeMetricFamily("signaling_cluster_nodes", "Nodes alive in the cluster.", value=rooms.nodes)
            yield GaugeMetricFamily(
                "signaling_cluster_up",
                "1 while this node's link to the cluster's Redis works.",
                value=int(app.cluster.up),
            )
            yield CounterMetricFamily(
                "signaling_cluster_refused_deliveries",
                "Texts for resumable peers that Redis refused (out of memory, say): neither kept nor sent; each "
                "sender got an unavailable error.",
                value=app.cluster.router.refused,
            )
            yield from _cluster_health(app.cluster)
        yield _counter(
            "signaling_resumes",
            "Resume attempts, by outcome (resumed; fresh: the token could not be honoured).",
            "outcome",
            app.counters.resumed.items(),
        )
        yield CounterMetricFamily(
            "signaling_messages_received", "Client messages accepted for handling.", value=app.messages
        )
        counters = app.counters
        yield _counter(
            "signaling_messages_relayed",
            "Client messages relayed to their room, by type.",
            "type",
            counters.relayed.items(),
        )
        yield _counter("signaling_errors", "error replies sent to clients, by code.", "code", counters.errors.items())
        yield CounterMetricFamily(
            "signaling_rate_limited", "Client messages refused by the rate limit.", value=app.rate_limited
        )
        rejections = dict(app.rejections)
        stats = app.transport_stats
        if stats is not None:
            for reason, count in stats.rejections.items():
                rejections[reason] = rejections.get(reason, 0) + count
        yield _counter(
            "signaling_handshake_rejections",
            "Connections refused before they became WebSockets, by reason.",
            "reason",
            rejections.items(),
        )
        if app.peerjs is not None:
            yield from _peerjs(app.peerjs.counters)
        yield CounterMetricFamily(
            "signaling_turn_credentials_issued", "TURN credentials handed out.", value=app.turn_credentials_issued
        )
        if app.webhooks is not None:
            yield from _webhooks(app.webhooks)
        if stats is None:
            return
        yield CounterMetricFamily("signaling_handshakes", "WebSocket handshakes accepted.", value=stats.handshakes)
        closes: Counter[str] = Counter()
        for code, count in stats.closes.items():
            closes[close_code_label(code)] += count
        yield _counter(
            "signaling_closes",
            "Closed WebSocket connections, by close code (other codes of 3000-4999 as 3xxx, 4xxx).",
            "code",
            closes.items(),
        )
        yield _histogram(
            "signaling_relay_latency_seconds",
            "Time to handle one read that wrote to connections: parse, relay, and write to every recipient.",
            stats.read_seconds,
            unit_label=lambda b: "+Inf" if b == float("inf") else f"{b:g}",
        )
        yield _histogram(
            "signaling_send_buffer_peak_bytes",
            "Per closed connection, the largest send buffer it reached (its high-water mark).",
            stats.send_buffer_peaks,
            unit_label=lambda b: "+Inf" if b == float("inf") else f"{b:.0f}",
        )


def _peerjs(counters: PeerJSCounters) -> Iterator[Metric]:
    """The PeerJS endpoint's counts (its connections, messages and rate limits count with the native ones)."""
    yield _counter(
        "signaling_peerjs_opened",
        "PeerJS connections by outcome: open, taken-over (same token), id-taken, refused (key, token, limits).",
        "outcome",
        counters.opened.items(),
    )
    yield _counter(
        "signaling_peerjs_relayed", "PeerJS messages relayed at once, by type.", "type", counters.relayed.items()
    )
    yield CounterMetricFamily(
        "signaling_peerjs_late", "PeerJS messages that waited for their peer, then went.", value=counters.late
    )
    yield CounterMetricFamily(
        "signaling_peerjs_expired", "EXPIRE sent: messages waited for a peer that never came.", value=counters.expired
    )
    yield CounterMetricFamily(
        "signaling_peerjs_dropped",
        "PeerJS messages dropped past a connection's waiting bounds.",
        value=counters.dropped,
    )


class Metrics:
    """One app's registry: the signaling collector plus the process, platform and GC collectors."""

    def __init__(self, app: SignalingApp) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SignalingCollector(app))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
