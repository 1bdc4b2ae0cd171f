# Tabula CRM. `make run` runs the CRM on embedded defaults; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed
# npm ci writes this file last: present and newer than the lockfile = the front-end libraries are installed.
FRONTEND_STAMP := node_modules/.package-lock.json
MO_FILES := $(patsubst %.po,%.mo,$(wildcard app/translations/*/LC_MESSAGES/messages.po))

.PHONY: run test setup setup-test frontend browser office lint format translations extract-messages lock clean mutation

run: setup
	$(BIN)/tabula run

test: setup-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

setup: $(RUNTIME_STAMP) translations frontend

setup-test: $(TEST_STAMP) translations frontend browser office

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

# Front-end libraries (the grid's Tabulator, ECharts) from the npm registry, exactly as package-lock.json
# pins them; served by the app from node_modules (views/assets.py). Needs Node.js 20+ with npm.
frontend: $(FRONTEND_STAMP)

$(FRONTEND_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20 or newer with npm (README, Quick start)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

%.mo: %.po $(RUNTIME_STAMP)
	$(BIN)/pybabel compile --use-fuzzy -i $< -o $@

# Re-extract the UI strings after changing them, then translate the new entries in the .po files.
extract-messages: setup
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -k N_ -o app/translations/messages.pot .
	$(BIN)/pybabel update -N -i app/translations/messages.pot -d app/translations

# Browser tests drive Debian's chromium; install it when missing (needs root and apt-get).
browser:
	@bash .ci/ensure-chromium

# The export tests open workbooks with LibreOffice, as a user would; installed the same way.
office:
	@bash .ci/ensure-libreoffice

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

# Mutation testing with mutmut (README "Development"; too slow for CI).
# `make mutation MODULE=custom_fields/access.py` runs one module's mutants against its own tests; without
# MODULE, every guarded module changed against main (`git diff --name-only main`). MUTANTS narrows to
# functions (`MUTANTS='x_grants* x_row_filter*'`). On SQLite, or on PostgreSQL with
# `MUTATION_DATABASE=postgresql://...` (a database to connect to; each mutant's test session creates one of
# its own there): the code only PostgreSQL runs (COPY, row locks). Either way each mutant's session starts
# from a database initialised once (tests/conftest.py). Scores and equivalent mutants: tests/MUTATION.md.
MUTATION_MODULES := custom_fields/access.py custom_fields/query.py custom_fields/records.py \
	custom_fields/types.py custom_fields/history.py
MUTATION_TESTS.custom_fields/access.py := tests/test_access_mutants.py
MUTATION_TESTS.custom_fields/query.py := tests/test_query_mutants.py
MUTATION_TESTS.custom_fields/records.py := tests/test_records_mutants.py tests/test_untouched_saves.py \
	tests/test_bulk_writes.py
MUTATION_TESTS.custom_fields/types.py := tests/test_types_mutants.py tests/test_field_types.py tests/test_registry_values.py \
	tests/test_untouched_saves.py tests/test_schema_conversion.py
MUTATION_TESTS.custom_fields/history.py := tests/test_history_mutants.py tests/test_write_path.py \
	tests/test_untouched_saves.py tests/test_registry_values.py
MUTATION_CHILDREN ?= 1
MUTATION_DATABASE ?=
# Named after the clone, so that runs in two clones on one server keep their templates apart.
MUTATION_POSTGRES_TEMPLATE := tabula_mutation_$(shell printf %s "$(CURDIR)" | cksum | cut -d' ' -f1)
MUTANTS ?= *
MUTATION_TARGETS = $(or $(MODULE),$(filter $(MUTATION_MODULES),$(shell git diff --name-only main)))

mutation: $(TEST_STAMP) translations
	@test -n "$(MUTATION_TARGETS)" || echo "No module under mutation testing changed against main."
	@$(foreach module,$(MUTATION_TARGETS),$(call mutate,$(module)))

define mutate
test -n "$(MUTATION_TESTS.$(1))" || { echo "$(1): not under mutation testing ($(MUTATION_MODULES))"; exit 2; }; \
rm -f $(CURDIR)/mutants/tabula-template.db; \
$(if $(MUTATION_DATABASE),$(BIN)/python tests/drop_database.py "$(MUTATION_DATABASE)" $(MUTATION_POSTGRES_TEMPLATE) || exit $$?;) \
env -u TEST_DATABASE_URL TABULA_MUTATION_TESTS="$(MUTATION_TESTS.$(1))" \
	TABULA_MUTATION_BACKEND=$(if $(MUTATION_DATABASE),postgresql,sqlite) \
	$(if $(MUTATION_DATABASE),TEST_DATABASE_URL="$(MUTATION_DATABASE)") \
	TABULA_TEST_SQLITE_TEMPLATE=$(CURDIR)/mutants/tabula-template.db \
	TABULA_TEST_POSTGRES_TEMPLATE=$(MUTATION_POSTGRES_TEMPLATE) \
	nice -n 10 $(BIN)/mutmut run --max-children $(MUTATION_CHILDREN) \
	$(foreach m,$(MUTANTS),"$(subst /,.,$(basename $(1))).$(m)") || exit $$?; \
$(if $(MUTATION_DATABASE),$(BIN)/python tests/drop_database.py "$(MUTATION_DATABASE)" $(MUTATION_POSTGRES_TEMPLATE);) \
$(BIN)/mutmut results --all true | grep -F " $(subst /,.,$(basename $(1)))." | awk -F': ' \
	'{ n[$$2]++; total++ } END { for (s in n) printf "  %s: %d\n", s, n[s]; \
	printf "$(1): %d of %d mutants killed (%.1f %%)\n", n["killed"] + n["timeout"], total, \
	total ? 100 * (n["killed"] + n["timeout"]) / total : 0 }';
endef

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .hypothesis mutants
