"""A fake SendGrid v3 API: real HTTP on 127.0.0.1, strict about what it accepts.

    with FakeSendGrid(api_key="SG.test") as sg:
        cfg.delivery.sendgrid.host = sg.url
        ...
        sg.accepted            # one record per personalization taken
        sg.fail_next("429", reset_in=1)

What it checks on POST /v3/mail/send, like SendGrid:
- the Authorization header (401 otherwise);
- the body against the published JSON schema (tests/data/sendgrid_mail_send_schema.json,
  the patched copy that types custom_args as an object), 400 naming the field;
- at most 1000 recipients in a request, each address (ignoring case) once;
- custom_args at most 10,000 bytes, categories at most 10;
- send_at at most 72 hours ahead, a batch_id only if it was created.
It answers 202 with an X-Message-Id (200 in sandbox mode, which sends nothing).

Faults to inject, each for the next request(s) to mail/send:
"429" (with X-RateLimit-Reset), "500", "503", "504", "401", "timeout" (taken, then
no answer in time), "timeout-lost" (not taken, no answer), "reset" (taken, then the
connection is reset), "reset-early" (reset before the body is read: the client
cannot finish writing). ``bad_addresses`` get a 400 naming their fields.

Also: POST /v3/mail/batch, POST/PATCH/GET /v3/user/scheduled_sends (cancel and
pause), each with its own faults (``fail_next(kind, path=...)``: "500", "reset"
after acting on the request, "reset-early"). A cancelled batch's messages count
as never sent when the cancel came ``cancel_cutoff`` seconds or more before their
``send_at``; a later cancel is answered and changes nothing, as SendGrid's does
not guarantee one less than 10 minutes ahead.

Run it as a separate process (the benchmark does): ``python -m tests.fakes.sendgrid
--validator fast`` prints ``PORT <n>``; GET /_fake/stats answers the tallies.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "data" / "sendgrid_mail_send_schema.json"
MAX_RECIPIENTS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_SEND_AT_AHEAD = 72 * 3600


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


class SchemaError(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def make_validator(kind: str = "jsonschema"):
    """A function body -> None raising SchemaError; jsonschema or fastjsonschema."""
    schema = load_schema()
    if kind == "fast":
        import fastjsonschema

        compiled = fastjsonschema.compile(schema)

        def fast(body: Any) -> None:
            try:
                compiled(body)
            except fastjsonschema.JsonSchemaException as err:
                path = (err.name or "data").removeprefix("data")
                field = path.replace("[", ".").replace("]", "").lstrip(".")
                raise SchemaError(field, err.message) from None

        return fast
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    def reference(body: Any) -> None:
        err = jsonschema.exceptions.best_match(validator.iter_errors(body))
        if err is not None:
            raise SchemaError(".".join(str(p) for p in err.absolute_path), err.message)

    return reference


@dataclass
class Taken:
    """One personalization SendGrid took."""

    email: str
    delivery_id: str
    edition_id: str
    message_id: str
    batch_id: str
    send_at: int | None
    sandbox: bool
    request: int
    #: time.time() when the request that carried it was read
    at: float = 0.0
    substitutions: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    kind: str
    reset_in: float = 1.0


class _Server(ThreadingHTTPServer):
    request_queue_size = 128


class FakeSendGrid:
    def __init__(
        self,
        *,
        api_key: str = "SG.fake-key",
        validator: str = "jsonschema",
        latency: float = 0.0,
        hang: float = 2.0,
        keep_bodies: bool = True,
        port: int = 0,
    ):
        self.api_key = api_key
        self.validate = make_validator(validator)
        #: seconds every mail/send waits after taking the request, before answering
        self.latency = latency
        #: seconds a "timeout" fault waits (more than the client's timeout)
        self.hang = hang
        self.keep_bodies = keep_bodies
        self.lock = threading.Lock()
        self.accepted: list[Taken] = []
        self.bodies: list[dict] = []
        #: (method, path, status) of every request
        self.log: list[tuple[str, str, int]] = []
        #: time.time() of every mail/send request's arrival
        self.arrivals: list[float] = []
        self.faults: list[Fault] = []
        #: faults for the other endpoints, by path ("/v3/mail/batch",
        #: "/v3/user/scheduled_sends"): "500", "reset" (acted on, then the
        #: connection is reset), "reset-early" (reset before the body is read)
        self.path_faults: dict[str, list[Fault]] = {}
        #: a cancel takes effect only when it arrives at least this many seconds
        #: before the batch's send_at (SendGrid guarantees none less than 10
        #: minutes before); a later one is answered all the same, and the
        #: messages go out
        self.cancel_cutoff = 0.0
        #: batch id -> time.time() of the request that set its status
        self.status_set_at: dict[str, float] = {}
        #: random faults on mail/send: ({kind: probability}, random source)
        self.chaos: tuple[dict[str, float], random.Random] | None = None
        self.bad_addresses: set[str] = set()
        self.batch_ids: set[str] = set()
        #: batch id -> "cancel" | "pause"
        self.scheduled: dict[str, str] = {}
        self.sent_requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer._dispatch(self, "GET")

            def do_POST(self) -> None:
                outer._dispatch(self, "POST")

            def do_PATCH(self) -> None:
                outer._dispatch(self, "PATCH")

        self.httpd = _Server(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        # a reset connection is a fault we inject, not a server error to print
        self.httpd.handle_error = lambda request, address: None
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # ------------------------------------------------------------------ control

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeSendGrid:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail_next(
        self, kind: str, count: int = 1, *, reset_in: float = 1.0, path: str = "/v3/mail/send"
    ) -> None:
        with self.lock:
            into = self.faults if path == "/v3/mail/send" else self.path_faults.setdefault(path, [])
            into.extend(Fault(kind, reset_in) for _ in range(count))

    def random_faults(self, rates: dict[str, float], seed: int = 0) -> None:
        """From now on each mail/send request gets fault ``kind`` with probability ``rate``."""
        with self.lock:
            self.chaos = (dict(rates), random.Random(seed)) if any(rates.values()) else None

    def cancelled(self, t: Taken) -> bool:
        """Whether a cancel stopped this message: asked for in time before its send_at."""
        if self.scheduled.get(t.batch_id) != "cancel":
            return False
        at = self.status_set_at.get(t.batch_id, 0.0)
        return t.send_at is None or at <= t.send_at - self.cancel_cutoff

    def went_out(self, t: Taken) -> bool:
        return not t.sandbox and not self.cancelled(t)

    def delivered(self) -> Counter:
        """Address -> how many messages will really go out (not sandbox, not cancelled)."""
        with self.lock:
            return Counter(t.email.casefold() for t in self.accepted if self.went_out(t))

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.sent_requests,
                "accepted": len(self.accepted),
                "distinct": len({t.email.casefold() for t in self.accepted}),
                "statuses": dict(Counter(s for _, p, s in self.log if p == "/v3/mail/send")),
            }

    # ------------------------------------------------------------------ HTTP

    def _reply(
        self,
        h: BaseHTTPRequestHandler,
        method: str,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        with self.lock:
            self.log.append((method, h.path, status))
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        if data:
            h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def _reset(h: BaseHTTPRequestHandler) -> None:
        """Close with a TCP RST, as a crashed peer or a load balancer would."""
        h.close_connection = True
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()

    def _errors(self, *items: tuple[str | None, str]) -> dict:
        return {"errors": [{"field": f, "message": m, "help": None} for f, m in items]}

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = h.path.split("?", 1)[0]
        if path == "/_fake/stats":
            return self._reply(h, method, 200, self.stats())
        fault = None
        if path == "/v3/mail/send":
            with self.lock:
                self.sent_requests += 1
                self.arrivals.append(time.time())
                fault = self.faults.pop(0) if self.faults else None
                if fault is None and self.chaos is not None:
                    rates, rng = self.chaos
                    draw = rng.random()
                    for kind, rate in rates.items():
                        if draw < rate:
                            fault = Fault(kind)
                            break
                        draw -= rate
        else:
            base = "/v3/user/scheduled_sends" if path.startswith("/v3/user/sched") else path
            with self.lock:
                queue = self.path_faults.get(base)
                fault = queue.pop(0) if queue else None
            if fault and fault.kind in ("500", "503"):
                return self._reply(h, method, int(fault.kind), self._errors((None, "error")))
        if fault and fault.kind == "reset-early":
            return self._reset(h)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        if h.headers.get("Authorization") != f"Bearer {self.api_key}" or (
            fault and fault.kind == "401"
        ):
            msg = "The provided authorization grant is invalid, expired, or revoked"
            return self._reply(h, method, 401, self._errors((None, msg)))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return self._reply(h, method, 400, self._errors((None, "Invalid JSON")))
        if path == "/v3/mail/send" and method == "POST":
            return self._mail_send(h, body, fault)
        if path == "/v3/mail/batch" and method == "POST":
            batch_id = secrets.token_urlsafe(24)
            with self.lock:
                self.batch_ids.add(batch_id)
            if fault and fault.kind == "reset":
                return self._reset(h)
            return self._reply(h, method, 201, {"batch_id": batch_id})
        if path == "/v3/user/scheduled_sends" and method == "POST":
            return self._schedule(h, method, body, fault)
        if path.startswith("/v3/user/scheduled_sends/"):
            batch_id = path.rsplit("/", 1)[1]
            with self.lock:
                known = batch_id in self.scheduled
                if known and method == "PATCH":
                    self.scheduled[batch_id] = (body or {}).get("status", "")
                    self.status_set_at[batch_id] = time.time()
                status = self.scheduled.get(batch_id)
            if known and method == "PATCH" and fault and fault.kind == "reset":
                return self._reset(h)
            if not known:
                return self._reply(h, method, 404, self._errors((None, "not found")))
            if method == "PATCH":
                return self._reply(h, method, 204)
            return self._reply(h, method, 200, [{"batch_id": batch_id, "status": status}])
        return self._reply(h, method, 404, self._errors((None, "not found")))

    def _schedule(
        self, h: BaseHTTPRequestHandler, method: str, body: Any, fault: Fault | None = None
    ) -> None:
        body = body or {}
        batch_id, status = body.get("batch_id"), body.get("status")
        if status not in ("cancel", "pause"):
            return self._reply(h, method, 400, self._errors(("status", "must be cancel or pause")))
        # _reply takes the lock itself: decide under it, answer after it
        problem = ""
        with self.lock:
            if batch_id not in self.batch_ids:
                problem = "invalid batch id"
            elif batch_id in self.scheduled:
                problem = "batch id already exists in the system"
            else:
                self.scheduled[batch_id] = status
                self.status_set_at[batch_id] = time.time()
        if problem:
            return self._reply(h, method, 400, self._errors(("batch_id", problem)))
        if fault and fault.kind == "reset":
            return self._reset(h)
        return self._reply(h, method, 201, {"batch_id": batch_id, "status": status})

    def _check(self, body: Any) -> list[tuple[str | None, str]]:
        """SendGrid's rules; the problems as (field, message), empty when fine."""
        try:
            self.validate(body)
        except SchemaError as err:
            return [(err.field or None, err.message)]
        problems: list[tuple[str | None, str]] = []
        pers = body["personalizations"]
        seen: dict[str, int] = {}
        recipients = 0
        for i, p in enumerate(pers):
            for kind in ("to", "cc", "bcc"):
                for j, addr in enumerate(p.get(kind, [])):
                    recipients += 1
                    key = addr["email"].casefold()
                    if key in seen:
                        problems.append(
                            (
                                f"personalizations.{i}.{kind}",
                                "Each unique email address in the personalizations array "
                                "should only be included once. We found the first duplicate "
                                f"instance of [{addr['email']}] in the "
                                f"personalizations.{i}.{kind} field.",
                            )
                        )
                    seen.setdefault(key, i)
                    if key in self.bad_addresses:
                        problems.append(
                            (
                                f"personalizations.{i}.{kind}.{j}.email",
                                "Does not contain a valid address.",
                            )
                        )
            size = len(json.dumps(body.get("custom_args", {}))) + len(
                json.dumps(p.get("custom_args", {}))
            )
            if size > MAX_CUSTOM_ARGS_BYTES:
                problems.append(
                    (f"personalizations.{i}.custom_args", "custom_args exceeds 10,000 bytes")
                )
        if recipients > MAX_RECIPIENTS:
            problems.append(
                ("personalizations", "The personalizations field may have at most 1000 recipients")
            )
        send_at = body.get("send_at")
        if send_at is not None and send_at > time.time() + MAX_SEND_AT_AHEAD:
            problems.append(("send_at", "send_at cannot be more than 72 hours in the future"))
        batch_id = body.get("batch_id")
        if batch_id is not None and batch_id not in self.batch_ids:
            problems.append(("batch_id", "invalid batch id"))
        return problems

    def _mail_send(self, h: BaseHTTPRequestHandler, body: Any, fault: Fault | None) -> None:
        method = "POST"
        arrived = time.time()
        if fault is not None:
            kind = fault.kind
            if kind == "429":
                reset = int(time.time() + fault.reset_in)
                headers = {
                    "X-RateLimit-Limit": "600",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset),
                }
                msg = "too many requests"
                return self._reply(h, method, 429, self._errors((None, msg)), headers)
            if kind in ("500", "503", "504"):
                return self._reply(h, method, int(kind), self._errors((None, "server error")))
            if kind == "timeout-lost":
                time.sleep(self.hang)
                return self._reset(h)
        problems = self._check(body)
        if problems:
            return self._reply(h, method, 400, self._errors(*problems))
        sandbox = bool(((body.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable"))
        message_id = secrets.token_urlsafe(16)
        with self.lock:
            index = len(self.bodies)
            if self.keep_bodies:
                self.bodies.append(body)
            for p in body["personalizations"]:
                args = {**body.get("custom_args", {}), **p.get("custom_args", {})}
                for to in p["to"]:
                    self.accepted.append(
                        Taken(
                            email=to["email"],
                            delivery_id=args.get("newsletter_delivery_id", ""),
                            edition_id=args.get("newsletter_edition_id", ""),
                            message_id=message_id,
                            batch_id=body.get("batch_id", ""),
                            send_at=body.get("send_at"),
                            sandbox=sandbox,
                            request=index,
                            at=arrived,
                            substitutions=p.get("substitutions", {}) if self.keep_bodies else {},
                            headers=p.get("headers", {}) if self.keep_bodies else {},
                        )
                    )
        if fault is not None and fault.kind == "timeout":
            time.sleep(self.hang)
            return self._reset(h)
        if fault is not None and fault.kind == "reset":
            return self._reset(h)
        if self.latency:
            time.sleep(self.latency)
        if sandbox:
            return self._reply(h, method, 200)
        return self._reply(h, method, 202, headers={"X-Message-Id": message_id})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api-key", default="SG.fake-key")
    ap.add_argument("--validator", choices=["jsonschema", "fast"], default="jsonschema")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    fake = FakeSendGrid(
        api_key=args.api_key, validator=args.validator, keep_bodies=False, port=args.port
    )
    print(f"PORT {fake.httpd.server_address[1]}", flush=True)
    fake.httpd.serve_forever()


if __name__ == "__main__":
    main()
