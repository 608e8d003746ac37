"""An email to the editors when a scheduled run fails.

Deliberately plain: one text message through SMTP (the ``[delivery.smtp]``
settings, password from ``NEWSLETTER_SMTP_PASSWORD``) or, with the file outbox,
a ``.eml`` in ``<outbox_dir>/alerts/``. It does not go through the delivery
backend on purpose: the backend may be the very thing that failed.

An alert that cannot be sent is logged; it never changes the run's outcome.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from newsletter.config import Config
from newsletter.delivery.backends.outbox import private_folder, write_message

logger = logging.getLogger(__name__)


def channel(cfg: Config) -> str:
    """How alerts go out: smtp or outbox."""
    if cfg.alerts.via:
        return cfg.alerts.via
    return "outbox" if cfg.delivery.backend == "outbox" else "smtp"


def build_alert(cfg: Config, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = cfg.site.from_email
    msg["To"] = ", ".join(cfg.alerts.email_to)
    msg["Subject"] = cfg.secrets.redact(subject)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=cfg.site.from_email.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(cfg.secrets.redact(body))
    return msg


def _send_smtp(cfg: Config, msg: EmailMessage) -> str:
    smtp = cfg.delivery.smtp
    context = ssl.create_default_context()
    client = (
        smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=context)
        if smtp.ssl
        else smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    )
    with client:
        if smtp.starttls and not smtp.ssl:
            client.starttls(context=context)
        if smtp.username:
            client.login(smtp.username, cfg.secrets.smtp_password)
        client.send_message(msg)
    return f"smtp://{smtp.host}:{smtp.port}"


def _write_outbox(cfg: Config, msg: EmailMessage) -> str:
    # owner-only, as the backend makes them: the alert may be the outbox's first file,
    # and the editions' folders (addresses, personal links) go into the same outbox
    folder = private_folder(cfg.resolve(cfg.delivery.outbox_dir), "alerts")
    name = f"{time.time_ns()}.eml"
    return str(write_message(folder, name, msg.as_bytes()))


def send_alert(cfg: Config, subject: str, body: str) -> str:
    """Send one alert to ``alerts.email_to``. Returns where it went, "" if it did not."""
    if not cfg.alerts.email_to:
        return ""
    msg = build_alert(cfg, subject, body)
    how = channel(cfg)
    try:
        where = _send_smtp(cfg, msg) if how == "smtp" else _write_outbox(cfg, msg)
    except (OSError, smtplib.SMTPException) as err:
        logger.error(
            "could not send the failure alert via %s: %s", how, cfg.secrets.redact(str(err))
        )
        return ""
    logger.info("failure alert sent to %s via %s", ", ".join(cfg.alerts.email_to), where)
    return where


def hostname() -> str:
    return socket.gethostname()
