#!/usr/bin/env bash
# The GPU run behind the shipped `photo` weights of step 29800 (2026-11-24, one NVIDIA H200):
# 64x64 crops of all 44 training photos, batch 256, warm start from the step-19000 weights.
# The photos travel as lossless WebP in parts (python eval/gpu/photos_webp.py ../shared/data/photos;
# two halves then, parts of 20 MiB now), one per call, gathered in /root/photos while the machine
# stays warm:
#   calls 1..k-1 (carry .whl .gpu/<part>):  bash eval/gpu/gpu_photo_crop64.sh gather
#   call k (carry .whl .gpu/<last part>):   bash eval/gpu/gpu_photo_crop64.sh 24800 --init photo
#   call k+1 (carry .whl):                  bash eval/gpu/gpu_photo_crop64.sh 29800 --resume --set train.decay_from=24800
# Each call writes the EMA weights as a model directory, $OUT/photo, and the run's log and config to
# $OUT. To ship the last: cp $OUT/photo/* models/photo/ (on this side), then
# python -c "from diffcodec.training.store import register_model; register_model('photo')".
set -uo pipefail
source eval/gpu/gpu_env.sh || exit 1
mkdir -p /root/photos && for f in .gpu/*/*.webp; do [ -e "$f" ] && [ ! -e "/root/photos/${f##*/}" ] && cp "$f" /root/photos/; done
echo "photos: $(ls /root/photos | wc -l)"
[ "${1:-}" = gather ] && exit 0
steps=$1; shift
run=/root/runs/photo
python3 -m diffcodec train --config configs/photo.toml --out $run --max-steps "$steps" \
  --set data.path=/root/photos --set "data.holdout=[]" --set data.crop=64 --set train.batch_size=256 \
  --set train.lr=3e-4 --set train.checkpoint_every_s=60 --set train.log_every=100 \
  --set train.snapshot_every_steps=0 "$@" 2>&1 | tr '\r' '\n' | grep -v "^training \[" | tail -3 || exit 1
python3 eval/gpu/export_run.py $run/last.pt "$OUT/photo" configs/photo.toml || exit 1
cp $run/train_log.jsonl $run/config.json "$OUT/"
