#!/usr/bin/env bash
# The demo-brain recipe: autoencoder, then diffusion UNet, then ControlNet, each exported beside
# SynthMedLib/models/demo-brain/card.json when it finishes. Every stage resumes from its
# checkpoint, so running this again after an interruption continues where it stopped.
#   training/demo-brain/run_recipe.sh            (from anywhere; uses the repository's .venv)
#   CODE=/path/to/snapshot training/demo-brain/run_recipe.sh
#   RECIPE=demo-brain-v2 training/demo-brain/run_recipe.sh   (the configs training/demo-brain-v2/train-<stage>.json)
# CODE: where SynthMedLib is imported from (default: this repository). Pointing it at a
# 'git archive' snapshot keeps a long run immune to edits in a shared working tree.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
CODE=${CODE:-$PWD}
for stage in ${STAGES:-autoencoder diffusion controlnet}; do
  PYTHONPATH="$CODE" "$PY" -P -m SynthMedLib.cli train "$stage" \
    --config "training/${RECIPE:-demo-brain}/train-$stage.json"
done
