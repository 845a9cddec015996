# nfkit developer targets. `make install` creates .venv; every other target uses it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo_out

.PHONY: install test demo bench lint clean

$(BIN)/nfkit: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -c constraints.txt -e ".[dev]"
	@touch $(BIN)/nfkit

install: $(BIN)/nfkit

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check nfkit tests

demo: install
	DEMO=$(DEMO) bash scripts/demo.sh

bench: install
	$(BIN)/python -m nfkit.bench.fit --out $(DEMO)/bench
	$(BIN)/python -m nfkit.bench.graphs --out $(DEMO)/bench

clean:
	rm -rf $(DEMO) .pytest_cache
