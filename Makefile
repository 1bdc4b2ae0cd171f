# Tabula CRM. `make run` runs the CRM on embedded defaults; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed
MO_FILES := $(patsubst %.po,%.mo,$(wildcard app/translations/*/LC_MESSAGES/messages.po))

.PHONY: run test setup setup-test lint format translations extract-messages lock browser clean

run: setup
	$(BIN)/tabula run

test: setup-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

setup: $(RUNTIME_STAMP) translations

setup-test: $(TEST_STAMP) translations browser

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# uv (from PyPI, like every package) installs the pinned set in seconds; pip does the same, slower, if uv
# cannot be had.
UV_PIN := uv==0.13.9
PIP_INSTALL = $(BIN)/python -m pip install --quiet --disable-pip-version-check
INSTALL = { $(PIP_INSTALL) $(UV_PIN) && $(BIN)/uv pip install --quiet --python $(BIN)/python $(1); } \
	|| $(PIP_INSTALL) $(1)

$(RUNTIME_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(call INSTALL,-c constraints.txt -e .)
	touch $@

$(TEST_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(call INSTALL,-c constraints.txt -e '.[test]')
	touch $@ $(RUNTIME_STAMP)

translations: $(MO_FILES)

%.mo: %.po $(RUNTIME_STAMP)
	$(BIN)/pybabel compile --use-fuzzy -i $< -o $@

# Re-extract the UI strings after changing them, then translate the new entries in the .po files.
extract-messages: setup
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -k N_ -o app/translations/messages.pot .
	$(BIN)/pybabel update -N -i app/translations/messages.pot -d app/translations

# Browser tests drive Debian's chromium; install it when missing (needs root and apt-get).
browser:
	@bash .ci/ensure-chromium

lint: setup-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-pin every package after changing pyproject.toml (then commit constraints.txt).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e '.[test]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^tabula-crm' > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
