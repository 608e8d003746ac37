"""Plain SMTP (smtplib): STARTTLS or implicit TLS, AUTH, one reused connection per worker.

Each recipient gets a full RFC 5322 message (``delivery/mime.py``) in its own
MAIL/RCPT/DATA transaction. The transaction's phase decides what a failure
means:

- refused at MAIL or RCPT with 5xx, or DATA answered 5xx: refused for good;
- 4xx anywhere: not taken, queued again for a later run;
- the connection lost before DATA: not taken; the worker reconnects once and
  tries that message again;
- the connection lost during DATA: the server may have queued it: unknown.

An address with non-ASCII before the @ goes with SMTPUTF8 (RFC 6531: the
option on MAIL FROM, a UTF-8 RCPT, the address raw in To:) when the server
announces it; otherwise that delivery fails alone.

A batch that stops half-way returns what is known; nothing that was accepted
is ever reported as "not sent". Batches are small (``smtp.batch_size``) so a
sender that dies mid-batch leaves few deliveries to resolve.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading

from newsletter.config import Config
from newsletter.delivery.backends.base import (
    Backend,
    BatchResult,
    OutgoingMessage,
    without_addresses,
)
from newsletter.delivery.mime import addr_spec, needs_smtputf8, render_message
from newsletter.delivery.pacing import Pacer
from newsletter.errors import (
    AuthError,
    ConfigError,
    PermanentDeliveryError,
    TransientError,
)
from newsletter.models import Recipient

logger = logging.getLogger(__name__)


class _Lost(Exception):
    """The connection died; ``during_data``: the message may have been taken."""

    def __init__(self, err: BaseException, *, during_data: bool):
        super().__init__(str(err))
        self.during_data = during_data


class SmtpBackend(Backend):
    name = "smtp"
    idempotent = False

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.settings = s = cfg.delivery.smtp
        self.password = cfg.secrets.smtp_password
        if s.username and not self.password:
            raise ConfigError(
                "NEWSLETTER_SMTP_PASSWORD is not set but delivery.smtp.username is",
                where=f"{cfg.path}: delivery.smtp.username",
            )
        self.max_batch = s.batch_size
        self.concurrency = s.concurrency
        self.pacer = Pacer(s.rate)
        self.where = f"smtp://{s.host}:{s.port}"
        self._local = threading.local()
        self._open: list[smtplib.SMTP] = []
        self._lock = threading.Lock()

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self.settings.ca_file:
            ctx.load_verify_locations(cafile=str(self.cfg.resolve(self.settings.ca_file)))
        return ctx

    # ------------------------------------------------------------------ connections

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        conn: smtplib.SMTP | None = None
        try:
            if s.ssl:
                conn = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=self.tls_context()
                )
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            conn.ehlo()
            if s.starttls and not s.ssl:
                if not conn.has_extn("starttls"):
                    raise PermanentDeliveryError(
                        "the server offers no STARTTLS; refusing to send in clear text",
                        where=self.where,
                        hint="set delivery.smtp.starttls = false only for a trusted relay",
                    )
                conn.starttls(context=self.tls_context())
                conn.ehlo()
            if s.username:
                conn.login(s.username, self.password)
        except smtplib.SMTPAuthenticationError as err:
            _quietly_close(conn)
            raise AuthError(
                f"the SMTP server refused the login ({err.smtp_code} {_text(err.smtp_error)})",
                where=self.where,
                hint="check delivery.smtp.username and NEWSLETTER_SMTP_PASSWORD",
            ) from None
        except PermanentDeliveryError:
            _quietly_close(conn)
            raise
        except ssl.SSLError as err:
            _quietly_close(conn)
            raise PermanentDeliveryError(
                f"TLS failed: {err.reason or err}", where=self.where
            ) from None
        except (OSError, smtplib.SMTPException) as err:
            _quietly_close(conn)
            raise TransientError(f"cannot connect: {err}", where=self.where) from None
        with self._lock:
            self._open.append(conn)
        return conn

    def _conn(self) -> smtplib.SMTP:
        """This worker's connection, reused while the server keeps it open."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                if conn.noop()[0] == 250:
                    return conn
            except (OSError, smtplib.SMTPException):
                pass
            self._drop(conn)
        conn = self._connect()
        self._local.conn = conn
        return conn

    def _drop(self, conn: smtplib.SMTP) -> None:
        _quietly_close(conn)
        with self._lock:
            if conn in self._open:
                self._open.remove(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    def close(self) -> None:
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                _quietly_close(conn)
        self._local = threading.local()

    # ------------------------------------------------------------------ sending

    def _transaction(
        self,
        conn: smtplib.SMTP,
        sender: str,
        rcpt: str,
        data: bytes,
        *,
        eight_bit: bool,
        utf8: bool = False,
    ) -> tuple:
        """MAIL, RCPT, DATA. Returns (code, text); raises _Lost when the link dies.
        ``utf8``: MAIL FROM carries SMTPUTF8 (RFC 6531), the RCPT a UTF-8 address."""
        during_data = False
        options = ["BODY=8BITMIME"] if eight_bit else []
        if utf8:
            options.append("SMTPUTF8")
        try:
            code, resp = conn.mail(sender, options)
            if code != 250:
                conn.rset()
                return code, _text(resp), "mail"
            code, resp = conn.rcpt(rcpt)
            if code not in (250, 251):
                conn.rset()
                return code, _text(resp), "rcpt"
            during_data = True
            try:
                code, resp = conn.data(data)
            except smtplib.SMTPDataError as err:
                # DATA itself was refused: the content was never sent
                return err.smtp_code, _text(err.smtp_error), "data"
            return code, _text(resp), "data"
        except smtplib.SMTPServerDisconnected as err:
            raise _Lost(err, during_data=during_data) from None
        except OSError as err:
            raise _Lost(err, during_data=during_data) from None

    def send_batch(
        self,
        message: OutgoingMessage,
        recipients: list[Recipient],
        *,
        provider_batch_id: str = "",
    ) -> BatchResult:
        result = BatchResult()
        conn = self._conn()  # raises before anything is sent: the whole batch is retried
        if recipients:
            logger.debug(
                "edition %s: batch of %d recipient(s), deliveries %d-%d",
                message.edition_id,
                len(recipients),
                recipients[0].delivery_id,
                recipients[-1].delivery_id,
            )
        sender = message.from_email
        for i, rec in enumerate(recipients):
            # non-ASCII before the @: SMTPUTF8 (RFC 6531) or not at all
            utf8 = needs_smtputf8(rec.email)
            for attempt in (0, 1):
                try:
                    if utf8 and not conn.has_extn("smtputf8"):
                        raise PermanentDeliveryError(
                            "the address has non-ASCII before the @, which needs SMTPUTF8 "
                            f"(RFC 6531); {self.where} does not announce SMTPUTF8"
                        )
                    # 8bit parts only to a server that announces 8BITMIME (RFC 6152)
                    has_8bitmime = conn.has_extn("8bitmime")
                    wire = render_message(message, rec, eight_bit=has_8bitmime, utf8=utf8)
                    # the RCPT as To: has it: IDNA domain (a U-label crashed smtplib)
                    rcpt = addr_spec(rec.email, utf8=utf8)
                except PermanentDeliveryError as err:  # an address no header can carry
                    code, text, phase = 0, str(err), "message"
                    break
                # a UTF-8 header makes the message 8bit whatever its parts are
                eight_bit = "8bit" in wire.encodings or (utf8 and has_8bitmime)
                try:
                    code, text, phase = self._transaction(
                        conn, sender, rcpt, wire.data, eight_bit=eight_bit, utf8=utf8
                    )
                    break
                except _Lost as lost:
                    self._drop(conn)
                    if lost.during_data:
                        result.unknown[rec.delivery_id] = (
                            f"connection lost during DATA ({lost}); the server may have "
                            "queued the message"
                        )
                        code = 0
                        break
                    try:
                        if attempt:
                            raise TransientError(f"connection lost: {lost}", where=self.where)
                        conn = self._conn()
                    except (TransientError, AuthError, PermanentDeliveryError) as err:
                        return self._rest(result, recipients[i:], str(err))
            if phase == "message":
                result.rejected[rec.delivery_id] = f"not sent: {text}"
                continue
            if code == 0:
                try:
                    conn = self._conn()
                except (TransientError, AuthError, PermanentDeliveryError) as err:
                    return self._rest(result, recipients[i + 1 :], str(err))
                continue
            reason = f"{code} {text}".strip()
            if code == 250 and phase == "data":
                result.message_ids[rec.delivery_id] = wire.message_id
            elif phase == "mail" and code >= 500:
                # the server refuses our sender: every message would fail the same way
                result.retry.update(
                    {r.delivery_id: f"sender refused: {reason}" for r in recipients[i:]}
                )
                if not result.message_ids and not result.rejected and not result.unknown:
                    raise PermanentDeliveryError(
                        f"the server refused the sender {sender}: {reason}", where=self.where
                    )
                return result
            elif 400 <= code < 500:
                result.retry[rec.delivery_id] = f"temporary failure at {phase}: {reason}"
            else:
                result.rejected[rec.delivery_id] = f"refused at {phase}: {reason}"
        if len(result.retry) == len(recipients):
            raise TransientError(
                "every message was deferred: "
                + without_addresses(next(iter(result.retry.values()))),
                where=self.where,
            )
        return result

    @staticmethod
    def _rest(result: BatchResult, rest: list[Recipient], reason: str) -> BatchResult:
        for r in rest:
            if r.delivery_id not in result.unknown:
                result.retry[r.delivery_id] = reason
        return result


def _text(resp: bytes | str) -> str:
    return resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)


def _quietly_close(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except OSError:
            pass
