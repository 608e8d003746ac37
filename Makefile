# Two commands do all the set-up on a fresh machine:
#   make demo   the scheduled job on the embedded default (SQLite, samples, file outbox)
#   make test   everything the tests need, then the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NL := $(BIN)/newsletter
# the sample data is dated November 2026; pin the clock so the demo shows the same on any day
DEMO_AT ?= 2026-11-30T07:05:00+05:00
DEMO_ENV := NEWSLETTER_SECRET_KEY=demo-only-not-a-secret NEWSLETTER_CONFIG=examples/demo.toml

.PHONY: demo test lint format install install-test system-deps clean screenshots catalogues messages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed catalogues
install-test: $(VENV)/.installed-test catalogues

# the reader-facing strings: newsletter/locale/<lang>/LC_MESSAGES/messages.po are
# the source (committed); the .mo next to them are compiled here (not committed;
# without them the .po is compiled in memory when first used). docs/templates.md
CATALOGUES := $(wildcard newsletter/locale/*/LC_MESSAGES/messages.po)
catalogues: $(CATALOGUES:.po=.mo)
newsletter/locale/%/LC_MESSAGES/messages.mo: newsletter/locale/%/LC_MESSAGES/messages.po | $(VENV)/.installed
	$(BIN)/pybabel compile -D messages -l $* -i $< -o $@ --statistics

# after changing a string: extract them all and merge into every catalogue
messages: install
	$(BIN)/python scripts/update_catalogues.py

demo: install
	$(DEMO_ENV) $(NL) init
	$(DEMO_ENV) $(NL) subscribers import subscribers/sample.csv
	$(DEMO_ENV) $(NL) run --at $(DEMO_AT)

# docs/screenshots/<language>/preview-<width>[-dark].png: the demo's default edition
# (en: digest weekly, ru: weekly-ru)
# through `newsletter preview --screenshot`, on a throwaway database (images as grey
# boxes: the sample feed's image URLs are not real)
SHOTS_DB ?= /tmp/newsletter-screenshots-$(shell id -u).db
SHOTS_DIR ?= docs/screenshots
screenshots: install-test
	rm -f $(SHOTS_DB)
	$(DEMO_ENV) $(NL) --db sqlite:///$(SHOTS_DB) init
	$(DEMO_ENV) $(NL) --db sqlite:///$(SHOTS_DB) subscribers import subscribers/sample.csv
	$(DEMO_ENV) $(NL) --db sqlite:///$(SHOTS_DB) ingest
	for shot in en:weekly ru:weekly-ru; do for dark in "" --dark; do \
	  $(DEMO_ENV) $(NL) --db sqlite:///$(SHOTS_DB) preview --digest $${shot#*:} --at $(DEMO_AT) \
	    --placeholder-images --screenshot $(SHOTS_DIR)/$${shot%%:*} $$dark || exit 1; \
	done; done
	rm -f $(SHOTS_DB)

# System packages the tests need (Debian): chromium for the browser tests.
system-deps:
	@bash scripts/system-deps.sh

test: install-test system-deps lint
	$(BIN)/python -m pytest -q

# formatting, lint, types (0 errors; strict on states and store) and the import
# contracts between stage folders (pyproject.toml [tool.importlinter])
lint: install-test
	$(BIN)/ruff format --check newsletter tests benchmarks
	$(BIN)/ruff check newsletter tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format:
	$(BIN)/ruff format newsletter tests benchmarks
	$(BIN)/ruff check --fix newsletter tests benchmarks

clean:
	rm -rf .demo .pytest_cache
