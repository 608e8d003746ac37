"""The contract of a rates provider.

``fetch(day)`` returns what the provider publishes for ``day`` as
:class:`Quote` objects: how many units of the provider's base currency one
``nominal`` of a currency costs. Turning quotes into XXX/USD cross rates is
shared code (:func:`newsletter.rates.cross.cross_rates`), not each provider's,
and so is deciding whether the day it answered for is acceptable
(:mod:`newsletter.rates.service`).

A provider that fails for any reason (network, HTTP status, a body that is
not what it should be) raises :class:`~newsletter.errors.RatesError`; the
helpers below turn the usual parse errors into one.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from newsletter import http
from newsletter.config import RatesConfig
from newsletter.errors import RatesError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: digits every division keeps; far beyond what any bank publishes
PRECISION = 28

#: no central bank's daily rates come near this
MAX_BYTES = 2_000_000


@dataclass(frozen=True)
class Quote:
    """``nominal`` units of ``currency`` cost ``value`` units of the provider's base."""

    currency: str
    value: Decimal
    nominal: Decimal = Decimal(1)
    #: the provider's own published day change of ``value``, in base units, if any
    change: Decimal | None = None
    #: significant digits the figure is good to, when not simply those written
    #: in ``value`` (a peg is exact; the snapshot writes its figure as the nominal)
    digits: int | None = None

    @property
    def per_unit(self) -> Decimal:
        return self.value / self.nominal


@dataclass(frozen=True)
class Quotes:
    source: str
    base: str
    day: date
    quotes: dict[str, Quote]


class RatesProvider(abc.ABC):
    #: the name used in the config and stored with each rate
    name: str = ""
    #: what the header shows as the figure's source
    label: str = ""
    #: the currency this provider's bank issues ("KZT" for the National Bank of
    #: Kazakhstan): for that currency it is asked first ([rates] issuer_first)
    home: str = ""
    #: base URL, overridable per provider in ``[rates] urls``
    default_url: str = ""
    #: how many days after the asked day an answer may be dated (a bank that
    #: publishes tomorrow's official rate in the afternoon)
    days_ahead: int = 0
    #: False for a recording (the snapshot): its old figures are served and
    #: marked "as of", rather than counted as a wrong-date failure
    checks_age: bool = True
    #: whether ``fetch`` can answer for a past day (to fill a hole in history)
    archive: bool = True

    def __init__(self, cfg: RatesConfig):
        self.cfg = cfg

    @property
    def base_url(self) -> str:
        return self.cfg.urls.get(self.name, self.default_url).rstrip("/")

    @abc.abstractmethod
    def fetch(self, day: date) -> Quotes:
        """The provider's quotes for ``day``; RatesError when it has none."""

    # ------------------------------------------------------------------ helpers

    def download(self, url: str) -> bytes:
        """GET ``url``; any failure (timeout, 5xx, refused) is a RatesError naming it."""
        resp = http.get(url, timeout=self.cfg.timeout, max_bytes=MAX_BYTES, error=RatesError)
        if not resp.body.strip():
            raise RatesError("empty response", where=url)
        return resp.body

    @contextlib.contextmanager
    def garbage(self, where: str) -> Iterator[None]:
        """Parse errors inside the block become "not a valid ... response"."""
        try:
            yield
        except RatesError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
            raise RatesError(
                f"not a valid {self.label} response: {type(err).__name__}: {err}", where=where
            ) from err


def parse_xml(body: bytes, where: str) -> ET.Element:
    """The root element; the declared encoding (windows-1251 too) is honoured.

    Rates feeds never need a DTD, so one is refused rather than expanded.
    """
    head = body[:2048].lower()
    if b"<!doctype" in head or b"<!entity" in head:
        raise RatesError("refusing an XML document with a DTD", where=where)
    try:
        return ET.fromstring(body)
    except ET.ParseError as err:
        raise RatesError(f"not well-formed XML: {err}", where=where) from err


def number(text: object, what: str) -> Decimal:
    """A published figure as Decimal; '87,4500' and '+0.02' are understood."""
    raw = (
        ("" if text is None else str(text))
        .strip()
        .replace("\u00a0", "")
        .replace(" ", "")
        .replace(",", ".")
    )
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{what}: not a number: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"{what}: not a number: {text!r}")
    return value


def dotted_date(text: str | None, what: str) -> date:
    """'24.05.2026' -> date(2026, 5, 24)."""
    try:
        return datetime.strptime((text or "").strip(), "%d.%m.%Y").date()
    except ValueError:
        raise ValueError(f"{what}: not a DD.MM.YYYY date: {text!r}") from None


def positive(value: Decimal, what: str) -> Decimal:
    if value <= 0:
        raise ValueError(f"{what}: must be more than 0, got {value}")
    return value


def read_items(items: Iterable[T], read: Callable[[T], Quote], where: str) -> dict[str, Quote]:
    """Each item read by ``read``; an unreadable item is skipped with a warning, so
    one garbled currency does not take the others down. None readable: RatesError."""
    out: dict[str, Quote] = {}
    for i, item in enumerate(items):
        try:
            q = read(item)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            logger.warning("rates: %s: item %d skipped: %s", where, i + 1, err)
            continue
        if q.currency in out:
            logger.warning("rates: %s: %s listed twice; the first is kept", where, q.currency)
            continue
        out[q.currency] = q
    if not out:
        raise RatesError("no rates in the response", where=where)
    return out


def significant_digits(value: Decimal) -> int:
    """Significant digits as written: '0.0073' -> 2, '87.4500' -> 6."""
    digits = value.as_tuple().digits
    return len(digits) - next((i for i, d in enumerate(digits) if d), len(digits))
