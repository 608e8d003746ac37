"""Subscriber import, export and validation.

CSV columns: email, name, tags, timezone, status (see subscribers/README.md).
Bad rows are reported with their line numbers and skipped; good rows are
imported. Each chunk of rows is one transaction and re-importing only updates,
so an interrupted import is resumed by running it again.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import InputError
from newsletter.models import Subscriber, slugify
from newsletter.store import Store

COLUMNS = ("email", "name", "tags", "timezone", "status")
STATUSES = ("active", "unsubscribed", "suppressed", "bounced", "complained")


def normalize_email(address: str) -> str:
    """Validated and normalized (lower case, IDNA domain); InputError when invalid."""
    try:
        info = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as err:
        raise InputError(f"invalid email {address.strip()!r}: {err}") from None
    return info.normalized.lower()


def parse_tags(text: str) -> list[str]:
    return sorted({slugify(t) for t in text.replace(",", ";").split(";") if slugify(t)})


def to_subscriber(row: dict[str, str]) -> Subscriber:
    email = normalize_email(row.get("email") or "")
    tz = (row.get("timezone") or "").strip()
    if tz:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise InputError(f"unknown time zone {tz!r}") from None
    status = (row.get("status") or "active").strip().lower() or "active"
    if status not in STATUSES:
        raise InputError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
    name = " ".join((row.get("name") or "").split())
    if len(name) > 200:
        raise InputError("name is longer than 200 characters")
    return Subscriber(
        email=email, name=name, tags=parse_tags(row.get("tags") or ""), timezone=tz, status=status
    )


@dataclass
class ImportReport:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    #: "line N: what is wrong"
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def read_rows(fh: TextIO, where: str) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(line number, row) for each data row, or (line, error message)."""
    reader = csv.DictReader(fh)
    if reader.fieldnames is None:
        raise InputError("empty file, expected a header row", where=where)
    header = [h.strip().lower() for h in reader.fieldnames]
    if "email" not in header:
        raise InputError(f"no 'email' column (columns: {', '.join(COLUMNS)})", where=where)
    unknown = set(header) - set(COLUMNS)
    if unknown:
        raise InputError(
            f"unknown columns {sorted(unknown)} (allowed: {', '.join(COLUMNS)})", where=where
        )
    reader.fieldnames = header
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield reader.line_num, f"unreadable CSV: {err}"
            continue
        if None in row:
            yield reader.line_num, "more fields than columns"
            continue
        yield reader.line_num, row


def import_csv(
    store: Store, path: str | Path, *, resubscribe: bool = False, chunk: int = 1000
) -> ImportReport:
    """Import a CSV file in chunks, streaming: memory stays flat for any size."""
    where = str(path)
    report = ImportReport()
    try:
        fh = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", where=where) from err
    with fh:
        try:
            pending: list[tuple[int, Subscriber]] = []
            for line, row in read_rows(fh, where):
                if isinstance(row, str):
                    report.errors.append(f"line {line}: {row}")
                    continue
                try:
                    sub = to_subscriber(row)
                except InputError as err:
                    report.errors.append(f"line {line}: {err.message}")
                    continue
                pending.append((line, sub))
                if len(pending) >= chunk:
                    _flush(store, pending, report, resubscribe)
                    pending = []
            _flush(store, pending, report, resubscribe)
        except UnicodeDecodeError as err:
            raise InputError(
                f"not UTF-8 text ({err.reason} at byte {err.start})", where=where
            ) from err
    return report


def _flush(
    store: Store, pending: list[tuple[int, Subscriber]], report: ImportReport, resubscribe: bool
) -> None:
    if not pending:
        return
    with store.begin() as conn:
        for _line, sub in pending:
            _, what = store.upsert_subscriber(sub, resubscribe=resubscribe, conn=conn)
            setattr(report, what, getattr(report, what) + 1)


def export_csv(subs: Iterable[Subscriber], fh: TextIO | None = None) -> str:
    """Write subscribers in the import format; returns the text when no file is given."""
    out = fh or io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for s in subs:
        w.writerow([s.email, s.name, ";".join(s.tags), s.timezone, s.status])
    return out.getvalue() if fh is None else ""  # type: ignore[union-attr]
