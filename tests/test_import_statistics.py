"""A large import refreshes PostgreSQL's statistics, so the next send's audience
queries are planned for the table as it is (not as the empty table it was)."""

from __future__ import annotations

import sqlalchemy as sa

from newsletter.audience.subscribers import STATISTICS_AFTER, import_csv


def test_a_large_import_analyzes_the_subscriber_tables(store, tmp_path):
    n = STATISTICS_AFTER + 200
    path = tmp_path / "subs.csv"
    rows = ["email,name,tags,timezone,status"]
    rows += [f"r{i}@example.com,Reader {i},kazakhstan,Asia/Almaty,active" for i in range(n)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = import_csv(store, path)
    assert report.inserted == n
    if store.dialect != "postgresql":
        return
    with store.connect() as conn:
        # ANALYZE sets reltuples (a table never analyzed has -1); a small table is
        # read whole, so it is the row count
        tuples = dict(
            conn.execute(
                sa.text(
                    "SELECT relname, reltuples FROM pg_class WHERE oid IN "
                    "('subscribers'::regclass, 'subscriber_tags'::regclass)"
                )
            ).all()
        )
    assert tuples == {"subscribers": n, "subscriber_tags": n}
