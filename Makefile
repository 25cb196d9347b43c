# Everything a fresh machine needs, from one command.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install test quickstart bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

quickstart: $(STAMP)
	@echo "make quickstart: the end-to-end demo is not wired yet (the training issue fills it in)." >&2
	@exit 1

bench: $(STAMP)
	$(PY) -m maskgan_jax.benchmarks.dmn_speed

clean:
	rm -rf $(VENV) build *.egg-info
