# nfkit developer targets. `make install` creates .venv; every other target uses it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
NFBIN   = $(abspath $(BIN))

.PHONY: install test unit smoke demo bench scaleout lint clean

$(BIN)/nfkit: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -c constraints.txt -e ".[dev,bench]"
	@touch $(BIN)/nfkit

install: $(BIN)/nfkit

# The CI command (.ci/run): the unit tests, then the whole pipeline on a tiny configuration.
test: unit
	$(MAKE) --no-print-directory smoke

unit: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check nfkit tests

# ----------------------------------------------------------------------------------- demo
# The main job: every stage of the CLI on the built-in procedural dataset, run as a user would
# in the workspace $(DEMO) (each stage's default input is the previous stage's default output),
# ending with $(DEMO)/report.md. A rerun reuses what is complete: fit-nerfs, build-graphs and
# embed skip finished work themselves; the stages that would train or render again are skipped
# when their output exists ("kept"; delete that output to redo the stage).
DEMO          ?= demo_out
# dataset
OBJECTS       ?= 8
CLASSES       ?= all
VIEWS         ?= 36
RESOLUTION    ?= 64
VAL_FRACTION  ?= 0.1
TEST_FRACTION ?= 0.1
# presets of fit-nerfs, pretrain-encoder, train-clip, map-clip, classify and generate gan
PRESET        ?= cpu
ENC_PRESET    ?= cpu
ENC_LOSS      ?= r+c
CLIP_PRESET   ?= cpu
# the open_clip model that train-clip's preset trains (cpu: nfkit-clip-small, tiny: nfkit-clip-micro)
CLIP_MODEL    ?= nfkit-clip-small
MAP_PRESET    ?= cpu
CLS_PRESET    ?= cpu
GAN_PRESET    ?= cpu
GAN_SAMPLES   ?= 16
GAN_RENDER    ?= 2
# embeddings per class and source whose renders CLIP classifies (generate gan --clip-check)
CLIP_CHECK    ?= 6
# how much is rendered: NeRFs per architecture next to the ground truth, views per NeRF, the
# pixels of every result picture, the zero-shot render-then-CLIP baseline, the report's example
# retrievals
RENDER_NERFS  ?= 2
RENDER_VIEWS  ?= 4
RENDER_ARGS   ?=
REPORT_EXAMPLES ?= 2
PIC_RES       ?= 64
ZS_VIEWS      ?= 1
ZS_LIMIT      ?= 13
# the queries (TEXT: letters, digits and spaces only) and the pair interpolated
TEXT          ?= a 3d model of a red car
INTERP_A      ?= tri:chair/chair_0000
INTERP_B      ?= tri:chair/chair_0001
# more options of one stage, e.g. FIT_ARGS="--set steps=300" GAN_ARGS="--set epochs=100"
FIT_ARGS      ?=
ENC_ARGS      ?=
CLIP_ARGS     ?=
MAP_ARGS      ?=
CLS_ARGS      ?=
GAN_ARGS      ?=
# --no-progress for logs (the smoke run)
PROGRESS      ?=

NF           := nfkit
_space       := $(subst ,, )
TEXT_PNG      = retrieve/query-text-$(subst $(_space),-,$(strip $(TEXT)))-clip2nerf.png
INTERP_PNG    = generate/interpolate/$(subst /,_,$(subst :,-,$(INTERP_A)--$(INTERP_B))).png
# seconds since this demo run started
elapsed = $$(( $$(date +%s) - $$(cat $(DEMO)/.demo-start) ))
# $(call run,COMMAND): print COMMAND, then run it with the venv's nfkit first on PATH
run  = echo "$$ $(strip $(1))" && PATH='$(NFBIN)':"$$PATH" $(1)
# $(call ws,COMMAND): the same inside the workspace
ws   = (cd $(DEMO) && $(call run,$(1)))
# $(call once,OUTPUT,COMMAND): the same unless OUTPUT exists in the workspace
once = (cd $(DEMO) && if [ -e $(1) ]; then echo "   $(1) exists, kept (delete it to redo: $(strip $(2)))"; \
       else $(call run,$(2)); fi)

demo: install
	@mkdir -p $(DEMO) && echo "workspace: $(abspath $(DEMO))" && date +%s > $(DEMO)/.demo-start
	@echo "== 1/13 synth: the procedural ShapenetRender stand-in, then check-data reads it back   [$(elapsed) s]"
	@$(call once,data/dataset.json,$(NF) synth data --objects-per-class $(OBJECTS) --classes $(CLASSES) \
	  --views $(VIEWS) --resolution $(RESOLUTION) --val-fraction $(VAL_FRACTION) --test-fraction $(TEST_FRACTION) \
	  --preview dataset_preview.png $(PROGRESS))
	@$(call ws,$(NF) check-data data $(PROGRESS))
	@echo "== 2/13 fit-nerfs: one NeRF per object for mlp, tri and hash (preset $(PRESET); finished NeRFs are skipped)   [$(elapsed) s]"
	@$(call ws,$(NF) fit-nerfs data --preset $(PRESET) $(FIT_ARGS) $(PROGRESS))
	@echo "== 3/13 render: a few fitted NeRFs next to the ground truth   [$(elapsed) s]"
	@for arch in mlp tri hash; do \
	  $(call once,views/$$arch,$(NF) render --arch $$arch --cameras dataset --dataset data --views $(RENDER_VIEWS) \
	    --limit $(RENDER_NERFS) $(RENDER_ARGS) $(PROGRESS)) || exit 1; done
	@echo "== 4/13 build-graphs: parameter graphs (up-to-date shards are skipped)   [$(elapsed) s]"
	@$(call ws,$(NF) build-graphs $(PROGRESS))
	@$(call ws,$(NF) build-graphs --stats)
	@echo "== 5/13 pretrain-encoder: one GMN encoder for every architecture (preset $(ENC_PRESET), loss $(ENC_LOSS))   [$(elapsed) s]"
	@if [ -f $(DEMO)/encoder/train_log.json ]; then echo "   encoder/train_log.json exists, kept (delete encoder/ to retrain)"; \
	elif [ -f $(DEMO)/encoder/last.h5 ]; then \
	  $(call ws,$(NF) pretrain-encoder --loss $(ENC_LOSS) --preset $(ENC_PRESET) $(ENC_ARGS) --resume $(PROGRESS)); \
	else $(call ws,$(NF) pretrain-encoder --loss $(ENC_LOSS) --preset $(ENC_PRESET) $(ENC_ARGS) $(PROGRESS)); fi
	@echo "== 6/13 embed: the hash NeRFs first, then the rest (embedded shards are skipped)   [$(elapsed) s]"
	@$(call ws,$(NF) embed --arch hash $(PROGRESS))
	@$(call ws,$(NF) embed $(PROGRESS))
	@echo "== 7/13 train-clip: a small CLIP trained on the dataset's views and captions (preset $(CLIP_PRESET))   [$(elapsed) s]"
	@$(call once,clip/nfkit-clip.pt,$(NF) train-clip data --preset $(CLIP_PRESET) $(CLIP_ARGS) $(PROGRESS))
	@echo "== 8/13 map-clip: nerf2clip and clip2nerf between the NeRF embeddings and that CLIP   [$(elapsed) s]"
	@$(call once,clip/map-clip.json,$(NF) map-clip --clip-model $(CLIP_MODEL) --clip-pretrained clip/nfkit-clip.pt \
	  --preset $(MAP_PRESET) $(MAP_ARGS) $(PROGRESS))
	@echo "== 9/13 classify: the supervised transfer matrix, then zero-shot through CLIP   [$(elapsed) s]"
	@$(call once,classify/classify.json,$(NF) classify --preset $(CLS_PRESET) $(CLS_ARGS) $(PROGRESS))
	@$(call once,classify/zero-shot.json,$(NF) classify --zero-shot --baseline-views $(ZS_VIEWS) \
	  --baseline-limit $(ZS_LIMIT) $(PROGRESS))
	@echo "== 10/13 retrieve: the evaluation tables, then a photo, a text and a NeRF as queries   [$(elapsed) s]"
	@$(call ws,$(NF) retrieve $(PROGRESS))
	@$(call once,retrieve/clip-retrieval.json,$(NF) retrieve --clip-eval --split all $(PROGRESS))
	@cd $(DEMO) && [ -f photo.jpg ] || { echo "   drawing photo.jpg (a red car with PIL; not rendered by nfkit)" && \
	  $(NFBIN)/python -c "from PIL import Image, ImageDraw; im = Image.new('RGB', (256, 256), (235, 235, 235)); \
	  d = ImageDraw.Draw(im); red = (200, 25, 25); glass = (150, 200, 230); \
	  d.rounded_rectangle((30, 110, 226, 170), 18, fill=red); d.polygon([(70, 110), (100, 70), (170, 70), (195, 110)], fill=red); \
	  d.polygon([(108, 78), (128, 78), (128, 106), (88, 106)], fill=glass); d.polygon([(136, 78), (165, 78), (185, 106), (136, 106)], fill=glass); \
	  [d.ellipse((x - 22, 148, x + 22, 192), fill=(25, 25, 25)) for x in (75, 180)]; im.save('photo.jpg', quality=90)"; }
	@$(call once,retrieve/query-photo-clip2nerf.png,$(NF) retrieve --query photo.jpg --resolution $(PIC_RES) $(PROGRESS))
	@$(call once,$(TEXT_PNG),$(NF) retrieve --text '$(strip $(TEXT))' --resolution $(PIC_RES) $(PROGRESS))
	@cd $(DEMO) && q=$$(ls nerfs/mlp/*.h5 | head -n 1) && pic=retrieve/query-$$(basename $$q .h5)-0.png && \
	  if [ -e $$pic ]; then echo "   $$pic exists, kept"; else \
	  $(call run,$(NF) retrieve --query-nerf $$q --resolution $(PIC_RES) $(PROGRESS)); fi
	@echo "== 11/13 generate: latent GANs per class, and an interpolation between two NeRFs   [$(elapsed) s]"
	@$(call once,generate/views,$(NF) generate gan --preset $(GAN_PRESET) --samples $(GAN_SAMPLES) \
	  --render $(GAN_RENDER) --resolution $(PIC_RES) --clip-check $(CLIP_CHECK) $(GAN_ARGS) $(PROGRESS))
	@$(call once,$(INTERP_PNG),$(NF) generate interpolate $(INTERP_A) $(INTERP_B) --resolution $(PIC_RES) $(PROGRESS))
	@echo "== 12/13 status: what the workspace holds, and whether anything is stale   [$(elapsed) s]"
	@$(call ws,$(NF) status) || echo "   (nfkit status: something above is stale or unreadable)"
	@echo "== 13/13 report   [$(elapsed) s]"
	@$(NFBIN)/python -m nfkit.eval.report $(DEMO) --resolution $(PIC_RES) --examples $(REPORT_EXAMPLES) --quiet
	@echo "demo finished in $(elapsed) s; report: $(abspath $(DEMO))/report.md"

# ----------------------------------------------------------------------------------- smoke
# The same recipe on a tiny configuration (2 classes x 3 objects, tiny presets) in a temporary
# folder, then a check of its outputs (nfkit/eval/smoke_check.py). SMOKE_DIR=DIR keeps the
# workspace there (a rerun reuses it); the temporary one is removed after a passing check.
SMOKE_DIR  ?=
SMOKE_GAN_SAMPLES ?= 4
SMOKE_VARS ?= OBJECTS=3 CLASSES=car,chair VIEWS=8 RESOLUTION=32 VAL_FRACTION=0.34 TEST_FRACTION=0.34 \
              PRESET=tiny FIT_ARGS="--set steps=30" ENC_PRESET=tiny CLIP_PRESET=tiny CLIP_MODEL=nfkit-clip-micro \
              MAP_PRESET=tiny CLS_PRESET=tiny GAN_PRESET=tiny GAN_SAMPLES=$(SMOKE_GAN_SAMPLES) GAN_RENDER=1 CLIP_CHECK=1 \
              RENDER_NERFS=1 RENDER_VIEWS=2 RENDER_ARGS="--samples 48 --grid-res 24" PIC_RES=32 ZS_VIEWS=1 \
              ZS_LIMIT=2 REPORT_EXAMPLES=1 PROGRESS=--no-progress

smoke: install
	@dir="$(SMOKE_DIR)"; [ -n "$$dir" ] || dir=$$(mktemp -d "$${TMPDIR:-/tmp}/nfkit-smoke.XXXXXX"); \
	start=$$(date +%s); \
	$(MAKE) --no-print-directory demo DEMO="$$dir" $(SMOKE_VARS) && \
	$(NFBIN)/python -m nfkit.eval.smoke_check "$$dir" --gan-samples $(SMOKE_GAN_SAMPLES) || \
	  { echo "smoke: FAILED; the workspace is kept in $$dir"; exit 1; }; \
	echo "smoke: passed in $$(( $$(date +%s) - start )) s"; \
	if [ -z "$(SMOKE_DIR)" ]; then rm -rf "$$dir"; fi

bench: install
	$(BIN)/python -m nfkit.bench.fit --out $(DEMO)/bench --objects 8
	$(BIN)/python -m nfkit.bench.fit --out $(DEMO)/bench --data nfkit/bench/realset/objects
	$(BIN)/python -m nfkit.bench.graphs --out $(DEMO)/bench
	$(BIN)/python -m nfkit.bench.encoder --out $(DEMO)/bench
	$(BIN)/python -m nfkit.bench.retrieval --out $(DEMO)/bench
	@if [ -f $(DEMO)/encoder/best.h5 ]; then \
	  $(BIN)/python -m nfkit.bench.classify --nerfs $(DEMO)/nerfs --embeddings $(DEMO)/embeddings \
	    --encoder $(DEMO)/encoder/best.h5 --out $(DEMO)/bench; \
	else echo "bench: no $(DEMO)/encoder/best.h5 (run make demo first): weights vs rendering not measured"; fi
	$(BIN)/python -m nfkit.bench.summary --out $(DEMO)/bench

# one process vs torchrun --nproc-per-node 2 for every stage that scales out (README, "Scale-out")
scaleout: install
	$(BIN)/python -m nfkit.bench.scaleout --out $(DEMO)/scaleout

clean:
	rm -rf $(DEMO) .pytest_cache
