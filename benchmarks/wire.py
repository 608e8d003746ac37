"""One message on the wire: what the outbox and SMTP backends build per recipient.

    .venv/bin/python benchmarks/wire.py [--messages 200]

The 30-story fixed edition (tests/data/render_edition.json) and its Russian copy
(``tests.render_data.russian_content``) are rendered once, as a send does per
variant; then ``delivery.mime.render_message`` builds the whole message (headers,
text and HTML parts, CR LF) for ``--messages`` recipients, each with its own name
and unsubscribe link, once for a server that offers 8BITMIME and once for one that
does not. Prints the median time per message, the message's size and the transfer
encodings chosen, and the HTML part's size in each encoding.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import quopri
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.delivery.backends.base import OutgoingMessage  # noqa: E402
from newsletter.delivery.mime import render_message  # noqa: E402
from newsletter.models import Recipient  # noqa: E402
from newsletter.render.compile import render  # noqa: E402
from tests.render_data import load_content, russian_content  # noqa: E402

NAMES = ("Aigerim Sadykova", "Тимур Каримов", "", "Dilnoza Yusupova")


def measure(rendered, messages: int, eight_bit: bool) -> dict:  # noqa: ANN001
    out = OutgoingMessage(
        rendered, "digest@steppe-ledger.example", "The Steppe Ledger", "", "weekly.x", "weekly", 1
    )
    times = []
    for i in range(messages):
        recipient = Recipient(
            i + 1,
            f"reader{i}@example.com",
            NAMES[i % len(NAMES)],
            f"https://steppe-ledger.example/newsletter/unsubscribe/{i:08d}.abcdefghijklmnopqrstuv",
            "",
        )
        t = time.perf_counter()
        wire = render_message(out, recipient, eight_bit=eight_bit)
        times.append(time.perf_counter() - t)
    return {
        "ms": statistics.median(times) * 1000,
        "kb": len(wire.data) / 1000,
        "encodings": "/".join(wire.encodings),
    }


def html_sizes(html: str) -> str:
    data = html.encode()
    qp = quopri.encodestring(data)
    b64 = base64.encodebytes(data)
    return (
        f"{len(data) / 1000:.0f} KB 8bit, {len(b64) / 1000:.0f} KB base64, "
        f"{len(qp) / 1000:.0f} KB quoted-printable"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200)
    args = ap.parse_args()
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, {args.messages} messages each"
    )
    for label, content in (("English", load_content(30)), ("Russian", russian_content(30))):
        rendered = render(content)
        with8 = measure(rendered, args.messages, True)
        without = measure(rendered, args.messages, False)
        print(
            f"{label}, 30 stories: with 8BITMIME {with8['ms']:.1f} ms, {with8['kb']:.0f} KB "
            f"({with8['encodings']}); without {without['ms']:.1f} ms, {without['kb']:.0f} KB "
            f"({without['encodings']}); HTML part {html_sizes(rendered.html)}"
        )


if __name__ == "__main__":
    main()
