#!/usr/bin/env bash
# Train several `photo` variants at once on the GPU machine (each capped at SECONDS), then measure
# every variant's snapshots on the held-out tiles (see eval/gpu/gpu_train_photo.sh). Results to $OUT.
#   bash eval/gpu/gpu_photo_variants.sh SECONDS
set -uo pipefail
cap=${1:?seconds}
source eval/gpu/gpu_env.sh
dc() { python3 -c 'from diffcodec_cli import main; main()' "$@"; }
common=(--config configs/photo_gpu.toml --set train.snapshot_every_steps=500 --set train.checkpoint_every_steps=1000000)
# A: the shipped network, warm-started from the shipped weights, lr 2e-4 falling to 0
timeout $cap python3 -c 'from diffcodec_cli import main; main()' train "${common[@]}" --out runs/vA --init photo --max-steps 25000 --set model.base_channels=32 \
  --set model.dropout=0.0 --set train.batch_size=128 --set train.lr=2e-4 --set train.warmup_steps=100 --set train.decay_from=19001 > /tmp/vA.log 2>&1 &
# C: the shipped network, warm start, batch 32 as on the CPU, lr 2e-4 falling to 0
timeout $cap python3 -c 'from diffcodec_cli import main; main()' train "${common[@]}" --out runs/vC --init photo --max-steps 25000 --set model.base_channels=32 \
  --set model.dropout=0.0 --set train.batch_size=32 --set train.lr=2e-4 --set train.warmup_steps=100 --set train.decay_from=19001 > /tmp/vC.log 2>&1 &
wait
for v in A C; do
  tail -c 300 /tmp/v$v.log | tr '\r' '\n' | tail -2
  python3 eval/learning_curve.py --run runs/v$v --data .gpudata/heldout_tiles --limit 200 --stride 2 \
    --json $OUT/curve_$v.json --plot /tmp/curve_$v.png 2>&1 | tail -12
  f=$(ls runs/v$v/snapshots | tail -1); cp runs/v$v/snapshots/$f $OUT/ema_$v.safetensors; echo "$v $f"
done
