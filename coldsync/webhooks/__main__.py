"""`python -m coldsync.webhooks --port N [--host 127.0.0.1]`: the webhook receiver on this machine.

It serves the very function Cloud Run functions runs (`receive`, loaded by functions_framework.create_app from the
repository's `main.py`), with a threaded server (one thread per connection: a burst from 20 senders is served at
once), against the warehouse the settings name (the DuckDB file by default, free between deliveries). It refuses to
start (exit 2) with a bad setting, e.g. INSTANTLY_WEBHOOK_SECRET missing or shorter than 32 characters. Once it
listens it prints one line, `listening on http://HOST:PORT/` (with --port 0 the port the system chose). SIGINT or
SIGTERM stops it (exit 0). To expose it to Instantly from a laptop, put an https tunnel in front of it; in production
deploy it to Cloud Run functions (coldsync/webhooks/app.py).
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from coldsync.settings import REPO_ROOT

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

LINGER_SECONDS = 1.0
"""How long a finished connection is drained before it is closed (below)."""
LINGER_BYTES = 2 * 1024 * 1024
READ_TIMEOUT_SECONDS = 10.0
"""How long a connection may stay silent (each read or write of its socket) before the server drops it: without it a
sender that announces `Content-Length: 1000` and stalls holds a server thread until it gives up. 10 s is the request
timeout of the Cloud Run deploy (--timeout=10s, coldsync/webhooks/app.py), so a sender gets as long here as in
production, and a delivery (at most 1 MiB) on a working link arrives well within it. A body that stalls is answered
408; a connection silent before its request line, or idle between keep-alive requests, is closed."""


class ReceiverServer(ThreadedWSGIServer):
    """werkzeug's threaded server, with a socket timeout (`read_timeout` seconds, READ_TIMEOUT_SECONDS unless a test
    shortens it) and a lingering close: a connection answered before its body was read (401, 413) is drained for up
    to LINGER_SECONDS / LINGER_BYTES after the answer, so the kernel does not reset it (a close with unread bytes
    sends RST, and the sender may then lose the answer)."""

    def __init__(self, host: str, port: int, app: WSGIApplication, *,
                 read_timeout: float = READ_TIMEOUT_SECONDS) -> None:
        handler = type("TimedRequestHandler", (WSGIRequestHandler,), {"timeout": read_timeout})
        super().__init__(host, port, app, handler=handler)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        try:
            request.shutdown(socket.SHUT_WR)
            request.settimeout(LINGER_SECONDS)
            drained = 0
            while drained < LINGER_BYTES:
                chunk = request.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass
        self.close_request(request)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m coldsync.webhooks",
        description="Receive Instantly webhook deliveries into ops_instantly_events (settings from the environment, "
                    ".env and config/secrets, as for sync_once.py; INSTANTLY_WEBHOOK_SECRET is required).")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 only behind a tunnel or proxy)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import functions_framework

    from coldsync.cli import ExitCode
    from coldsync.files import private_process
    from coldsync.webhooks import app

    args = parse_args(argv)
    private_process()  # the DuckDB file, its WAL and spill files are this user's only
    try:
        receiver = app.receiver_from_environment()
    except app.ReceiverConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)  # names settings, never a secret's value
        return ExitCode.BAD_CONFIG
    app.install(receiver)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per delivery is ours, masked
    wsgi = functions_framework.create_app(target="receive",  # type: ignore[no-untyped-call]
                                          source=str(REPO_ROOT / "main.py"))
    server = ReceiverServer(args.host, args.port, wsgi)
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    print(f"listening on http://{args.host}:{server.server_port}/", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        receiver.close()
        app.install(None)
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
