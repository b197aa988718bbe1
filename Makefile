# ddim_keras — every target installs what it needs first (a .venv in the repo).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# mkdocs-material prints a notice about its end of life on every build; not a warning of ours.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs
# All three Keras backends are installed, so that `make test` runs the core suite on each.
# PyTorch is pinned to a CPU build first: an unpinned `torch` on Linux pulls several GB of CUDA.
TORCH_VERSION ?= 2.13.0
# The Keras backend of train/demo/generate: tensorflow (default), jax or torch.
BACKEND ?= tensorflow
export KERAS_BACKEND := $(BACKEND)

DATASET ?= shapes
DATA_DIR ?=
EPOCHS ?=
OUTPUT ?=
CONFIG ?=
RUN ?= runs/demo
ARGS ?=

TRAIN_FLAGS := --dataset $(DATASET) \
	$(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
	$(if $(EPOCHS),--epochs $(EPOCHS)) \
	$(if $(OUTPUT),--output $(OUTPUT)) \
	$(if $(CONFIG),--config $(CONFIG))

# `make experiment EXP=flowers`: train experiments/$(EXP).json into runs/$(EXP), sweep its
# KID over network calls per sampler, then update the report in experiments/README.md.
# The dataset is the name's first word (flowers_mse -> flowers). shapes runs offline: its KID
# uses the shipped shapes classifier's features (--kid-encoder shapes) over the 500 validation
# images, and compares the few-step samplers with the example's.
# EXP=shapes_gan trains the GAN baseline (--model gan, from the file's "model") instead;
# its sweep is one cell (one generator call per image), and the report puts it beside the
# `shapes` diffusion run (EXP=shapes_gan_walltime: the same GAN for the demo's wall time).
EXP ?= shapes
EXP_DATASET = $(firstword $(subst _, ,$(EXP)))
KID_FLAGS ?= $(if $(filter shapes,$(EXP_DATASET)),--kid-encoder shapes,--kid-weights imagenet)
SHAPES_SAMPLERS = ddim,ddim/logsnr,dpmpp_2m/logsnr,dpmpp_2m/karras,dpmpp_3m/logsnr,heun/karras
# (Commas only inside variables: $(if) splits its arguments on literal commas.)
SHAPES_SWEEP_ARGS = --num-images 500 --batch-size 50 --etas 0 --steps 1,2,3,5,10,20 \
	--samplers $(SHAPES_SAMPLERS)
DEFAULT_SWEEP_ARGS = --num-images 1000 --samplers ddim,dpmpp_2m/logsnr
# The training-objective experiments (experiments/shapes_*.json, see `make objectives`) sweep
# only the cells of their table: DDIM and dpmpp_2m/logsnr at 10 and 20 steps.
OBJECTIVE_SWEEP_ARGS = --num-images 500 --batch-size 50 --etas 0 --steps 10,20 \
	--samplers ddim,dpmpp_2m/logsnr
# The class-conditional experiments (trained with --conditional) sweep DDIM at 20 steps at
# each guidance scale of the guidance table.
GUIDANCE_EXPS = shapes_conditional shapes_conditional_attention
GUIDANCE_SWEEP_ARGS = --num-images 500 --batch-size 50 --etas 0 --steps 20 --samplers ddim \
	--guidance 0,1,2,3,5
SWEEP_ARGS ?= $(if $(filter $(GUIDANCE_EXPS),$(EXP)),$(GUIDANCE_SWEEP_ARGS),$(if $(filter \
	shapes_%,$(EXP)),$(OBJECTIVE_SWEEP_ARGS),$(if $(filter \
	shapes,$(EXP_DATASET)),$(SHAPES_SWEEP_ARGS),$(DEFAULT_SWEEP_ARGS))))
TRAIN_ARGS ?= $(if $(filter $(GUIDANCE_EXPS),$(EXP)),--conditional)
OBJECTIVE_EXPS ?= shapes_noise shapes_velocity shapes_image shapes_noise_minsnr \
	shapes_velocity_minsnr shapes_image_minsnr shapes_velocity_mse shapes_flip shapes_emawarmup \
	shapes_best

.PHONY: install test docs demo train generate tensorboard clean experiment objectives

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[tensorflow,jax,torch,test,docs]"
	touch $(STAMP)

install: $(STAMP)

# Lint and format check (ruff, configured in pyproject.toml), the docs site built strictly
# (a broken link or reference fails), then the whole suite on TensorFlow (it also runs
# tests/test_backends.py, which trains, samples and moves checkpoints across all three
# backends in subprocesses), then the core suite (tests marked `backends`: model,
# sampling, samplers, generation) on JAX and on PyTorch.
# JAX keeps its compiled programs in a cache folder: the many tiny models of the tests
# compile to the same XLA programs, which are then compiled once.
# pytest-xdist workers of the TensorFlow and JAX passes: on the 2-core development machine
# two workers took the TensorFlow pass from 33 to 24 minutes (many tests wait on
# subprocesses). Each worker holds a few GB; more workers need more memory.
TEST_WORKERS ?= 2
test: export JAX_COMPILATION_CACHE_DIR := $(CURDIR)/.pytest_cache/jax
test: export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS := 0
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MKDOCS) build --strict
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q -n $(TEST_WORKERS) --durations=15 $(ARGS)
	KERAS_BACKEND=jax $(PY) -m pytest -q -n $(TEST_WORKERS) -m backends $(ARGS)
	KERAS_BACKEND=torch $(PY) -m pytest -q -m backends $(ARGS)

# The documentation site (mkdocs.yml, docs/) into site/: offline, strict (any warning fails).
docs: $(STAMP)
	$(MKDOCS) build --strict

# Offline end-to-end demo on the procedural `shapes` dataset (3-5 min on 2 CPU cores).
demo: $(STAMP)
	$(PY) -m ddim_keras.train --dataset shapes --output runs/demo $(ARGS)
	$(PY) -m ddim_keras.generate --run runs/demo --mode grid --seed 0 --overwrite --no-progress
	$(PY) -m ddim_keras.generate --run runs/demo --mode process --seed 0 --overwrite --no-progress
	@echo "Demo samples: runs/demo/samples/final.png and runs/demo/generated/"

train: $(STAMP)
	$(PY) -m ddim_keras.train $(TRAIN_FLAGS) $(ARGS)

generate: $(STAMP)
	$(PY) -m ddim_keras.generate --run $(RUN) $(ARGS)

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir $(RUN)/logs $(ARGS)

experiment: $(STAMP)
	@test -f experiments/$(EXP).json || { echo "no experiments/$(EXP).json"; exit 2; }
	$(PY) -m ddim_keras.train --dataset $(EXP_DATASET) --config experiments/$(EXP).json \
		--output runs/$(EXP) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(KID_FLAGS) $(TRAIN_ARGS)
	$(PY) -m ddim_keras.sweep --run runs/$(EXP) $(KID_FLAGS) $(SWEEP_ARGS)
	$(PY) -m ddim_keras.report --runs-dir runs --output experiments/README.md
	@echo "Report: experiments/README.md; results copied to experiments/results/$(EXP)/"

# The training-objective table of experiments/README.md: every shapes objective variant
# trained and swept in turn (each about as long as `make demo`).
objectives: $(STAMP)
	for exp in $(OBJECTIVE_EXPS); do $(MAKE) experiment EXP=$$exp || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build site *.egg-info
