# The two commands of the README. Each creates .venv if needed and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mlflow-green-installed

.PHONY: demo test

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mlflow-green doctor
	$(PY) examples/track_digits.py

test: $(STAMP)
	$(PY) -m pytest
