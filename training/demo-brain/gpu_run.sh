#!/usr/bin/env bash
# One call on a lent GPU machine (see STATUS.md): install the carried wheels (.whl: what the
# machine's image lacks), unpack the carried cohort (.carry/cohort.pack, pack_dataset.py), run
# the GPU training tests, then the timed recipe (gpu_recipe.py). Results go to $OUT.
#   BUDGET=450 OUT=/tmp/out training/demo-brain/gpu_run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
$PY -c "import torch, monai; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'monai', monai.__version__)" || exit 1
$PY training/demo-brain/pack_dataset.py unpack .carry/cohort.pack runs/transfer/cohort || exit 1
if [ "${TEST_SECONDS:-90}" != 0 ]; then  # 0: skip the tests (a second call on the same code)
  timeout "${TEST_SECONDS:-90}" $PY -m pytest -q -p no:cacheprovider Testing/test_train_device.py 2>&1 | tail -4
fi
$PY training/demo-brain/gpu_recipe.py --recipe "${RECIPE:-demo-brain-v3}" --data runs/transfer/cohort \
  --budget "${BUDGET:-450}" --out "$OUT" ${RECIPE_ARGS:-}
