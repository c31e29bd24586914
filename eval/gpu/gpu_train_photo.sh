#!/usr/bin/env bash
# Train `photo` on the GPU machine within a time budget, then measure the bound of every snapshot on
# the 200 held-out tiles that `diffcodec bpd --model photo --data ../shared/data/photos --limit 200`
# uses (written by eval/gpu/photo_blocks.py). Resumes runs/photo_gpu when its checkpoint is there.
#   bash eval/gpu/gpu_train_photo.sh TRAIN_SECONDS [decay]
# With "decay" the learning rate falls linearly to 0 over this call's steps. Copies the EMA
# weights, log and curve to $OUT.
set -euo pipefail
budget=${1:?seconds}; decay=${2:-}
source eval/gpu/gpu_env.sh
run=runs/photo_gpu; cfg=configs/photo_gpu.toml
dc() { python3 -c 'from diffcodec_cli import main; main()' "$@"; }
nvidia-smi -L || true
start=0; [ -f $run/last.pt ] && start=$(python3 -c "import torch;print(torch.load('$run/last.pt',weights_only=True,map_location='cpu')['step'])")
# throughput probe in a scratch run
t0=$(date +%s.%N); dc train --config $cfg --out /tmp/probe --max-steps ${PROBE:-300} > /tmp/probe.log 2>&1; t1=$(date +%s.%N)
rate=$(python3 -c "print(${PROBE:-300}/($t1-$t0))")
steps=$(python3 -c "print(int($rate*($budget-($t1-$t0))) // 100 * 100)")
end=$((start + steps)); echo "start $start, $steps steps at >= $rate it/s, end $end"
extra=(); [ -n "$decay" ] && extra=(--set train.decay_from=$start)
dc train --config $cfg --out $run --resume --max-steps $end "${extra[@]}" 2>&1 | tr '\r' '\n' | grep -v "^training \[" | tail -5
python3 eval/learning_curve.py --run $run --data .gpudata/heldout_tiles --limit 200 --stride 2 \
  --json $OUT/curve.json --plot $OUT/curve.png 2>&1 | tail -30 || true
ls $run/snapshots > $OUT/snapshots.txt 2>/dev/null || true
cp $run/train_log.jsonl $run/config.json $OUT/
python3 - <<PY
import torch; s = torch.load("$run/last.pt", weights_only=True, map_location="cpu"); print("checkpoint step", s["step"])
from safetensors.torch import save_file
save_file({k: v.contiguous() for k, v in s["ema"].items()}, "$OUT/ema_final.safetensors")
PY
