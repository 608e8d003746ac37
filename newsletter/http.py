"""The one small HTTP GET used by article sources and rates providers.

stdlib only: a timeout on every call, a cap on the body size, conditional GET
headers, and errors turned into :class:`~newsletter.errors.SourceError` naming
the URL. ``file://`` URLs and plain paths are read from disk.
"""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from newsletter import __version__
from newsletter.errors import NewsletterError, SourceError

USER_AGENT = f"newsletter/{__version__} (+https://github.com/newsletter)"


@dataclass
class Response:
    url: str
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def get(
    url: str,
    *,
    timeout: float = 20.0,
    max_bytes: int = 20_000_000,
    headers: dict[str, str] | None = None,
    error: type[NewsletterError] = SourceError,
) -> Response:
    """GET ``url`` (or read a local path). Raises ``error`` with the URL on any failure."""
    if not is_url(url):
        path = Path(url[len("file://") :] if url.startswith("file://") else url)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise error(f"file is {size} bytes, over the {max_bytes}-byte limit", where=url)
            return Response(url=url, status=200, body=path.read_bytes())
        except OSError as err:
            raise error(f"cannot read: {err.strerror}", where=url) from err
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise error(
                    f"response is {length} bytes, over the {max_bytes}-byte limit", where=url
                )
            body = resp.read(max_bytes + 1)
            if len(body) > max_bytes:
                raise error(f"response is over the {max_bytes}-byte limit", where=url)
            return Response(
                url=resp.geturl(), status=resp.status, body=body, headers=dict(resp.headers.items())
            )
    except urllib.error.HTTPError as err:
        if err.code == 304:
            return Response(url=url, status=304, body=b"", headers=dict(err.headers.items()))
        if 300 <= err.code < 400:
            raise error(f"too many redirects (HTTP {err.code})", where=url) from err
        raise error(f"HTTP {err.code} {err.reason}", where=url) from err
    except urllib.error.URLError as err:
        reason = err.reason
        if isinstance(reason, TimeoutError | socket.timeout):
            raise error(f"timed out after {timeout:g}s", where=url) from err
        raise error(f"cannot connect: {reason}", where=url) from err
    except TimeoutError as err:
        raise error(f"timed out after {timeout:g}s", where=url) from err
    except (http.client.IncompleteRead, http.client.HTTPException, ConnectionError) as err:
        raise error(f"connection broken: {type(err).__name__}", where=url) from err
