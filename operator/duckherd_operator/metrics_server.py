"""The operator's /metrics: prometheus_client's registry (the operator's counters, the
controller metrics, the process) followed by the per-pipeline families, written as they are
rendered (pipeline_metrics.py). Prometheus text format 0.0.4; a daemon thread, like
prometheus_client's own server, so a busy event loop still answers scrapes."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from duckherd_operator.pipeline_metrics import PipelineMetrics

log = logging.getLogger("duckherd.operator.metrics")


def _handler(pipelines: PipelineMetrics) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
            self.end_headers()  # HTTP/1.0: the body ends when the connection closes
            self.wfile.write(generate_latest(REGISTRY))
            for chunk in pipelines.render():
                self.wfile.write(chunk)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics: " + format, *args)

    return MetricsHandler


def start_metrics_server(
    port: int, pipelines: PipelineMetrics, address: str = "0.0.0.0"
) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((address, port), _handler(pipelines))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
