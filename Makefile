# Everything a fresh machine needs, from one command.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
QUICKSTART_DIR ?= workdir/quickstart
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install lint test quickstart bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -n 2 --dist loadfile -q

quickstart: $(STAMP)
	$(PY) main.py --config=configs/ebst.py:quickstart --workdir=$(QUICKSTART_DIR)
	$(PY) -m maskgan_jax.evaluate --workdir=$(QUICKSTART_DIR)
	@echo "Image grids: $(QUICKSTART_DIR)/images  TensorBoard: $(QUICKSTART_DIR)/tensorboard"

bench: $(STAMP)
	$(PY) -m maskgan_jax.benchmarks.dmn_speed

clean:
	rm -rf $(VENV) build *.egg-info
