# The two commands of the README: `make tutorial` (offline default, CPU) and `make test`.
# Both install what they need first and are safe to run twice.
# `make regression PRESET=smoke` runs every notebook for a run preset and compares its metrics with
# tests/baselines/<preset>.json (UPDATE=1 refreshes the baseline, ARGS= passes more options); `make nbval` checks the
# notebooks with nbval (lax) on smoke parameters.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.speechclip-installed
# the synthetic corpus: smoke, cpu or flickr8k sizes (notebook 00's CORPUS_PRESET); every notebook reads DATA_DIR
CORPUS_PRESET ?= cpu
DATA_DIR := data/synthetic_$(CORPUS_PRESET)
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
RUNS := artifacts/runs

.PHONY: setup tutorial test test-fast regression nbval corpus clean-artifacts

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[notebooks,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

corpus: setup
	$(PY) data_scripts/make_synthetic_corpus.py --preset $(CORPUS_PRESET) --out $(DATA_DIR)

tutorial: corpus
	mkdir -p $(RUNS)
	for nb in $(NOTEBOOKS); do \
	  echo "== $$nb"; \
	  $(PY) -m papermill --cwd notebooks -p DATA_DIR ../$(DATA_DIR) $$nb $(RUNS)/$$(basename $$nb) || exit 1; \
	done

test: setup
	$(PY) -m pytest tests

test-fast: setup
	$(PY) -m pytest tests -m "not notebook"

regression: setup
	$(PY) -m speechclip.regression --preset $(PRESET) --run-dir artifacts/regression/$(PRESET) \
	  $(if $(UPDATE),--update-baselines) $(ARGS)

# nbval executes the notebooks itself, so this is a second run of the sequence (not part of `make test`): papermill
# only writes the smoke parameters into copies, which nbval then runs in its own kernel. NBVAL= picks notebooks.
NBVAL ?= [0-9]*.ipynb
nbval: setup
	$(PY) -m speechclip.regression --preset smoke --run-dir artifacts/nbval --prepare-only
	cd artifacts/nbval && PYTHONPATH=$(CURDIR) HF_HUB_OFFLINE=1 PYTHONHASHSEED=0 \
	  $(abspath $(PY)) -m pytest --nbval-lax -p no:cacheprovider $(NBVAL)

clean-artifacts:
	rm -rf artifacts/runs artifacts/metrics artifacts/regression artifacts/nbval
