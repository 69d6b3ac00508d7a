# The two commands of the README. Each creates .venv if needed and installs what it needs:
# torch's CPU build first (so that lightning does not pull a CUDA build), then mlflow-green
# with its extras.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mlflow-green-installed
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: demo test system-deps

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

demo: $(STAMP)
	$(VENV)/bin/mlflow-green doctor
	$(PY) examples/track_digits.py
	$(PY) examples/keras_digits.py
	$(PY) examples/lightning_digits.py
	@echo "\nLeaderboard (test accuracy per kWh), sqlite:///mlflow.db:"
	$(VENV)/bin/mlflow-green rank -e green-digits-keras -e green-digits-lightning --metric test_accuracy
	@echo "\nInference leaderboard (test accuracy per joule per prediction, batch size 32, the green evaluator):"
	$(VENV)/bin/mlflow-green rank -e green-digits-keras -e green-digits-lightning --metric test_accuracy --by inference
	@echo "\nOpen the view:  $(VENV)/bin/mlflow server --app-name green --backend-store-uri sqlite:///mlflow.db"
	@echo "               then http://127.0.0.1:5000/green/  (the MLflow UI is at http://127.0.0.1:5000/)"

test: $(STAMP) system-deps
	$(PY) -m pytest
