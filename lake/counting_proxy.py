"""An HTTP proxy that counts what an object-store client asks for: requests by method and the body bytes each GET
brings back. Put between a lake and an S3-compatible server (moto in the tests and benches) to measure how many
requests and bytes a read costs, which is what object storage bills and what its latency multiplies.

Listens on 127.0.0.1 only; `close()` (or leaving the `with` block) stops it."""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


@dataclass
class Tally:
    requests: Counter = field(default_factory=Counter)  # by method
    get_bytes: int = 0  # body bytes of GET responses

    def reset(self) -> None:
        self.requests.clear()
        self.get_bytes = 0


class CountingProxy:
    """`CountingProxy("http://127.0.0.1:5000").endpoint` is an endpoint to give the client instead of the server's."""

    def __init__(self, upstream: str):
        target = urlsplit(upstream)
        self.tally = Tally()
        lock = threading.Lock()
        tally = self.tally

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> bytes | None:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _forward(self) -> None:
                body = self._body()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    payload = response.read()
                finally:
                    connection.close()
                with lock:
                    tally.requests[self.command] += 1
                    if self.command == "GET":
                        tally.get_bytes += len(payload)
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():  # a HEAD keeps the object's length, a body gets its own
                    if key.lower() not in _HOP_BY_HOP and (key.lower() != "content-length" or self.command == "HEAD"):
                        self.send_header(key, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CountingProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
