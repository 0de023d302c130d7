# Two commands: `make run` opens the app, `make test` runs the default test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
HOST   ?= 127.0.0.1
PORT   ?= 7860

.PHONY: run test test-slow test-all install install-test bench bench-training figures train-vaes \
        ship-vaes report rehearsal train-diffusion eval-ldm campaign train-all curves clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(PIP) install --disable-pip-version-check -q -r requirements-test.txt
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	GRADIO_SERVER_NAME=$(HOST) GRADIO_SERVER_PORT=$(PORT) $(PY) app.py

test: install-test
	$(PY) -m pytest -q

test-slow: install-test
	$(PY) -m pytest -q -m slow

test-all: install-test
	$(PY) -m pytest -q -m "slow or not slow"

bench: install
	$(PY) -m playground.bench

figures: install
	$(PY) -m playground.data.figures --out assets

# Train the three β-VAEs (MINUTES each; on a 2-core CPU run them side by side, one thread each).
MINUTES ?= 72
VAE_BETAS := 1 4 10
train-vaes: install
	mkdir -p runs; for b in $(VAE_BETAS); do \
	  OMP_NUM_THREADS=1 $(PY) -m playground.train vae --beta $$b --minutes $(MINUTES) \
	    --threads 1 --no-progress --out runs/vae-beta$$b > runs/train-beta$$b.log 2>&1 & \
	done; wait

# Promote the runs to trained/ (fp16), measure them on the test split, precompute latent maps.
ship-vaes: install
	for b in $(VAE_BETAS); do \
	  $(PY) -m playground.training.ship runs/vae-beta$$b vae-beta$$b && \
	  $(PY) -m playground.evaluation.vae vae-beta$$b --write --threads 1 > /dev/null || exit 1; \
	done
	$(PY) -m playground.pipelines.latent_map $(addprefix vae-beta,$(VAE_BETAS)) --method tsne umap pca

report: install
	$(PY) -m playground.evaluation.report vae --out assets/report --threads 1

# Every target again on faces no split holds and on held-out prompts (~10 min on one core).
rehearsal: install
	$(PY) -m playground.evaluation.rehearsal --threads 1 --write

# Speed options (bf16 autocast, channels_last) are chosen by each run on its machine (--amp auto,
# --layout auto): never named in a recipe. `make bench-training` shows what each option gives.
bench-training: install
	$(PY) -m playground.bench --training

# Continue every model where it stands (resume / warm start from trained/), in dependency order,
# shipping only what got better and skipping models at their targets: a stretch of MINUTES.
campaign: install
	nice -n 10 $(PY) -m playground.training.campaign --minutes $(MINUTES)
	$(PY) -m playground.training.curves --out assets/training_curves.png

# On a GPU: every model, from scratch or continued, in 12 minutes (make train-all DEVICE=cuda).
DEVICE ?= cuda
GPU_MINUTES ?= 12
train-all: install
	$(PY) -m playground.training.campaign --all --minutes $(GPU_MINUTES) --device $(DEVICE)
	$(PY) -m playground.training.curves --out assets/training_curves.png

curves: install
	$(PY) -m playground.training.curves --out assets/training_curves.png

# The diffusion stack as shipped (2-core CPU, one thread per process; ~2 h 15 min in all):
# autoencoder + judge side by side, then CLIP, then the LDM on both cores (DDP), each shipped.
T1 := OMP_NUM_THREADS=1
train-diffusion: install
	mkdir -p runs
	$(T1) $(PY) -m playground.train autoencoder --latent-size 16 --latent-channels 8 --minutes 40 --threads 1 \
	  --no-progress --out runs/autoencoder > runs/train-autoencoder.log 2>&1 & \
	$(T1) $(PY) -m playground.train judge --minutes 25 --threads 1 --no-progress \
	  --out runs/judge > runs/train-judge.log 2>&1 && \
	$(T1) $(PY) -m playground.train clip --minutes 28 --threads 1 --no-progress \
	  --out runs/clip > runs/train-clip.log 2>&1; wait
	$(PY) -m playground.training.ship runs/autoencoder autoencoder
	$(PY) -m playground.training.ship runs/judge judge
	$(PY) -m playground.training.ship runs/clip clip
	$(T1) $(VENV)/bin/torchrun --nproc_per_node=2 -m playground.train ldm --autoencoder autoencoder \
	  --clip clip --minutes 72 --lr 5e-4 --threads 1 --no-progress --out runs/ldm \
	  > runs/train-ldm.log 2>&1
	$(PY) -m playground.training.ship runs/ldm ldm

# The LDM's tables (trained/ldm/metrics.json) and assets/ldm_prompts.png (~25 min).
eval-ldm: install
	$(T1) $(PY) -m playground.evaluation.ldm ldm --judge judge --write --threads 1 --minutes 23

clean:
	rm -rf $(VENV) .pytest_cache
