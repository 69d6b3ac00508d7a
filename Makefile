# The two commands of the README. Each creates .venv if needed and installs what it needs:
# torch's CPU build first (so that lightning does not pull a CUDA build), then mlflow-green
# with its extras. `make test` also runs the core suite (no framework extra) on the last
# MLflow 2.x, in a second environment: the lowest MLflow pyproject.toml allows is the one proven.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mlflow-green-installed
VENV2 ?= .venv-mlflow2
MLFLOW2 ?= mlflow==2.22.5
# MLflow 2.22 predates SQLAlchemy 2.1 (it imports a pool class 2.1 removed)
MLFLOW2_PINS := "$(MLFLOW2)" "sqlalchemy<2.1"
STAMP2 := $(VENV2)/.mlflow-green-installed
# psycopg2: MLflow 2.x's PostgreSQL store (MLflow 3 also takes psycopg 3)
CORE_TEST_DEPS := "pytest>=8" "pytest-xdist>=3.6" "hypothesis>=6" "psycopg[binary]>=3.1" "psycopg2-binary>=2.9" "playwright>=1.45" \
	"trove-classifiers>=2024.1"
export TF_CPP_MIN_LOG_LEVEL ?= 3
# Test processes (pytest-xdist; 0: one process). Much of the suite's time is in subprocesses and
# servers that wait on each other: with two workers it keeps about 1.5 of 2 cores busy, a third fills
# part of the rest (17:58 and 16:52 in all against 20:02 and 19:01 with two; docs/performance.md).
# Each test file runs whole in one worker (--dist loadfile), in its order.
TEST_WORKERS ?= 3
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile

.PHONY: demo test test-core-mlflow2 system-deps

# Debian packages the end-to-end tests use: Chromium for the view, PostgreSQL for the team setup.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-deps:
	@if command -v chromium >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; else \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			chromium postgresql >/dev/null; fi

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

$(STAMP2): pyproject.toml Makefile
	test -x $(VENV2)/bin/python || python3 -m venv $(VENV2)
	$(VENV2)/bin/python -m pip install --quiet --upgrade pip
	$(VENV2)/bin/python -m pip install --quiet $(MLFLOW2_PINS) -e . $(CORE_TEST_DEPS)
	touch $(STAMP2)

demo: $(STAMP)
	$(VENV)/bin/mlflow-green doctor
	$(PY) examples/track_digits.py
	$(PY) examples/keras_digits.py
	$(PY) examples/lightning_digits.py
	@echo "\nLeaderboard (test accuracy per kWh), sqlite:///mlflow.db:"
	$(VENV)/bin/mlflow-green rank -e green-digits-keras -e green-digits-lightning --metric test_accuracy
	@echo "\nInference leaderboard (test accuracy per joule per prediction, batch size 32, the green evaluator):"
	$(VENV)/bin/mlflow-green rank -e green-digits-keras -e green-digits-lightning --metric test_accuracy --by inference
	@echo "\nRegister the best model of each zoo (highest quality per kWh) and gate it for champion, examples/green-policy.toml:"
	@for zoo in keras lightning; do \
		version=$$($(PY) examples/register_best.py green-digits-$$zoo digits-$$zoo) || exit 2; \
		echo "$$ mlflow-green gate -m digits-$$zoo -v $$version --policy examples/green-policy.toml --alias champion --promote"; \
		$(VENV)/bin/mlflow-green gate -m digits-$$zoo -v $$version --policy examples/green-policy.toml --alias champion --promote; \
		status=$$?; [ $$status -le 1 ] || exit $$status; \
	done
	@echo "\nVersions of digits-keras:  mlflow-green rank -m digits-keras --metric test_accuracy"
	$(VENV)/bin/mlflow-green rank -m digits-keras --metric test_accuracy
	@echo "\nOpen the view:  $(VENV)/bin/mlflow server --app-name green --backend-store-uri sqlite:///mlflow.db"
	@echo "               then http://127.0.0.1:5000/green/  (the MLflow UI is at http://127.0.0.1:5000/)"

test: $(STAMP) system-deps
	$(PY) -m pytest $(PYTEST_PARALLEL)
	$(MAKE) --no-print-directory test-core-mlflow2

# The core suite on the last MLflow 2.x: framework tests are left out (their extras are not
# installed there); any other skip fails the run (conftest.py). The slow end-to-end tests (real
# servers, browsers, PostgreSQL) run on the latest MLflow only: `make test-core-mlflow2 SLOW=1` adds them.
test-core-mlflow2: $(STAMP2) system-deps
	@echo "Core suite (no framework extra) on $$($(VENV2)/bin/python -c 'import mlflow; print("MLflow", mlflow.__version__)'):"
	$(VENV2)/bin/python -m pytest $(PYTEST_PARALLEL) $(if $(SLOW),,-m "not slow")
