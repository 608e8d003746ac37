"""Subscriber import, export and the CLI: validation, hostile rows, re-imports, suppression."""

import csv
import io
import json

import pytest
from click.testing import CliRunner

from newsletter.audience.subscribers import export_csv, import_csv
from newsletter.cli import cli
from newsletter.errors import InputError
from newsletter.models import Subscriber

HEADER = "email,name,tags,timezone,status\n"


def write(tmp_path, text, name="subs.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_the_sample_file_imports_cleanly(store):
    from tests.helpers import ROOT

    report = import_csv(store, ROOT / "subscribers" / "sample.csv")
    assert report.errors == [] and report.inserted == 24
    erlan = store.get_subscriber("erlan.nurpeisov@example.com")  # was Erlan.Nurpeisov@…
    assert erlan.name == "Ерлан Нұрпейісов" and erlan.tags == ["energy", "kazakhstan"]
    assert store.get_subscriber("d.okonkwo@example.net").status == "bounced"


def test_addresses_are_unique_regardless_of_case_and_reimport_updates(store, tmp_path):
    f = write(tmp_path, HEADER + "Ana@Example.COM,Ana,Kazakhstan,Asia/Almaty,\n")
    assert import_csv(store, f).inserted == 1
    g = write(tmp_path, HEADER + "ana@example.com,Ana B,energy;Kazakhstan,,\n", "b.csv")
    report = import_csv(store, g)
    assert (report.inserted, report.updated) == (0, 1)
    again = import_csv(store, g)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 1)
    subs = list(store.iter_subscribers())
    assert [(s.email, s.name, s.tags, s.timezone) for s in subs] == [
        ("ana@example.com", "Ana B", ["energy", "kazakhstan"], "")
    ]


def test_the_same_address_twice_in_one_file_is_one_subscriber_the_later_row_wins(store, tmp_path):
    f = write(tmp_path, HEADER + "x@example.com,First,,,\nX@EXAMPLE.com,Second,,,\n")
    report = import_csv(store, f)
    assert (report.inserted, report.updated) == (1, 1)
    assert [s.name for s in store.iter_subscribers()] == ["Second"]


def test_suppressed_addresses_stay_suppressed_unless_resubscribe(store, tmp_path):
    store.upsert_subscribers(
        [
            Subscriber(email="gone@example.com", status="unsubscribed"),
            Subscriber(email="bounce@example.com", status="bounced"),
        ]
    )
    f = write(tmp_path, HEADER + "gone@example.com,,,,active\nbounce@example.com,,,,\n")
    import_csv(store, f)
    assert store.get_subscriber("gone@example.com").status == "unsubscribed"
    assert store.get_subscriber("bounce@example.com").status == "bounced"
    import_csv(store, f, resubscribe=True)
    assert store.get_subscriber("gone@example.com").status == "active"
    assert store.get_subscriber("bounce@example.com").status == "active"


def test_a_file_can_suppress_an_address(store, tmp_path):
    store.upsert_subscribers([Subscriber(email="a@example.com")])
    import_csv(store, write(tmp_path, HEADER + "a@example.com,,,,unsubscribed\n"))
    assert store.get_subscriber("a@example.com").status == "unsubscribed"


HOSTILE = (
    HEADER
    + "good1@example.com,Good One,,,\n"  # line 2
    + "not-an-email,X,,,\n"  # 3
    + 'evil@example.com,=HYPERLINK("http://x"),,,\n'  # 4: imported, escaped on export
    + "nul@example.com,a\x00b,,,\n"  # 5
    + "bidi@example.com,\u202eevil,,,\n"  # 6
    + "ctrl@example.com,bell\x07,,,\n"  # 7
    + "tz@example.com,,,Mars/Olympus,\n"  # 8
    + "path@example.com,,,../../etc/passwd,\n"  # 9
    + "status@example.com,,,,vip\n"  # 10
    + "many@example.com,,a,b,c,d,e\n"  # 11: too many fields
    + '"multi@example.com","Line\nbreak",,,\n'  # 12-13: one record over two lines
    + "long@example.com,"
    + "n" * 300
    + ",,,\n"  # 14
    + "tags@example.com,,"
    + ";".join(f"t{i}" for i in range(60))
    + ",,\n"  # 15
    + "<script>@example.com,,,,\n"  # 16
    + "\n"  # 17: blank
    + "good2@example.com,Good Two,,,\n"  # 18
    + '"unterminated@example.com,oops\n'  # 19: quote never closed, runs to the end
    + "late@example.com,,,,\n"
)


def test_hostile_rows_are_reported_by_line_and_skipped(sqlite_store, tmp_path):
    report = import_csv(sqlite_store, write(tmp_path, HOSTILE))
    emails = sorted(s.email for s in sqlite_store.iter_subscribers())
    assert emails == [
        "evil@example.com",
        "good1@example.com",
        "good2@example.com",
        "multi@example.com",
    ]
    lines = [e.split(":")[0] for e in report.errors]
    assert lines == [
        "line 3",
        "line 5",
        "line 6",
        "line 7",
        "line 8",
        "line 9",
        "line 10",
        "line 11",
        "line 14",
        "line 15",
        "line 16",
        "line 19-20",  # the open quote swallowed the next line: both reported, not imported
    ]
    assert report.rejected == 12 and report.inserted == 4
    assert "NUL" in report.errors[1] and "U+202E" in report.errors[2]
    assert "unknown time zone" in report.errors[4]
    assert "7 fields, but the header has 5 columns" in report.errors[7]
    assert sqlite_store.get_subscriber("multi@example.com").name == "Line break"


def test_invalid_utf8_rejects_the_row_not_the_file(sqlite_store, tmp_path):
    raw = (HEADER + "a@example.com,Ok,,,\n").encode() + b"b@example.com,\xff\xfe,,,\n"
    raw += b"c@example.com,Fine,,,\n"
    report = import_csv(sqlite_store, write(tmp_path, raw))
    assert report.errors == ["line 3: not valid UTF-8"]
    assert sorted(s.email for s in sqlite_store.iter_subscribers()) == [
        "a@example.com",
        "c@example.com",
    ]


def test_an_oversized_field_is_one_bad_row(sqlite_store, tmp_path):
    text = HEADER + "a@example.com,ok,,,\n" + "b@example.com," + "x" * 200_000 + ",,,\n"
    text += "c@example.com,ok,,,\n"
    report = import_csv(sqlite_store, write(tmp_path, text))
    assert len(report.errors) == 1 and "field larger than field limit" in report.errors[0]
    assert report.errors[0].startswith("line 3")
    assert sorted(s.email for s in sqlite_store.iter_subscribers()) == [
        "a@example.com",
        "c@example.com",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty file"),
        ("name,tags\nx,y\n", "no 'email' column"),
        ("email,phone\n", "unknown columns 'phone'"),
        ("email,email\n", "a column appears twice"),
    ],
)
def test_a_bad_header_stops_the_import_naming_the_file(sqlite_store, tmp_path, text, message):
    f = write(tmp_path, text)
    with pytest.raises(InputError, match=message) as err:
        import_csv(sqlite_store, f)
    assert err.value.where == str(f)


def test_a_bom_and_columns_in_any_order_and_case_are_fine(sqlite_store, tmp_path):
    f = write(tmp_path, "\ufeffStatus,EMAIL,Name\nactive,z@example.com,Zed\n")
    assert import_csv(sqlite_store, f).inserted == 1
    assert sqlite_store.get_subscriber("z@example.com").name == "Zed"


def test_export_guards_against_formulas_and_round_trips(sqlite_store, tmp_path):
    sqlite_store.upsert_subscribers(
        [
            Subscriber(email="evil@example.com", name='=HYPERLINK("http://x")', tags=["a", "b"]),
            Subscriber(email="+plus@example.com", name="-5", timezone="Asia/Almaty"),
        ]
    )
    text = export_csv(sqlite_store.iter_subscribers())
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1][1] == '\'=HYPERLINK("http://x")'
    assert rows[2][:2] == ["'+plus@example.com", "'-5"]
    before = [
        (s.email, s.name, s.tags, s.timezone, s.status) for s in sqlite_store.iter_subscribers()
    ]
    report = import_csv(sqlite_store, write(tmp_path, text))
    assert report.errors == [] and report.unchanged == 2
    after = [
        (s.email, s.name, s.tags, s.timezone, s.status) for s in sqlite_store.iter_subscribers()
    ]
    assert after == before


def test_an_import_resumes_after_an_interruption(store, tmp_path, monkeypatch):
    rows = "".join(f"user{i}@example.com,User {i},,,\n" for i in range(25))
    f = write(tmp_path, HEADER + rows)
    calls = {"n": 0}
    real = store.upsert_subscribers

    def crash_on_third_chunk(subs, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("power cut")
        return real(subs, **kw)

    monkeypatch.setattr(store, "upsert_subscribers", crash_on_third_chunk)
    with pytest.raises(RuntimeError):
        import_csv(store, f, chunk=10)
    assert len(list(store.iter_subscribers())) == 20  # two committed chunks kept
    monkeypatch.setattr(store, "upsert_subscribers", real)
    report = import_csv(store, f, chunk=10)
    assert (report.inserted, report.unchanged) == (5, 20)
    assert len(list(store.iter_subscribers())) == 25


# ------------------------------------------------------------------ the CLI


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_cli_import_reports_counts_and_bad_lines_with_exit_3(project):
    (project / "bad.csv").write_text(HEADER + "ok@example.com,,,,\nnope,,,,\n", encoding="utf-8")
    r = run("subscribers", "import", "bad.csv")
    assert r.exit_code == 3
    assert "bad.csv: 1 added, 0 updated, 0 unchanged, 1 rejected" in r.output
    assert "bad.csv: line 3: invalid email 'nope'" in r.output
    (project / "allbad.csv").write_text(HEADER + "nope,,,,\n", encoding="utf-8")
    assert run("subscribers", "import", "allbad.csv").exit_code == 1


def test_cli_add_list_export_remove(project):
    assert run("subscribers", "import", "subscribers.csv").exit_code == 0
    r = run("subscribers", "add", "New@Example.com", "--name", "New", "--tags", "Energy, Water")
    assert r.exit_code == 0 and r.output == "new@example.com: inserted\n"
    r = run("subscribers", "add", "emma.lindqvist@example.net")
    assert "still unsubscribed; --resubscribe to change" in r.output
    r = run("subscribers", "add", "bad@example.com", "--timezone", "Nowhere/Land")
    assert r.exit_code == 2 and "unknown time zone" in r.output

    r = run("subscribers", "list", "--tag", "energy", "--json")
    data = json.loads(r.output)
    assert "new@example.com" in [d["email"] for d in data]
    assert all("energy" in d["tags"] for d in data)
    r = run("subscribers", "list", "--status", "unsubscribed")
    assert r.output.splitlines()[-1] == "1 subscribers"
    assert "emma.lindqvist@example.net" in r.output
    assert json.loads(run("subscribers", "list", "--status", "complained", "--json").output) == []

    r = run("subscribers", "export", "--status", "bounced")
    assert (
        r.output
        == HEADER
        + "d.okonkwo@example.net,David Okonkwo,politics;security,America/New_York,bounced\n"
    )

    assert run("subscribers", "remove", "NEW@example.com").output == "new@example.com: removed\n"
    r = run("subscribers", "remove", "new@example.com")
    assert r.exit_code == 1 and "new@example.com: no such subscriber" in r.output


# ------------------------------------------------------- what spreadsheets write

ROWS = [
    ["email", "name", "tags", "timezone", "status"],
    ["ana@example.com", "Ана Иванова", "energy;kazakhstan", "Asia/Almaty", ""],
    ["bo@example.com", "Bo, Jr.", "uzbekistan", "", ""],
]


def as_csv(delimiter: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(ROWS)
    return out.getvalue()


@pytest.mark.parametrize(
    "delimiter, prefix, encoding",
    [
        (",", "", "utf-8"),
        (",", "", "utf-8-sig"),
        (";", "", "utf-8"),
        (";", "sep=;\r\n", "utf-8-sig"),  # Excel "CSV UTF-8" in a comma-decimal locale
        ("\t", "", "utf-16"),  # Excel "Unicode Text": UTF-16 LE with BOM, tabs
        (";", "sep=;\r\n", "utf-16"),
        (",", "", "utf-16-le"),  # no BOM
        ("\t", "", "utf-16-be"),
    ],
    ids=lambda v: repr(v),
)
def test_delimiter_and_encoding_are_detected(sqlite_store, tmp_path, delimiter, prefix, encoding):
    path = tmp_path / "subs.csv"
    path.write_bytes((prefix + as_csv(delimiter)).encode(encoding))
    report = import_csv(sqlite_store, path)
    assert (report.inserted, report.rejected, report.errors) == (2, 0, [])
    ana = sqlite_store.get_subscriber("ana@example.com")
    assert ana.name == "Ана Иванова" and ana.tags == ["energy", "kazakhstan"]
    assert sqlite_store.get_subscriber("bo@example.com").name == "Bo, Jr."


def test_line_numbers_count_the_sep_line(sqlite_store, tmp_path):
    path = write(tmp_path, "sep=;\n" + HEADER.replace(",", ";") + "not-an-address;X;;;\n")
    report = import_csv(sqlite_store, path)
    assert report.rejected == 1 and report.errors[0].startswith("line 3:")


def test_without_an_email_column_the_error_names_the_header_it_found(sqlite_store, tmp_path):
    path = tmp_path / "subs.csv"
    path.write_bytes("E-Mail;Name;Tags\r\nana@example.com;Ana;\r\n".encode("utf-16"))
    with pytest.raises(InputError) as err:
        import_csv(sqlite_store, path)
    assert str(err.value) == (
        f"{path}: no 'email' column in the header 'E-Mail;Name;Tags' "
        "(read as UTF-16, semicolon-separated; expected columns: "
        "email, name, tags, timezone, status)"
    )


@pytest.mark.parametrize("tail", [b"", b"x"], ids=["header-only", "after-rows"])
def test_utf16_cut_in_the_middle_of_a_character_is_one_line_error(sqlite_store, tmp_path, tail):
    # a UTF-16 file with an odd number of bytes: the last character is cut in half
    path = tmp_path / "subs.csv"
    body = "email\r\n" + ("ana@example.com\r\n" if tail else "")
    path.write_bytes(body.encode("utf-16")[: None if tail else -1] + tail)
    with pytest.raises(InputError) as err:
        import_csv(sqlite_store, path)
    assert err.value.where == str(path)
    assert "not valid UTF-16" in err.value.message and "truncated data" in err.value.message


# ------------------------------------------------- the fast paths change nothing


def _validator_says(text: str) -> str:
    """email-validator's own answer: the normalized address, or 'invalid'."""
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(text.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return "invalid"


def _ours(text: str) -> str:
    from newsletter.audience.subscribers import normalize_email

    try:
        return normalize_email(text)
    except InputError:
        return "invalid"


EDGE_ADDRESSES = [
    "a@example.com",
    "A.B+c@Example.COM",
    "a..b@example.com",  # the validator refuses a double dot
    ".a@example.com",
    "a.@example.com",
    "a@example.com.",
    "a@-example.com",
    "a@example-.com",
    "a@ex--ample.com",
    "a@xn--80ak6aa92e.com",  # an IDNA domain: normalized to Unicode, not cached
    "a@xn--zz.com",  # not valid punycode
    "a@localhost",
    "a@example",  # no dot
    "a@example.test",  # special-use domains
    "a@example.invalid",
    "a@example.local",
    "a@example.onion",
    "a@example.123",  # numeric top-level domain
    "a@123.example.com",
    "a@" + "x" * 63 + ".com",
    "a@" + "x" * 64 + ".com",  # a label over 63
    "a@" + ".".join(["x" * 60] * 4) + ".com",  # a domain over 253
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",  # over 64 before the @ passes unless strict
    "x" * 240 + "@example.com",
    "x" * 250 + "@example.com",  # over 254 in all
    "Postmaster@Example.com",
    '"quoted"@example.com',
    "a b@example.com",
    "Name <a@example.com>",
    "a@[127.0.0.1]",
    "ärger@example.com",
    "a@bücher.de",
    "a@@example.com",
    "@example.com",
    "a@",
    "a@example.com ",
    "a\u0301@example.com",
]


@pytest.mark.parametrize("text", EDGE_ADDRESSES)
def test_normalize_email_gives_the_validators_answer_first_and_cached(text):
    expected = _validator_says(text)
    # the first time through the validator (which may cache the domain), then cached
    assert (_ours(text), _ours(text)) == (expected, expected)


def test_normalize_email_agrees_with_the_validator_on_random_addresses():
    import random

    rnd = random.Random(17)
    pieces = ["a", "B", "z", "0", "9", ".", "-", "_", "+", "'", "xn--", "@", "com", "test"]
    pieces += ["local", "1", "ä", " ", '"', "..", "--", "localhost", "example", "-", "ь"]
    domains = ["example.com", "Example.COM", "ex-ample.org", "a.b.c.io", "xn--80ak6aa92e.com",
               "example.test", "localhost", "ex--ample.com", "123.45", "mail.example.123",
               "example.com.", "-bad.com", "x.y"]  # fmt: skip
    for _ in range(3000):
        local = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 6)))
        domain = (
            rnd.choice(domains)
            if rnd.random() < 0.7
            else "".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 6)))
        )
        text = f"{local}@{domain}" if rnd.random() < 0.9 else local + domain
        expected = _validator_says(text)
        assert (_ours(text), _ours(text)) == (expected, expected), text


def test_names_tags_and_zones_take_the_same_checks_every_time(sqlite_store, tmp_path):
    # the cached paths (tags, zones) and the printable-name path give what the full ones do
    rows = (
        "a@example.com,Ana =?utf-8?q?x?=,Energy;kazakhstan,Asia/Almaty,\n"
        "b@example.com,\u0410\u043d\u0430\u00a0B,Energy;kazakhstan,Asia/Almaty,\n"  # NBSP
        "c@example.com,x\u202ey,,,\n"  # bidi override: refused
        "d@example.com,,energy;KAZAKHSTAN,Mars/Base,\n"  # unknown zone: refused
        "e@example.com,,energy;KAZAKHSTAN,Mars/Base,\n"  # refused again, not cached
        "f@example.com,," + ";".join(f"t{i}" for i in range(51)) + ",,\n"  # too many tags
        "g@example.com,," + ";".join(f"t{i}" for i in range(51)) + ",,\n"  # refused again
    )
    report = import_csv(sqlite_store, write(tmp_path, HEADER + rows))
    assert [e.split(":")[0] for e in report.errors] == [
        "line 4",
        "line 5",
        "line 6",
        "line 7",
        "line 8",
    ]
    a, b = (sqlite_store.get_subscriber(e) for e in ("a@example.com", "b@example.com"))
    assert a.name == "Ana = ?utf-8?q?x?=" and b.name == "\u0410\u043d\u0430 B"
    assert a.tags == b.tags == ["energy", "kazakhstan"]
    assert a.timezone == b.timezone == "Asia/Almaty"


def test_imported_rows_carry_consent_and_read_back_whole(store, tmp_path):
    f = write(
        tmp_path,
        HEADER
        + 'ana@example.com,"Ana \\N \t""K"" 😀",energy,Asia/Almaty,\n'  # COPY's escapes
        + "bo@example.com,Bo,,,unsubscribed\n",
    )
    assert import_csv(store, f).inserted == 2
    ana, bo = (store.person(e) for e in ("ana@example.com", "bo@example.com"))
    sub = ana.subscriber
    assert (sub["name"], sub["timezone"], sub["status"], sub["status_reason"]) == (
        'Ana \\N "K" 😀',
        "Asia/Almaty",
        "active",
        "",
    )
    assert sub["created_at"] == sub["updated_at"] and sub["created_at"].endswith("+00:00")
    assert ana.tags == ["energy"] and bo.tags == []
    assert bo.subscriber["status"] == "unsubscribed"
    assert bo.subscriber["status_reason"] == "imported"
    (s,) = ana.subscriptions
    assert (s["digest"], s["status"], s["topics"], s["consent_source"]) == (
        "*",
        "active",
        None,
        "import",
    )
    assert s["consent_at"] == s["confirmed_at"] == s["created_at"] == sub["created_at"]
    assert [x["status"] for x in bo.subscriptions] == ["unsubscribed"]
    # a change and a re-tag of the same file go through the bulk update
    g = write(tmp_path, HEADER + "ana@example.com,Ana K,water;energy,,\n", "g.csv")
    report = import_csv(store, g)
    assert (report.updated, report.unchanged) == (1, 0)
    again = store.person("ana@example.com")
    assert again.subscriber["name"] == "Ana K" and again.subscriber["timezone"] == ""
    assert again.tags == ["energy", "water"]
    assert again.subscriber["updated_at"] > sub["created_at"]
    assert import_csv(store, g).unchanged == 1


def test_a_chunk_subscribes_its_new_subscribers_in_one_statement(store):
    """subscriptions.subscribe_every_digest: one INSERT … FROM json_each on SQLite,
    a COPY (outside SQLAlchemy) on PostgreSQL; never a statement per row."""
    import sqlalchemy as sa

    seen = []

    def record(conn, cursor, statement, params, context, many):
        if "subscriptions" in statement:
            seen.append((statement.split()[0], many))

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        subs = [Subscriber(email=f"u{i}@example.com") for i in range(300)]
        subs.append(Subscriber(email="gone@example.com", status="unsubscribed"))
        store.upsert_subscribers(subs)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)
    writes = [w for w in seen if w[0] in ("INSERT", "UPDATE", "DELETE")]
    assert writes == ([("INSERT", False)] if store.dialect == "sqlite" else [])
    people = [store.person(e) for e in ("u0@example.com", "u299@example.com", "gone@example.com")]
    assert [(p.subscriptions[0]["digest"], p.subscriptions[0]["status"]) for p in people] == [
        ("*", "active"),
        ("*", "active"),
        ("*", "unsubscribed"),
    ]
    first = people[0]
    assert first.subscriptions[0]["consent_at"] == first.subscriber["created_at"]


# ------------------------------------- reading in a child process (big files)


def test_a_file_read_apart_gives_the_same_report_and_rows(store, tmp_path):
    from newsletter.store import open_store

    rows = "".join(f"r{i}@example.com,R {i},energy,Asia/Almaty,\n" for i in range(2500))
    tail = HOSTILE[len(HEADER) :]  # its last row runs to the end of the file
    f = write(tmp_path, HEADER + rows + "R7@Example.com,Again,,,\n" + "bad,,,,\n" + tail)
    apart = import_csv(store, f, read_apart=True, chunk=1000)
    here_store = open_store(f"sqlite:///{tmp_path / 'here.db'}")
    here = import_csv(here_store, f, read_apart=False, chunk=1000)
    assert apart.as_dict() == here.as_dict()
    assert apart.inserted == 2504 and apart.updated == 1 and apart.rejected == 13
    assert apart.errors[0].startswith("line 2503: invalid email 'bad'")
    assert apart.errors[-1].startswith("line 2521-2522: invalid email")

    def stored(s):
        return [(x.email, x.name, x.tags, x.timezone, x.status) for x in s.iter_subscribers()]

    assert stored(store) == stored(here_store)
    assert store.get_subscriber("r7@example.com").name == "Again"


def test_a_bad_header_read_apart_names_the_file(sqlite_store, tmp_path):
    f = write(tmp_path, "email,phone\nx@example.com,1\n")
    with pytest.raises(InputError, match="unknown columns 'phone'") as err:
        import_csv(sqlite_store, f, read_apart=True)
    assert err.value.where == str(f)


def test_an_interrupted_import_read_apart_stops_its_reader(sqlite_store, tmp_path, monkeypatch):
    import multiprocessing

    rows = "".join(f"user{i}@example.com,User {i},,,\n" for i in range(20_000))
    f = write(tmp_path, HEADER + rows)
    real = sqlite_store.upsert_subscribers
    calls = {"n": 0}

    def crash_on_third_chunk(subs, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("power cut")
        return real(subs, **kw)

    monkeypatch.setattr(sqlite_store, "upsert_subscribers", crash_on_third_chunk)
    with pytest.raises(RuntimeError):
        import_csv(sqlite_store, f, chunk=1000, read_apart=True)
    # the reader was still writing rows when the import stopped: it ended all the same
    assert multiprocessing.active_children() == []
    assert len(list(sqlite_store.iter_subscribers())) == 2000
    monkeypatch.setattr(sqlite_store, "upsert_subscribers", real)
    report = import_csv(sqlite_store, f, chunk=1000, read_apart=True)
    assert (report.inserted, report.unchanged) == (18_000, 2000)
