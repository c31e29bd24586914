#!/usr/bin/env bash
# The GPU run behind the shipped `photo` weights of step 29800 (2026-11-24, one NVIDIA H200):
# 64x64 crops of all 44 training photos, batch 256, warm start from the step-19000 weights.
# The photos travel as lossless WebP in two halves (python eval/photos_webp.py ../shared/data/photos),
# one per call, gathered in /root/photos while the machine stays warm:
#   call 1 (carry .whl .gpu/a):  bash eval/gpu_photo_crop64.sh gather
#   call 2 (carry .whl .gpu/b):  bash eval/gpu_photo_crop64.sh 24800 --init photo
#   call 3 (carry .whl):         bash eval/gpu_photo_crop64.sh 29800 --resume --set train.decay_from=24800
# Each call copies the EMA weights (safetensors), the log and the config to $OUT; export on the CPU
# side with the shipped config's [data] section (native 32x32 tile, held-out photos).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/pp && ln -sfn "$PWD/cli" /tmp/pp/diffcodec_cli && ln -sfn "$PWD/models" /tmp/pp/diffcodec_models
export PYTHONPATH=$PWD:/tmp/pp:/tmp/site PYTHONUNBUFFERED=1
mkdir -p /root/photos && for d in .gpu/a .gpu/b; do [ -d $d ] && cp --update=none $d/*.webp /root/photos/; done
echo "photos: $(ls /root/photos | wc -l)"
[ "${1:-}" = gather ] && exit 0
steps=$1; shift
run=/root/runs/photo
python3 -m diffcodec train --config configs/photo.toml --out $run --max-steps "$steps" \
  --set data.path=/root/photos --set "data.holdout=[]" --set data.crop=64 --set train.batch_size=256 \
  --set train.lr=3e-4 --set train.checkpoint_every_s=60 --set train.log_every=100 \
  --set train.snapshot_every_steps=0 "$@" 2>&1 | tr '\r' '\n' | grep -v "^training \[" | tail -3
python3 -c 'import sys, torch; from safetensors.torch import save_file
s = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
save_file({k: v.contiguous() for k, v in s["ema"].items()}, sys.argv[2]); print("step", s["step"])' \
  $run/last.pt "$OUT/ema_step$(python3 -c "import torch; print(torch.load('$run/last.pt', map_location='cpu', weights_only=True)['step'])").safetensors"
cp $run/train_log.jsonl $run/config.json "$OUT/"
