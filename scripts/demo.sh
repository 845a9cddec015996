#!/usr/bin/env bash
# The main job: every stage that exists so far, on the built-in procedural dataset, ending with
# a short report (DEMO/report.md). Rerunning resumes: finished stages and NeRFs are skipped.
#   DEMO     output folder                (default demo_out)
#   OBJECTS  objects per class            (default 2 -> 26 objects, 78 NeRFs)
#   PRESET   fit-nerfs preset             (default cpu)
set -euo pipefail
DEMO=${DEMO:-demo_out}
OBJECTS=${OBJECTS:-2}
PRESET=${PRESET:-cpu}
BIN=${BIN:-.venv/bin}
NF="$BIN/nfkit"
mkdir -p "$DEMO"

echo "== 1/5 synth: procedural ShapenetRender stand-in"
if [ -f "$DEMO/data/dataset.json" ]; then
  echo "   $DEMO/data exists, kept"
else
  "$NF" synth "$DEMO/data" --objects-per-class "$OBJECTS" --views 36 --resolution 64 \
    --preview "$DEMO/dataset_preview.png"
fi
"$NF" check-data "$DEMO/data"

echo "== 2/5 fit-nerfs: one NeRF per object for mlp, tri and hash (preset $PRESET)"
"$NF" fit-nerfs "$DEMO/data" --arch mlp --arch tri --arch hash --preset "$PRESET" --out "$DEMO/nerfs"

echo "== 3/5 render: fitted NeRFs next to ground truth"
for arch in mlp tri hash; do
  "$NF" render "$DEMO/nerfs" --arch "$arch" --cameras dataset --dataset "$DEMO/data" --views 4 --limit 2 \
    --out "$DEMO/views" --no-progress
done

echo "== 4/5 build-graphs: parameter graphs"
"$NF" build-graphs "$DEMO/nerfs" --out "$DEMO/graphs" --stats

echo "== 5/5 report"
"$BIN/python" -m nfkit.eval.report "$DEMO"
