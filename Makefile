# The two commands of the README: `make tutorial` (offline default, CPU) and `make test`.
# Both install what they need first and are safe to run twice.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.speechclip-installed
# the synthetic corpus: smoke, cpu or flickr8k sizes (notebook 00's CORPUS_PRESET); every notebook reads DATA_DIR
CORPUS_PRESET ?= cpu
DATA_DIR := data/synthetic_$(CORPUS_PRESET)
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
RUNS := artifacts/runs

.PHONY: setup tutorial test test-fast corpus clean-artifacts

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

clean-artifacts:
	rm -rf artifacts/runs artifacts/metrics
