"""No two parts of the package import each other, directly or through others.

import-linter's contracts (pyproject.toml, `make lint`) fix the order of the
stages; this checks the whole package top, the parts the contracts leave out
(``tracking``, the top-level modules) included, on the import graph itself.
"""

from __future__ import annotations

import itertools

import grimp
import pytest

#: config checks provider names against newsletter.rates.providers, imported
#: inside the function that needs them, while the providers read RatesConfig
#: (docs/architecture.md, "One folder per stage")
KNOWN = {("newsletter.config", "newsletter.rates")}


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("newsletter")


def parts(graph):
    return sorted(m for m in graph.find_children("newsletter") if not m.endswith("__main__"))


def cycles(graph):
    found = []
    for a, b in itertools.combinations(parts(graph), 2):
        if {(a, b), (b, a)} & KNOWN:
            continue
        there = graph.chain_exists(importer=a, imported=b, as_packages=True)
        if there and graph.chain_exists(importer=b, imported=a, as_packages=True):
            found.append((a, b))
    return found


def test_no_two_parts_of_the_package_import_each_other(graph):
    assert cycles(graph) == []


def test_a_cycle_through_the_reader_pages_is_found(graph):
    # the send importing the webhook would close delivery -> tracking -> delivery,
    # which none of the import-linter contracts forbade
    graph.add_import(importer="newsletter.delivery.pacing", imported="newsletter.tracking.webhook")
    assert ("newsletter.delivery", "newsletter.tracking") in cycles(graph)
