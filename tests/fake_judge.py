"""A small OpenAI-compatible chat endpoint on 127.0.0.1 that answers from a script: what the judge client is
tested against (happy path, malformed answers, slow answers, 5xx)."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD = "Instruction Compliance: 4\nConsistency & Detail Fidelity: 5\nVisual Quality & Stability: 3"


def rubric_dimensions(body: dict) -> list[str]:
    """The dimension names the system message asks for: the project rubrics' "- Name: ..." lines, or an
    official-style rubric's "Name: A number from 1 to 5." / "Name: 1-5." answer template."""
    system = next(m["content"] for m in body["messages"] if m["role"] == "system")
    names = [line[2:].split(":")[0] for line in system.splitlines() if line.startswith("- ")]
    names += [line.split(":")[0] for line in system.splitlines()
              if re.search(r":\s*(A number from 1 to 5|1-5)\.?\s*$", line)]
    return list(dict.fromkeys(names))


class FakeJudge:
    def __init__(self):
        self.script: list[tuple] = []  # consumed one per request; empty: answer `default`
        self.default: tuple = ("answer", GOOD)  # ("rubric", n): n for every dimension the prompt lists
        self.requests: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with judge._lock:
                    judge.requests.append(dict(path=self.path, body=body, headers=dict(self.headers)))
                    action = judge.script.pop(0) if judge.script else judge.default
                    judge.in_flight += 1
                    judge.max_in_flight = max(judge.max_in_flight, judge.in_flight)
                if action[0] == "rubric":
                    action = ("answer", "\n".join(f"{n}: {action[1]}" for n in rubric_dimensions(body)))
                self._counted = True
                try:
                    self._act(action)
                finally:
                    self._leave()

            def _leave(self):
                """Out of flight once the answer is ready, before its bytes go: a client that has read them may send
                its next request before this thread runs again, and that one must not count beside this one."""
                if self._counted:
                    self._counted = False
                    with judge._lock:
                        judge.in_flight -= 1

            def _act(self, action):
                kind = action[0]
                if kind == "sleep":  # ("sleep", seconds, then-answer)
                    time.sleep(action[1])
                    action = ("answer", action[2])
                    kind = "answer"
                if kind == "status":
                    self._send(action[1], b'{"error": "overloaded"}')
                elif kind == "raw":
                    self._send(200, action[1].encode())
                else:
                    reply = {"choices": [{"message": {"role": "assistant", "content": action[1]}}]}
                    self._send(200, json.dumps(reply).encode())

            def _send(self, status, payload: bytes):
                self._leave()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
