"""pyproject.toml declares what the package imports, and imports what it declares."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

#: declared but never imported, on purpose: time zone data read by zoneinfo; the
#: PostgreSQL driver SQLAlchemy loads from the database URL; the HTTP parser that
#: uvicorn's HttpToolsProtocol (tracking/server.py extends it) imports
NOT_IMPORTED = {"tzdata", "psycopg", "httptools"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def declared(*extras: str) -> set[str]:
    names = {_name(r) for r in PROJECT["dependencies"]}
    for extra in extras:
        names |= {_name(r) for r in PROJECT["optional-dependencies"][extra]}
    return names


def third_party_imports() -> dict[str, str]:
    """{top-level module: first file importing it} over newsletter/."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "newsletter").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top != "newsletter" and top not in sys.stdlib_module_names:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared():
    dists = packages_distributions()
    runtime = declared("postgres", "browser")
    missing = {
        module: where
        for module, where in third_party_imports().items()
        if not {d.lower().replace("_", "-") for d in dists.get(module, [module])} & runtime
    }
    assert missing == {}, "imported by newsletter/ but not in pyproject.toml dependencies"


def test_every_declared_dependency_is_imported():
    dists = packages_distributions()
    imported = {
        d.lower().replace("_", "-") for m in third_party_imports() for d in dists.get(m, [m])
    }
    unused = declared("postgres", "browser") - imported - NOT_IMPORTED
    assert unused == set()
