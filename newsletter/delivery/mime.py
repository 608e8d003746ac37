"""RFC 5322 messages: multipart/alternative (text + HTML) with list headers."""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from newsletter.delivery.backends.base import OutgoingMessage
from newsletter.models import Recipient
from newsletter.render.personalize import NAME, PREFERENCES_URL, UNSUBSCRIBE_URL, personalize


def list_unsubscribe(message: OutgoingMessage, recipient: Recipient) -> str:
    parts = [f"<{recipient.unsubscribe_url}>"]
    if message.unsubscribe_mailto:
        parts.append(f"<mailto:{message.unsubscribe_mailto}?subject=unsubscribe>")
    return ", ".join(parts)


def list_headers(message: OutgoingMessage, recipient: Recipient) -> dict[str, str]:
    """List-Unsubscribe (https one-click + mailto), RFC 8058's POST header, List-Id."""
    return {
        "List-Unsubscribe": list_unsubscribe(message, recipient),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": f"<{message.list_id}>",
    }


def recipient_values(recipient: Recipient) -> dict[str, str]:
    return {
        UNSUBSCRIBE_URL: recipient.unsubscribe_url,
        PREFERENCES_URL: recipient.unsubscribe_url,
        NAME: recipient.name,
    }


def build_message(message: OutgoingMessage, recipient: Recipient) -> EmailMessage:
    r = message.rendered
    values = recipient_values(recipient)
    msg = EmailMessage()
    subject = f"[TEST] {r.subject}" if message.test else r.subject
    msg["Subject"] = subject
    msg["From"] = Address(message.from_name, addr_spec=message.from_email)
    msg["To"] = Address(recipient.name, addr_spec=recipient.email)
    if message.reply_to:
        msg["Reply-To"] = message.reply_to
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    domain = message.from_email.rpartition("@")[2] or "localhost"
    msg["Message-ID"] = make_msgid(idstring=f"d{recipient.delivery_id}", domain=domain)
    for k, v in list_headers(message, recipient).items():
        msg[k] = v
    msg["X-Newsletter-Delivery"] = str(recipient.delivery_id)
    msg.set_content(
        personalize(r.text, values, html_part=False), subtype="plain", cte="quoted-printable"
    )
    msg.add_alternative(
        personalize(r.html, values, html_part=True), subtype="html", cte="quoted-printable"
    )
    return msg
