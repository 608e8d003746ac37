"""Subscriber import, export and validation.

CSV columns: email, name, tags, timezone, status (see subscribers/README.md).
Bad rows are reported with their line numbers and skipped; good rows are
imported. The file is read as a stream and written a chunk (5,000 rows) per
transaction, so memory stays flat for any size; a big file is read and checked
in a child process while this one writes (``read_apart``). An import is resumable rather
than atomic: re-importing only updates, so an interrupted import is finished
by running it again, and the rows it had written are not lost.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import logging
import multiprocessing
import os
import re
import signal
import sys
import unicodedata
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from newsletter.audience.tokens import address_hash, address_hasher
from newsletter.errors import ConfigError, InputError, NotFoundError
from newsletter.models import Subscriber, slugify
from newsletter.states import SubscriberStatus
from newsletter.store import Store

logger = logging.getLogger(__name__)

COLUMNS = ("email", "name", "tags", "timezone", "status")
#: in the order the import's error message names them
STATUSES = tuple(
    str(s)
    for s in (
        SubscriberStatus.ACTIVE,
        SubscriberStatus.UNSUBSCRIBED,
        SubscriberStatus.SUPPRESSED,
        SubscriberStatus.BOUNCED,
        SubscriberStatus.COMPLAINED,
    )
)

MAX_NAME = 200
MAX_TAGS = 50
MAX_TAG_LENGTH = 100
#: error lines kept in a report; the rest are only counted
MAX_ERRORS_KEPT = 1000

#: a spreadsheet runs a cell that starts with one of these as a formula
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: bidirectional overrides and isolates: a name with them can display as something else
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


#: an address in the common form: an ASCII dot-atom before the @ (email-validator's
#: own DOT_ATOM_TEXT) and a domain of letters, digits, hyphens and dots
_ATEXT = r"[A-Za-z0-9_!#$%&'*+\-/=?^`{|}~]+"
_PLAIN_ADDRESS = re.compile(rf"({_ATEXT}(?:\.{_ATEXT})*)@([A-Za-z0-9.\-]+)")
#: domains (as written) that email-validator accepted, and their normalized form
_VALID_DOMAINS: dict[str, str] = {}
#: at most this many remembered: memory stays bounded; later domains are checked each time
_VALID_DOMAINS_KEPT = 10_000
#: email-validator's limit on the whole address, in octets
_MAX_ADDRESS = 254


def normalize_email(address: str, *, check_deliverability: bool = False) -> str:
    """Validated and normalized (lower case, IDNA domain); InputError when invalid.

    No DNS lookups unless ``check_deliverability``.

    email-validator decides every address, but an address of the plain form
    (``_PLAIN_ADDRESS``) whose domain it has already accepted is not sent
    through it again: for such an address the validator checks the part before
    the @ with the same pattern, the domain on its own (the cached answer) and
    the length (checked here the same way), so the answer and the normalized
    form are the same; a rejection always comes from the validator itself.
    That is most of an import's time otherwise (the domain's IDNA checks).
    (The cache assumes email-validator's module-wide defaults, such as
    ``TEST_ENVIRONMENT``, stay as they are; nothing in this project sets them.)
    """
    text = address.strip()
    plain = None if check_deliverability else _PLAIN_ADDRESS.fullmatch(text)
    if plain is not None:
        domain = _VALID_DOMAINS.get(plain[2])
        if (
            domain is not None
            and len(text) <= _MAX_ADDRESS
            and len(plain[1]) + 1 + len(domain) <= _MAX_ADDRESS
        ):
            return f"{plain[1]}@{domain}".lower()
    try:
        info = validate_email(text, check_deliverability=check_deliverability)
    except EmailNotValidError as err:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InputError(f"invalid email {shown!r}: {err}") from None
    if (
        plain is not None
        and info.domain == info.ascii_domain
        and len(_VALID_DOMAINS) < _VALID_DOMAINS_KEPT
    ):
        _VALID_DOMAINS[plain[2]] = info.domain
    return info.normalized.lower()


def parse_tags(text: str) -> list[str]:
    if len(text) <= _TAGS_CACHED_LENGTH:
        return list(_parse_tags_cached(text))
    return list(_parse_tags(text))


#: tag cells up to this long are cached (a file repeats a few tag lists many times)
_TAGS_CACHED_LENGTH = 200


@functools.lru_cache(maxsize=4096)
def _parse_tags_cached(text: str) -> tuple[str, ...]:
    return _parse_tags(text)


def _parse_tags(text: str) -> tuple[str, ...]:
    tags = sorted({slugify(t) for t in text.replace(",", ";").split(";") if slugify(t)})
    if len(tags) > MAX_TAGS:
        raise InputError(f"more than {MAX_TAGS} tags")
    long = [t for t in tags if len(t) > MAX_TAG_LENGTH]
    if long:
        raise InputError(f"tag longer than {MAX_TAG_LENGTH} characters: {long[0][:40]!r}...")
    return tuple(tags)


def _unescape_cell(value: str) -> str:
    """Undo the export's guard against spreadsheet formulas ('=x -> =x)."""
    if len(value) > 1 and value[0] == "'" and value[1] in _FORMULA_START:
        return value[1:]
    return value


def _escape_cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def clean_name(text: str) -> str:
    """A name as stored: whitespace collapsed, control characters and bidi
    overrides refused, encoded-word look-alikes neutralised (:func:`neutral_name`)."""
    name = " ".join(_unescape_cell(text.strip()).split())
    if len(name) > MAX_NAME:
        raise InputError(f"name is longer than {MAX_NAME} characters")
    if name.isprintable():
        # no Cc, Zl, Zp or bidi control (Cf) is printable: nothing to refuse or neutralise
        # but an encoded-word's start
        return name.replace("=?", "= ?")
    for ch in name:
        if ch in BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            raise InputError(f"name contains the control character U+{ord(ch):04X}")
    return neutral_name(name)


def neutral_name(name: str) -> str:
    """A name that cannot become header syntax, on any Python: control characters,
    line and paragraph separators and bidi overrides become spaces, whitespace
    is collapsed, and ``=?`` (the start of an RFC 2047 encoded-word, which a mail
    client would decode) becomes ``= ?``. Used at import and again at send, for
    names stored before this rule."""
    cleaned = "".join(
        " " if ch in BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in name
    )
    return " ".join(cleaned.split()).replace("=?", "= ?")


def check_timezone(text: str) -> str:
    tz = text.strip()
    if not tz or tz in _KNOWN_ZONES:
        return tz
    if len(tz) > 64:
        raise InputError("time zone name is too long")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"unknown time zone {tz!r}") from None
    if len(_KNOWN_ZONES) < 1000:
        _KNOWN_ZONES.add(tz)
    return tz


#: time zone names found (about 600 exist): each is looked up once
_KNOWN_ZONES: set[str] = set()


def to_subscriber(row: dict[str, str], *, check_deliverability: bool = False) -> Subscriber:
    """A validated Subscriber from one CSV row; InputError naming the problem."""
    for value in row.values():
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError("not valid UTF-8") from None
        if "\x00" in value:
            raise InputError("contains a NUL byte")
    email = normalize_email(
        _unescape_cell(row.get("email") or ""), check_deliverability=check_deliverability
    )
    status = (row.get("status") or "active").strip().lower() or "active"
    if status not in STATUSES:
        raise InputError(f"unknown status {status[:40]!r} (one of {', '.join(STATUSES)})")
    return Subscriber(
        email=email,
        name=clean_name(row.get("name") or ""),
        tags=parse_tags(row.get("tags") or ""),
        timezone=check_timezone(row.get("timezone") or ""),
        status=status,
    )


@dataclass
class ImportReport:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    #: rows skipped as bad
    rejected: int = 0
    #: rows for addresses erased on request (`subscribers forget`): reported, not imported
    forgotten: int = 0
    #: "line N: what is wrong", the first MAX_ERRORS_KEPT of them
    errors: list[str] = field(default_factory=list)

    def reject(self, line: str, message: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(f"line {line}: {message}")

    def as_dict(self) -> dict:
        return self.__dict__.copy()


#: the delimiters an import recognizes: comma, semicolon (Excel in many locales), tab
DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
#: bytes looked at to tell the encoding and the delimiter
_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class CsvFormat:
    """How a subscriber CSV is written, as detected from its first bytes."""

    encoding: str = "utf-8"
    delimiter: str = ","
    #: Excel's first line ``sep=;`` was there (and is skipped)
    sep_line: bool = False

    @property
    def encoding_name(self) -> str:
        return {"utf-8-sig": "UTF-8 with BOM", "utf-8": "UTF-8"}.get(
            self.encoding, self.encoding.upper()
        )

    def describe(self) -> str:
        return f"read as {self.encoding_name}, {_DELIMITER_NAMES[self.delimiter]}-separated"


def detect_encoding(head: bytes) -> str:
    """UTF-8 (with or without BOM) or UTF-16 (with a BOM, or without one when the
    ASCII header shows its zero bytes)."""
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"  # the BOM says which byte order; the codec reads and drops it
    sample = head[:200]
    if len(sample) >= 4 and sample.count(0) >= len(sample) // 4:
        # an ASCII header in UTF-16 without BOM: every other byte is zero
        return "utf-16-le" if sample[1] == 0 else "utf-16-be"
    return "utf-8"


def detect_format(head: bytes) -> CsvFormat:
    """Encoding, delimiter and Excel ``sep=`` line from the first bytes of a file."""
    encoding = detect_encoding(head)
    # a cut in the middle of a character at the end of the sample is not an error
    text = head.decode(encoding, errors="ignore").lstrip("\ufeff")
    lines = text.splitlines()
    first = lines[0] if lines else ""
    if first.lower().startswith("sep=") and len(first.strip()) == 5:
        sep = first.strip()[4]
        if sep in DELIMITERS:
            return CsvFormat(encoding, sep, sep_line=True)
    return CsvFormat(encoding, _pick_delimiter(first), sep_line=False)


def _pick_delimiter(header: str) -> str:
    """The delimiter that makes an ``email`` column of the header; else the most used."""
    best, best_count = ",", -1
    for d in DELIMITERS:
        fields = next(csv.reader([header], delimiter=d), [])
        if "email" in (f.strip().lower() for f in fields):
            return d
        if len(fields) - 1 > best_count:
            best, best_count = d, len(fields) - 1
    return best


def open_csv(path: str | Path, where: str) -> tuple[TextIO, CsvFormat]:
    """Open a subscriber CSV with its detected encoding; the ``sep=`` line is consumed."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(_SNIFF_BYTES)
        fmt = detect_format(head)
        # undecodable bytes become lone surrogates, so one bad row is reported, not the file
        fh = open(path, encoding=fmt.encoding, errors="surrogateescape", newline="")  # noqa: SIM115
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", where=where) from err
    if fmt.sep_line:
        fh.readline()
    return fh, fmt


def read_rows(
    fh: TextIO, where: str, fmt: CsvFormat | None = None
) -> Iterator[tuple[str, dict[str, str] | str]]:
    """(line, row) for each data row, or (line, error message).

    ``line`` is the line the record starts on ("7"), or the span of a record
    that runs over several lines ("7-9"), counted in the file (an Excel ``sep=``
    line included).
    """
    fmt = fmt or CsvFormat()
    offset = 1 if fmt.sep_line else 0
    reader = csv.reader(fh, delimiter=fmt.delimiter)
    try:
        header_row = next(reader)
    except StopIteration:
        raise InputError("empty file, expected a header row", where=where) from None
    except csv.Error as err:
        raise InputError(f"unreadable header row: {err}", where=where) from None
    except UnicodeDecodeError as err:
        raise _undecodable(err, fmt, 1 + offset, where) from None
    header = [h.strip().lower().lstrip("\ufeff") for h in header_row]
    if "email" not in header:
        found = fmt.delimiter.join(h.strip() for h in header_row)
        raise InputError(
            f"no 'email' column in the header {found[:200]!r} ({fmt.describe()}; "
            f"expected columns: {', '.join(COLUMNS)})",
            where=where,
        )
    unknown = sorted(set(header) - set(COLUMNS))
    if unknown:
        shown = ", ".join(repr(u[:40]) for u in unknown[:5])
        raise InputError(f"unknown columns {shown} (allowed: {', '.join(COLUMNS)})", where=where)
    if len(set(header)) != len(header):
        raise InputError("a column appears twice in the header", where=where)
    while True:
        start = reader.line_num + 1 + offset
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield _span(start, reader.line_num + offset), f"unreadable CSV: {err}"
            continue
        except UnicodeDecodeError as err:
            # bytes no error handler can stand in for (UTF-16 cut in the middle of a
            # character): the reader cannot go on, so the file stops here
            raise _undecodable(err, fmt, start, where) from None
        line = _span(start, reader.line_num + offset)
        if not fields or fields == [""] * len(fields):
            continue  # blank line
        if len(fields) > len(header):
            yield line, f"{len(fields)} fields, but the header has {len(header)} columns"
            continue
        yield line, dict(zip(header, fields, strict=False))


def _undecodable(err: UnicodeDecodeError, fmt: CsvFormat, line: int, where: str) -> InputError:
    return InputError(
        f"line {line}: not valid {fmt.encoding_name} ({err.reason}); the import stopped there",
        where=where,
        hint="rows before it may be imported; importing the mended file again is safe",
    )


def _span(start: int, end: int) -> str:
    return str(start) if end <= start else f"{start}-{end}"


#: an import that adds or changes at least this many rows refreshes the database's
#: statistics (PostgreSQL; see Store.refresh_statistics)
STATISTICS_AFTER = 1000


def import_csv(
    store: Store,
    path: str | Path,
    *,
    resubscribe: bool = False,
    check_deliverability: bool = False,
    chunk: int = 5000,
    secret: str = "",
    read_apart: bool | None = None,
) -> ImportReport:
    """Import a CSV file in chunks, streaming: memory stays flat for any size.

    Rows for addresses erased on request are reported and skipped; recognising
    them takes NEWSLETTER_SECRET_KEY (``secret``) once any address was erased.

    ``read_apart``: read and check the rows in a forked child process while this
    one writes (by default for files of READ_APART_BYTES and more, on Linux). The
    rows, the report and what is stored are the same either way.
    """
    where = str(path)
    report = ImportReport()
    erased = ErasedAddresses(store, secret)
    if read_apart is None:
        read_apart = _can_fork() and _size(path) >= READ_APART_BYTES
    parsed = _parsed_apart(path, where, check_deliverability) if read_apart else None
    with contextlib.closing(parsed or _parsed(path, where, check_deliverability)) as rows:
        chunks = _chunks(rows, report, erased, chunk)
        # one connection for the whole file, a transaction per chunk
        for outcomes in store.upsert_batches(chunks, resubscribe=resubscribe):
            for _id, what in outcomes:
                setattr(report, what, getattr(report, what) + 1)
    if report.inserted + report.updated >= STATISTICS_AFTER:
        # the audience queries of the next send are planned from these
        store.refresh_statistics("subscribers", "subscriptions", "subscriber_tags")
    logger.info(
        "%s: %d added, %d updated, %d unchanged, %d rejected",
        where,
        report.inserted,
        report.updated,
        report.unchanged,
        report.rejected,
    )
    return report


class ErasedAddresses:
    """Recognises rows of addresses erased on request, by their keyed hash."""

    def __init__(self, store: Store, secret: str):
        self.store, self.secret = store, secret
        self.lines: dict[str, str] = {}
        if not secret and store.has_forgotten():
            raise ConfigError(
                "NEWSLETTER_SECRET_KEY is not set",
                hint="it is needed to recognise addresses erased on request",
            )

    def drop(self, pending: dict[str, Subscriber], report: ImportReport) -> dict[str, Subscriber]:
        if not self.secret or not pending or not self.store.has_forgotten():
            # nobody was ever erased (asked again for each chunk: an erasure may come
            # in while the file is read): no row to recognise, no hash to compute
            self.lines.clear()
            return pending
        hashed = address_hasher(self.secret)
        hashes = {hashed(e): e for e in pending}
        gone = {hashes[h] for h in self.store.forgotten_among(hashes)}
        for email in sorted(gone, key=lambda e: self.lines.get(e, "")):
            report.forgotten += 1
            report.reject(
                self.lines.get(email, "?"),
                "address erased on request (subscribers forget): not imported",
            )
        self.lines.clear()
        return {e: s for e, s in pending.items() if e not in gone}


#: a file at least this big is read and checked in a process of its own (a second
#: core), while this one writes: the two halves of an import take about as long
READ_APART_BYTES = 1_000_000
#: checked rows per message from the reading process
_READ_BATCH = 1000

#: (line, the subscriber or what is wrong with the row)
Parsed = tuple[str, "Subscriber | str"]
Rows = Generator[Parsed, None, None]


def _parsed(path: str | Path, where: str, check_deliverability: bool) -> Rows:
    """Each data row of the file, checked, in order."""
    fh, fmt = open_csv(path, where)
    with fh:
        for line, row in read_rows(fh, where, fmt):
            if isinstance(row, str):
                yield line, row
                continue
            try:
                yield line, to_subscriber(row, check_deliverability=check_deliverability)
            except InputError as err:
                yield line, err.message


def _size(path: str | Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # open_csv reports it


def _can_fork() -> bool:
    # fork, not spawn: a new interpreter would first spend a second importing. Linux
    # only: macOS offers fork, but its system libraries are not safe across it
    return sys.platform.startswith("linux")


def _read_apart(out: Connection, path: str, where: str, check_deliverability: bool) -> None:
    """The child process: :func:`_parsed` in batches down the pipe, then None."""
    # Ctrl-C is the parent's to handle; it closes the pipe, which ends this process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        batch: list[tuple[str, Any]] = []
        for line, item in _parsed(path, where, check_deliverability):
            if isinstance(item, str):
                batch.append((line, item))
            else:
                fields = (item.email, item.name, item.tags, item.timezone, item.status)
                batch.append((line, fields))
            if len(batch) >= _READ_BATCH:
                out.send(batch)
                batch = []
        out.send(batch)
        out.send(None)
    except InputError as err:
        # sent as its fields: an exception with keyword arguments does not unpickle
        out.send({"message": err.message, "where": err.where, "hint": err.hint})
    except BrokenPipeError:
        pass  # the parent stopped reading (an error, or the import was interrupted)
    finally:
        out.close()


def _parsed_apart(path: str | Path, where: str, check_deliverability: bool) -> Rows:
    """What :func:`_parsed` yields, read and checked by a child process."""
    ctx = multiprocessing.get_context("fork")
    rows, out = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=_read_apart,
        args=(out, str(path), where, check_deliverability),
        name="newsletter-import-reader",
        daemon=True,
    )
    child.start()
    out.close()
    try:
        while True:
            try:
                batch = rows.recv()
            except EOFError:
                raise InputError(
                    f"the process reading the file stopped (exit code {child.exitcode})",
                    where=where,
                ) from None
            if batch is None:
                return
            if isinstance(batch, dict):
                raise InputError(**batch)
            for line, item in batch:
                yield line, item if isinstance(item, str) else Subscriber(*item)
    finally:
        rows.close()  # a child still writing gets a broken pipe and ends
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
            child.join()


def _chunks(
    rows: Iterable[Parsed], report: ImportReport, erased: ErasedAddresses, size: int
) -> Iterator[list[Subscriber]]:
    """The valid rows, ``size`` distinct addresses at a time; bad rows go to ``report``."""
    pending: dict[str, Subscriber] = {}
    for line, sub in rows:
        if isinstance(sub, str):
            report.reject(line, sub)
            continue
        if sub.email in pending or len(pending) >= size:
            # a later row for the same address updates it, as a re-import would
            kept = erased.drop(pending, report)
            if kept:
                yield list(kept.values())
            pending = {}
        pending[sub.email] = sub
        erased.lines[sub.email] = line
    kept = erased.drop(pending, report)
    if kept:
        yield list(kept.values())


def add_subscriber(
    store: Store,
    email: str,
    *,
    name: str = "",
    tags: str = "",
    timezone: str = "",
    resubscribe: bool = False,
    secret: str = "",
) -> tuple[Subscriber, str]:
    """Add or update one subscriber, validated like an import row. Returns (it, outcome).

    An address erased on request is refused unless ``resubscribe`` (the person
    asked again); that lifts its marker.
    """
    sub = to_subscriber({"email": email, "name": name, "tags": tags, "timezone": timezone})
    if secret or store.has_forgotten():
        hashed = address_hash(ErasedAddresses(store, secret).secret, sub.email)
        if store.forgotten_among([hashed]):
            if not resubscribe:
                raise InputError(
                    "this address was erased on request; add it again only with the "
                    "person's consent (--resubscribe)",
                    where=sub.email,
                )
            store.unforget(hashed)
    ((sid, what),) = store.upsert_subscribers([sub], resubscribe=resubscribe, consent_source="cli")
    stored = store.get_subscriber(id=sid)
    assert stored is not None
    return stored, what


def remove_subscriber(store: Store, email: str) -> str:
    """Remove a subscriber by address; NotFoundError if there is none. Returns the address."""
    address = normalize_email(email)
    if not store.remove_subscriber(address):
        raise NotFoundError("no such subscriber", where=address)
    return address


def export_csv(subs: Iterable[Subscriber], fh: TextIO | None = None) -> str:
    """Write subscribers in the import format; returns the text when no file is given.

    A cell that a spreadsheet would run as a formula gets a leading ``'``;
    importing the file again removes it.
    """
    buf = io.StringIO() if fh is None else None
    out: TextIO = fh if fh is not None else buf  # type: ignore[assignment]
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for s in subs:
        w.writerow(
            [_escape_cell(v) for v in (s.email, s.name, ";".join(s.tags), s.timezone, s.status)]
        )
    return buf.getvalue() if buf is not None else ""
