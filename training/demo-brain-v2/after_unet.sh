#!/usr/bin/env bash
# Once the v2 diffusion UNet is exported: evaluate it (issue 4), choose the counterfactual
# guidance on validation subjects, score counterfactual aging (issue 5). One torch thread each,
# beside the ControlNet training. Output under training/demo-brain-v2/eval/.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=training/demo-brain-v2/eval
CARD=training/demo-brain-v2/card.json
until [ -f training/demo-brain-v2/diffusion.safetensors ] && [ -f training/demo-brain-v2/diffusion/result.json ]; do sleep 20; done
mkdir -p "$OUT"
.venv/bin/synthmed evaluate --model "$CARD" --config training/demo-brain-v2/train-diffusion.json \
  --out "$OUT" --threads 1 --no-progress > "$OUT/evaluate.out" 2>&1
.venv/bin/python bench/calibrate_guidance.py --model "$CARD" --scales 1,2,3 --subjects 6 --threads 1 \
  --out "$OUT" > "$OUT/calibrate.out" 2>&1
W=$(python3 -c "import json; print(json.load(open('$OUT/counterfactual_guidance.json'))['chosen'])")
.venv/bin/python bench/score_counterfactual.py --model "$CARD" --subjects 6 --threads 1 --guidance "$W" \
  --out "$OUT" > "$OUT/score_counterfactual.out" 2>&1
echo done > "$OUT/after_unet.done"
