# nfkit developer targets. `make install` creates .venv; every other target uses it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo_out

.PHONY: install test demo bench lint clean

$(BIN)/nfkit: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -c constraints.txt -e ".[dev,bench]"
	@touch $(BIN)/nfkit

install: $(BIN)/nfkit

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check nfkit tests

# The main job: every stage that exists so far on the built-in procedural dataset, ending with
# $(DEMO)/report.md. Rerunning resumes (finished NeRFs and graphs are skipped).
OBJECTS ?= 2
PRESET  ?= cpu
NF      := $(BIN)/nfkit

demo: install
	@echo "== 1/5 synth: procedural ShapenetRender stand-in"
	@if [ -f $(DEMO)/data/dataset.json ]; then echo "   $(DEMO)/data exists, kept"; else \
	  $(NF) synth $(DEMO)/data --objects-per-class $(OBJECTS) --views 36 --resolution 64 \
	    --preview $(DEMO)/dataset_preview.png; fi
	$(NF) check-data $(DEMO)/data
	@echo "== 2/5 fit-nerfs: one NeRF per object for mlp, tri and hash (preset $(PRESET))"
	$(NF) fit-nerfs $(DEMO)/data --arch mlp --arch tri --arch hash --preset $(PRESET) --out $(DEMO)/nerfs
	@echo "== 3/5 render: fitted NeRFs next to the ground truth"
	for arch in mlp tri hash; do \
	  $(NF) render $(DEMO)/nerfs --arch $$arch --cameras dataset --dataset $(DEMO)/data --views 4 \
	    --limit 2 --out $(DEMO)/views --no-progress || exit 1; done
	@echo "== 4/5 build-graphs: parameter graphs"
	$(NF) build-graphs $(DEMO)/nerfs --out $(DEMO)/graphs --stats
	@echo "== 5/5 report"
	$(BIN)/python -m nfkit.eval.report $(DEMO)

bench: install
	$(BIN)/python -m nfkit.bench.fit --out $(DEMO)/bench
	$(BIN)/python -m nfkit.bench.graphs --out $(DEMO)/bench
	$(BIN)/python -m nfkit.bench.retrieval --out $(DEMO)/bench

clean:
	rm -rf $(DEMO) .pytest_cache
