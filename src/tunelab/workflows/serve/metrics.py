"""``/metrics``: Prometheus counters and histograms (``prometheus_client``), one registry per
server, so that several servers in one process (tests) keep apart."""

from __future__ import annotations


class Metrics:
    def __init__(self, in_flight, queued):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "tunelab_requests", "HTTP requests by path and status", ["path", "status"], registry=r
        )
        self.latency = Histogram(
            "tunelab_request_latency_seconds",
            "Time from request to the end of the response, by path",
            ["path"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.batch_size = Histogram(
            "tunelab_batch_size",
            "Rows per model batch (generations, or classification inputs), by kind",
            ["kind"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.generated = Counter(
            "tunelab_generated_tokens", "Tokens generated, by model", ["model"], registry=r
        )
        self.prompt = Counter(
            "tunelab_prompt_tokens", "Prompt tokens read, by model", ["model"], registry=r
        )
        Gauge(
            "tunelab_requests_in_flight", "Model requests queued or running", registry=r
        ).set_function(in_flight)
        Gauge(
            "tunelab_requests_queued", "Model requests waiting for a batch", registry=r
        ).set_function(queued)

    def observe_batch(self, kind: str, rows: int) -> None:
        self.batch_size.labels(kind).observe(rows)

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def tokens(self, model: str, prompt: int, generated: int) -> None:
        self.prompt.labels(model).inc(prompt)
        self.generated.labels(model).inc(generated)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
