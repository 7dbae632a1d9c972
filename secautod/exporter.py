"""Where the metrics go: an HTTP listener for Prometheus, a textfile for node_exporter.

The listener serves `/metrics` from its own thread; each request only
renders the figures the monitor last read (see `metrics.py`). The textfile
is written whole under a temporary name and renamed over the old one, so
node_exporter never reads half a file.
"""

from __future__ import annotations

import errno
import http.server
import os
import socket
import threading
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from secautod.errors import ConfigError
from secautod.log import get_logger
from secautod.metrics import render

log = get_logger("secautod.exporter")

METRICS_PATH = "/metrics"
# node_exporter runs as its own user: the textfile must be world-readable
# (it holds counts and sizes, never job data).
TEXTFILE_MODE = 0o644


def format_address(address: tuple[str, int]) -> str:
    """Write (host, port) back as `metrics.listen` spells it: `host:port` or `[v6]:port`."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class MetricsServer:
    """Serves `registry` on `http://host:port/metrics` from a background thread."""

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry) -> None:
        """Bind the listening socket now; a `ConfigError` names the address if that fails."""
        self.address = address
        handler = _handler(registry)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        server_class = type("_Server", (_QuietServer,), {"address_family": family})
        try:
            self._server: http.server.ThreadingHTTPServer = server_class(address, handler)
        except (OSError, UnicodeError) as exc:
            raise ConfigError(
                f"metrics.listen: cannot listen on {format_address(address)}: {_reason(exc)}"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start answering requests."""
        self._thread.start()
        log.info("metrics_listening", listen=format_address(self.address), path=METRICS_PATH)

    def close(self) -> None:
        """Stop answering and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # A restarted daemon must get its port back while old connections linger.
    allow_reuse_address = True


def _handler(registry: CollectorRegistry) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != METRICS_PATH:
                self.send_error(404, f"only {METRICS_PATH} is served here")
                return
            body = render(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per scrape would drown the log

    return Handler


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return "the port is already in use by another process"
    if isinstance(exc, OSError) and exc.errno == errno.EACCES:
        return "this user may not bind that port (ports below 1024 need privileges)"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL:
        return "no network interface of this machine has that address"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    return getattr(exc, "strerror", None) or str(exc)


def write_textfile(path: Path, registry: CollectorRegistry) -> None:
    """Write the metrics to `path` atomically (temporary file, then rename), mode 0644."""
    body = render(registry)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, TEXTFILE_MODE)
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), TEXTFILE_MODE)  # the umask (0077 under systemd) hides it
            file.write(body)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
