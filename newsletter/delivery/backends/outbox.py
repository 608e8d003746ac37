"""The file outbox: one .eml per recipient, for the demo, previews and testing.

Each file is named by its delivery id and written atomically (temporary file,
then rename), so re-sending a batch after a crash rewrites the same files and
can never deliver twice: the backend is idempotent.

A file holds exactly the bytes SMTP would send as DATA to a server that
announces 8BITMIME (as Postfix, Exim, Gmail and SES do): CR LF line ends, 8bit
parts where no line is over 998 octets (``delivery/mime.py``).
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
from pathlib import Path

from newsletter.delivery.backends.base import Backend, BatchResult, OutgoingMessage
from newsletter.delivery.mime import render_message
from newsletter.errors import DeliveryError, PermanentDeliveryError
from newsletter.models import Recipient

logger = logging.getLogger(__name__)


def private_folder(outbox: Path, name: str) -> Path:
    """``outbox/name``, both made owner-only (0700) where missing: the messages in
    them carry addresses and personal links."""
    outbox.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = outbox / name
    folder.mkdir(exist_ok=True, mode=0o700)
    return folder


def write_message(folder: Path, name: str, data: bytes) -> Path:
    """``data`` as ``folder/name``, whole or not at all (a temporary file renamed
    into place; mkstemp makes it 0600)."""
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    target = folder / name
    os.replace(tmp, target)
    return target


class OutboxBackend(Backend):
    name = "outbox"
    idempotent = True

    @functools.cached_property
    def folder(self) -> Path:
        # resolved once per backend (a realpath is a syscall per path component)
        return self.cfg.resolve(self.cfg.delivery.outbox_dir)

    def edition_folder(self, edition_id: int, *, test: bool = False) -> Path:
        return self.folder / (f"test-{edition_id}" if test else f"edition-{edition_id}")

    def send_batch(
        self,
        message: OutgoingMessage,
        recipients: list[Recipient],
        *,
        provider_batch_id: str = "",
    ) -> BatchResult:
        folder = (
            self.folder / "transactional"
            if message.transactional
            else self.edition_folder(message.edition_id, test=message.test)
        )
        result = BatchResult(message_id=f"outbox-{message.edition_id}")
        try:
            private_folder(self.folder, folder.name)
            for r in recipients:
                try:
                    data = render_message(message, r, eight_bit=True).data
                except PermanentDeliveryError as err:  # an address no header can carry
                    result.rejected[r.delivery_id] = f"not written: {err}"
                    continue
                name = f"{r.delivery_id:08d}.eml" if not message.test else f"{r.email}.eml"
                if message.transactional:
                    name = f"{time.time_ns()}-{r.email}.eml"
                write_message(folder, name, data)
        except OSError as err:
            raise DeliveryError(
                f"cannot write the outbox: {err.strerror}", where=str(folder)
            ) from err
        if recipients:
            logger.debug(
                "edition %s: batch of %d recipient(s) written, deliveries %d-%d",
                message.edition_id,
                len(recipients),
                recipients[0].delivery_id,
                recipients[-1].delivery_id,
            )
        return result
