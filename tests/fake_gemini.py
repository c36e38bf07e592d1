"""A small stand-in for the Gemini API on 127.0.0.1, enough for `google-genai`'s Files API (resumable upload,
get, delete) and `models.generate_content`: it keeps every uploaded file and every request so tests can check
what the judge was sent, and answers from a script (scores, 5xx, malformed text)."""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fake_judge import rubric_dimensions


class FakeGemini:
    def __init__(self):
        self.files: dict[str, dict] = {}  # name -> {data, mime}
        self.generate: list[dict] = []  # generate_content bodies (with the path)
        self.deleted: list[str] = []
        self.script: list[tuple] = []  # consumed one per generate request; empty: `default`
        self.default: tuple = ("rubric", 4)  # ("rubric", n) | ("answer", text) | ("status", code)
        self.processing_polls = 1  # files report PROCESSING for this many gets
        self._ids = itertools.count()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _json(self, obj, status=200, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _file(self, name, state):
                entry = fake.files[name]
                return {"name": name, "uri": f"https://fake/{name}", "mimeType": entry["mime"], "state": state}

            def do_POST(self):
                body = self._body()
                path = self.path.split("?")[0]
                if path.startswith("/upload/") and path.endswith("/files"):  # start a resumable upload
                    with fake._lock:
                        session = str(next(fake._ids))
                    mime = self.headers.get("X-Goog-Upload-Header-Content-Type", "")
                    fake.files[f"files/{session}"] = {"data": b"", "mime": mime, "polls": 0}
                    url = f"http://127.0.0.1:{self.server.server_port}/session/{session}"
                    return self._json({}, headers={"x-goog-upload-url": url})
                if path.startswith("/session/"):
                    name = f"files/{path.rsplit('/', 1)[1]}"
                    fake.files[name]["data"] += body
                    return self._json({"file": self._file(name, "PROCESSING")},
                                      headers={"x-goog-upload-status": "final"})
                if path.endswith(":generateContent"):
                    request = json.loads(body)
                    with fake._lock:
                        fake.generate.append(dict(path=path, body=request, headers=dict(self.headers)))
                        action = fake.script.pop(0) if fake.script else fake.default
                    if action[0] == "status":
                        return self._json({"error": {"code": action[1], "message": "overloaded",
                                                     "status": "UNAVAILABLE"}}, status=action[1])
                    text = action[1]
                    if action[0] == "rubric":
                        system = request["systemInstruction"]["parts"][0]["text"]
                        names = rubric_dimensions({"messages": [{"role": "system", "content": system}]})
                        text = "Brief reasoning: fine.\n" + "\n".join(f"{n}: {action[1]}" for n in names)
                    return self._json({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                                       "finishReason": "STOP"}]})
                return self._json({"error": {"code": 404, "message": path}}, status=404)

            def do_GET(self):
                name = "files/" + self.path.split("?")[0].rsplit("/", 1)[1]
                entry = fake.files[name]
                entry["polls"] += 1
                state = "PROCESSING" if entry["polls"] <= fake.processing_polls else "ACTIVE"
                return self._json(self._file(name, state))

            def do_DELETE(self):
                name = "files/" + self.path.split("?")[0].rsplit("/", 1)[1]
                fake.deleted.append(name)
                return self._json({})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def uploaded(self, uri: str) -> dict:
        return self.files[uri.removeprefix("https://fake/")]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
