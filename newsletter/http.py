"""The one small HTTP GET used by article sources and rates providers.

stdlib only: a timeout on every socket operation, a cap on the body size
(checked against Content-Length before reading, and again while reading, so a
50 MB answer is refused after at most ``max_bytes`` bytes), gzip, conditional
GET headers, redirects limited to http(s), and every failure turned into a
:class:`~newsletter.errors.SourceError` (or the ``error`` class given) that
names the URL. ``file://`` URLs and plain paths are read from disk.
"""

from __future__ import annotations

import http.client
import logging
import socket
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsletter import __version__
from newsletter.errors import NewsletterError, SourceError

logger = logging.getLogger(__name__)

USER_AGENT = f"newsletter/{__version__} (+https://github.com/newsletter)"

_CHUNK = 64 * 1024


class Headers(dict):
    """Response headers; lookups ignore case (servers send ``Etag`` as often as ``ETag``)."""

    def _find(self, key: object) -> object:
        if isinstance(key, str) and not dict.__contains__(self, key):
            low = key.lower()
            for k in self:
                if k.lower() == low:
                    return k
        return key

    def __getitem__(self, key: object) -> Any:
        return dict.__getitem__(self, self._find(key))

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, self._find(key))

    def get(self, key: object, default: Any = None) -> Any:
        return dict.get(self, self._find(key), default)


@dataclass
class Response:
    url: str
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=Headers)

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only: never to ftp:// or anything else."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201
        if not is_url(newurl):
            raise urllib.error.HTTPError(
                newurl, code, f"redirect to a non-HTTP URL {newurl!r}", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_HttpOnlyRedirects)


def _limit_text(max_bytes: int, limit_hint: str) -> str:
    text = f"the {max_bytes}-byte limit"
    return f"{text} ({limit_hint})" if limit_hint else text


def _read_body(
    resp: http.client.HTTPResponse,
    *,
    url: str,
    max_bytes: int,
    limit_hint: str,
    error: type[NewsletterError],
) -> bytes:
    """Read the body in chunks, stopping as soon as it passes ``max_bytes``."""
    length = resp.headers.get("Content-Length")
    expected = int(length) if length and length.isdigit() else None
    gzipped = (resp.headers.get("Content-Encoding") or "").lower() in ("gzip", "x-gzip")
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    parts: list[bytes] = []
    size = raw = 0
    while True:
        chunk = resp.read(_CHUNK)
        if not chunk:
            break
        raw += len(chunk)
        if inflate is not None:
            # never inflate more than the cap allows: a small gzip bomb stays small
            chunk = inflate.decompress(chunk, max_bytes + 1 - size)
            if inflate.unconsumed_tail:
                raise error(
                    f"response is over {_limit_text(max_bytes, limit_hint)} once unzipped",
                    where=url,
                )
        size += len(chunk)
        if size > max_bytes:
            raise error(
                f"response is over {_limit_text(max_bytes, limit_hint)}; refused", where=url
            )
        parts.append(chunk)
    if expected is not None and raw < expected:
        raise error(f"response truncated: got {raw} of {expected} bytes", where=url)
    if inflate is not None and not inflate.eof:
        raise error("response truncated: the gzip stream ends early", where=url)
    return b"".join(parts)


def get(
    url: str,
    *,
    timeout: float = 20.0,
    max_bytes: int = 20_000_000,
    headers: dict[str, str] | None = None,
    error: type[NewsletterError] = SourceError,
    limit_hint: str = "",
) -> Response:
    """GET ``url`` (or read a local path). Raises ``error`` with the URL on any failure.

    A 304 answer is returned (``not_modified``), not raised. ``limit_hint``
    names the setting behind ``max_bytes`` in the size-limit message.
    """
    if not is_url(url):
        path = Path(url[len("file://") :] if url.startswith("file://") else url)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise error(
                    f"file is {size} bytes, over {_limit_text(max_bytes, limit_hint)}", where=url
                )
            return Response(url=url, status=200, body=path.read_bytes(), headers=Headers())
        except OSError as err:
            raise error(f"cannot read: {err.strerror or err}", where=url) from err
    req = urllib.request.Request(
        url,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip", **(headers or {})},
    )
    try:
        with _opener.open(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise error(
                    f"response is {length} bytes, over {_limit_text(max_bytes, limit_hint)}; "
                    "refused without reading it",
                    where=url,
                )
            body = _read_body(
                resp, url=url, max_bytes=max_bytes, limit_hint=limit_hint, error=error
            )
            return Response(
                url=resp.geturl(),
                status=resp.status,
                body=body,
                headers=Headers(resp.headers.items()),
            )
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 304:
            return Response(url=url, status=304, body=b"", headers=Headers(err.headers.items()))
        if 300 <= err.code < 400:
            raise error(
                f"redirect loop or too many redirects (HTTP {err.code}: {err.reason})", where=url
            ) from err
        raise error(f"HTTP {err.code} {err.reason}", where=url) from err
    except urllib.error.URLError as err:
        reason = err.reason
        if isinstance(reason, TimeoutError | socket.timeout):
            raise error(f"timed out after {timeout:g}s", where=url) from err
        raise error(f"cannot connect: {reason}", where=url) from err
    except TimeoutError as err:
        raise error(f"timed out after {timeout:g}s", where=url) from err
    except http.client.IncompleteRead as err:
        raise error(
            f"response truncated: got {len(err.partial)} bytes, "
            f"{err.expected if err.expected is not None else 'more'} missing",
            where=url,
        ) from err
    except (http.client.HTTPException, ConnectionError, zlib.error) as err:
        raise error(f"connection broken: {type(err).__name__}: {err}", where=url) from err
