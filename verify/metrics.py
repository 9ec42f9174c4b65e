"""`paystream verify --follow` metrics: the latest audit as Prometheus text on a tiny HTTP server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from verify.audit import AuditResult


def render(result: AuditResult, rounds: int, duration_s: float) -> str:
    """The Prometheus exposition text for one audit result."""
    lines = [
        "# HELP paystream_verify_violations Violations of one invariant in the latest audit.",
        "# TYPE paystream_verify_violations gauge",
    ]
    lines += [f'paystream_verify_violations{{invariant="{name}"}} {f.violations}'
              for name, f in result.findings.items()]
    lines += ["# HELP paystream_verify_checked Items checked for one invariant in the latest audit.",
              "# TYPE paystream_verify_checked gauge"]
    lines += [f'paystream_verify_checked{{invariant="{name}"}} {f.checked}' for name, f in result.findings.items()]
    lines += ["# HELP paystream_verify_records Records read per kind in the latest audit.",
              "# TYPE paystream_verify_records gauge"]
    lines += [f'paystream_verify_records{{kind="{kind}"}} {count}' for kind, count in result.counts.items()]
    lines += ["# HELP paystream_verify_ok 1 when the latest audit found no violation.",
              "# TYPE paystream_verify_ok gauge", f"paystream_verify_ok {int(result.ok)}",
              "# HELP paystream_verify_rounds_total Audits completed.",
              "# TYPE paystream_verify_rounds_total counter", f"paystream_verify_rounds_total {rounds}",
              "# HELP paystream_verify_duration_seconds How long the latest audit took.",
              "# TYPE paystream_verify_duration_seconds gauge", f"paystream_verify_duration_seconds {duration_s:.3f}"]
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves the latest text at `/metrics` from a daemon thread; `publish` replaces it."""

    def __init__(self, port: int, host: str = "0.0.0.0") -> None:
        self._text = "# no audit finished yet\n"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = server._text.encode()
                self.send_response(200 if self.path.startswith("/metrics") or self.path == "/" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass  # scrapes are not news

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, name="verify-metrics", daemon=True).start()

    def publish(self, text: str) -> None:
        self._text = text

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
