#!/usr/bin/env bash
# Runs the generation recipes of configs/ one after another (each prints its zero-shot and
# fine-tuned scores on the same held-out rows) and collects the figures in
# benchmarks/results/recipes.json. Usage: bash benchmarks/run_recipes.sh [recipe ...]
# Recipes: selfinstruct xquad xsum multi30k news_domain (default: all). Needs ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d ../shared/data ] || { echo "../shared/data is absent: nothing to run"; exit 0; }
recipes=("$@")
[ ${#recipes[@]} -gt 0 ] || recipes=(selfinstruct xquad xsum multi30k news_domain)
mkdir -p benchmarks/results
for r in "${recipes[@]}"; do
  cfg="configs/${r}_smollm2_lora.yaml"
  name="recipe-${r}"
  echo "=== ${r}: tunelab train ${cfg} output.name=${name} output.overwrite=true training.progress=false"
  start=$(date +%s)
  tunelab train "${cfg}" "output.name=${name}" output.overwrite=true training.progress=false \
    2>&1 | tee "benchmarks/results/${name}.log"
  echo "${r} took $(( $(date +%s) - start )) s"
done
python - "${recipes[@]}" <<'PY'
import json, sys
from pathlib import Path
out = {}
for r in sys.argv[1:]:
    info = json.loads(Path(f"runs/recipe-{r}/run.json").read_text())
    s = info["summary"]
    out[r] = {"before": s.get("before"), "before_test": s.get("before_test"),
              "after": info["final"], "wall_seconds": s.get("wall_seconds"),
              "tokens": s.get("tokens"), "seed": json.loads(json.dumps(info.get("seed", 42)))}
Path("benchmarks/results/recipes.json").write_text(json.dumps(out, indent=2))
print(json.dumps(out, indent=2))
PY
