"""Each store module writes its own domain's tables (docs/architecture.md).

A transaction that must change another domain's rows calls the owning module's
function that takes the connection (``editions.mark_frozen``,
``deliveries.write_event_statuses``, ``deliveries.cancel_queued``, an erasure's
``erase_*`` …). Read from
the source: every ``insert(t)``/``update(t)``/``delete(t)`` and every raw
``INSERT INTO``/``UPDATE``/``DELETE FROM`` of a module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from newsletter.store import schema

STORE = Path(__file__).parent.parent / "newsletter" / "store"
TABLES = {t.name for t in schema.metadata.sorted_tables}

#: module -> the tables it owns
OWNS = {
    "articles.py": {"articles", "tags", "article_tags", "source_state"},
    "rates.py": {"rates"},
    "audience.py": {"subscribers", "subscriber_tags"},
    "bulk.py": {"subscribers", "subscriber_tags"},  # the audience's upsert, per chunk
    "subscriptions.py": {"subscriptions"},
    "ratelimits.py": {"rate_limits"},
    "privacy.py": {"forgotten"},
    "editions.py": {"editions", "edition_articles"},
    "deliveries.py": {"deliveries", "batches"},
    "freeze.py": {"deliveries"},  # the frozen audience: deliveries written in the database
    "events.py": {"events"},
    "locks.py": {"locks"},
    "runs.py": {"digest_runs"},
}

#: writes across domains not yet moved behind the owner's function: (module, table)
NOT_YET: set[tuple[str, str]] = set()


def table_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> table, for the tables a module imports from schema.py."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "newsletter.store.schema":
            for a in node.names:
                if a.name in TABLES:
                    names[a.asname or a.name] = a.name
    return names


def writes(source: str) -> set[str]:
    tree = ast.parse(source)
    local = table_names(tree)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else getattr(f, "attr", "")
            if name in ("insert", "update", "delete", "dialect_insert"):
                out |= {local[a.id] for a in node.args if isinstance(a, ast.Name) and a.id in local}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found = re.findall(r"\b(?:INSERT INTO|UPDATE|DELETE FROM)\s+([a-z_]+)", node.value)
            out |= {t for t in found if t in TABLES}
    return out


def test_the_check_sees_each_kind_of_write():
    src = (
        "from newsletter.store.schema import editions, tags as tags_table, locks\n"
        "update(editions).values(status='x')\n"
        "dialect_insert(d, tags_table)\n"
        "c.exec_driver_sql('DELETE FROM batches WHERE id = ?')\n"
        "select(locks)\n"
    )
    assert writes(src) == {"editions", "tags", "batches"}


def test_each_store_module_writes_only_its_own_tables():
    crossing = set()
    for path in sorted(STORE.glob("*.py")):
        for table in writes(path.read_text(encoding="utf-8")):
            if table not in OWNS.get(path.name, set()):
                crossing.add((path.name, table))
    assert crossing - NOT_YET == set()
    # and the list shrinks when one is moved
    assert NOT_YET - crossing == set()
