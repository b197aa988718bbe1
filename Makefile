# ddim_keras — every target installs what it needs first (a .venv in the repo).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

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
# KID over sampling steps (DDIM and DDPM), then update the report in experiments/README.md.
# The dataset is the name's first word (flowers_mse -> flowers). shapes runs offline: its KID
# uses random Inception weights (a smoke test, not comparable) over 200 images.
EXP ?= shapes
EXP_DATASET = $(firstword $(subst _, ,$(EXP)))
KID_WEIGHTS ?= $(if $(filter shapes,$(EXP_DATASET)),none,imagenet)
SWEEP_ARGS ?= $(if $(filter shapes,$(EXP_DATASET)),--num-images 200 --batch-size 50,--num-images 1000)
TRAIN_ARGS ?=

.PHONY: install test demo train generate tensorboard clean experiment

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q --durations=15 $(ARGS)

# Offline end-to-end demo on the procedural `shapes` dataset (~6 min on 2 CPU cores).
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
		--output runs/$(EXP) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(TRAIN_ARGS)
	$(PY) -m ddim_keras.sweep --run runs/$(EXP) --kid-weights $(KID_WEIGHTS) $(SWEEP_ARGS)
	$(PY) -m ddim_keras.report --runs-dir runs --output experiments/README.md
	@echo "Report: experiments/README.md; results copied to experiments/results/$(EXP)/"

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
