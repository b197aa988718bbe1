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

.PHONY: install test demo train generate tensorboard clean

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

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
