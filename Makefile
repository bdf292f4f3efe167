# The two commands of the README, and the one that re-runs notebooks for storage.
# Each target installs what it needs, so they work on a fresh machine with Python 3.11.
PYTHON ?= python3
TORCH ?= torch==2.13.0
NB ?= chapters/*.ipynb

# Use the offline copy of the data next to the checkout, when there is one.
SHARED_DATA := $(wildcard $(CURDIR)/../shared/data)
ifneq ($(SHARED_DATA),)
export LLM_FROM_SCRATCH_DATA ?= $(abspath $(SHARED_DATA))
endif

.PHONY: install book test notebooks lint clean

install:
	$(PYTHON) -m pip install --quiet "$(TORCH)"
	$(PYTHON) -m pip install --quiet -r requirements.txt

book: install
	$(PYTHON) -c "from jupyter_book.cli.main import main; main()" build . -W -n --keep-going

test: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest

# Execute notebooks top to bottom in a fresh kernel and store their outputs.
# Progress bars are switched off so the stored outputs are stable (readers see them live);
# one torch thread, as under pytest (see conftest.py).
notebooks:
	TQDM_DISABLE=1 PYTHONHASHSEED=0 OMP_NUM_THREADS=1 $(PYTHON) -m jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=600 --ExecutePreprocessor.record_timing=False $(NB)

lint:
	$(PYTHON) -m ruff check .

clean:
	rm -rf _build .ci/artifacts
