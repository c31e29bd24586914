#!/usr/bin/env bash
# A cheaper photo network (issue "Full-size photos, part 2": the decode targets are network-bound):
# configs/photo_lite.toml (num_res_blocks [0, 1, 1]: no residual block at full resolution on the
# way down and one instead of two on the way up; 24% less time per call) distilled from photo on
# the CPU, then compared with photo on the validation photos:
#   1. training: --init photo copies every tensor that fits, train.teacher = photo makes the loss
#      the distance to photo's outputs; 4000 steps of batch 8 of 128x128 crops of the 44 training
#      photos, two threads (about 90 minutes);
#   2. the bound on 60 tiles of 128 of the validation photos, fitted 100-step chain (photo's
#      figure on the same tiles, chain and seed: more_photos_val128_shipped.json);
#   3. real rcc files on the five 256x256 validation crops, BD-rates against photo's rcc curve,
#      its ideal curve and JPEG (the curves of eval/results/rd_photo256);
#   4. speed: eval/bench_codec.py, both models in one run, 256x256 at quality 75 and 768x512 at
#      full rate (the two targets missed furthest).
# Usage: bash eval/studies/photo_lite.sh WORKDIR [OUT]; run it alone on the machine.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bash eval/studies/photo_lite.sh WORKDIR [OUT]" >&2; exit 2; }
ROOT=$(realpath "$(dirname "$0")/../..")
mkdir -p "$1"
W=$(realpath "$1") OUT=$(realpath -m "${2:-$ROOT/eval/studies/results}")
cd "$ROOT"
mkdir -p "$OUT"
# a rerun resumes the run in WORKDIR (--init applies only where it has no checkpoint yet)
diffcodec train --config configs/photo_lite.toml --out "$W/run" --init photo --resume >> "$W/train.log" 2>&1
python eval/gpu/export_run.py "$W/run/last.pt" "$W/photo-lite" configs/photo.toml
cp "$W/run/train_log.jsonl" "$OUT/photo_lite_train_log.jsonl"
diffcodec bpd --model "$W/photo-lite" --data eval/data/val768 --tile 128 --limit 60 \
  --steps @eval/results/steps_photo_fit100.txt --batch-size 20 --json "$OUT/photo_lite_val128.json" > /dev/null
RD="$W/rd_val256"
mkdir -p "$RD"
cp eval/results/rd_photo256/{jpeg,avif,webp,jxl,ideal}.json "$RD/"
cp eval/results/rd_photo256/rcc.json "$RD/rcc-photo.json"
diffcodec eval rd --model "$W/photo-lite" --data ../shared/data/photos --tile 256 --limit 5 --codecs rcc \
  --anchor jpeg --keep -o "$RD" > /dev/null
cp "$RD/rcc.json" "$OUT/photo_lite_rd_val256_rcc.json"
for a in jpeg rcc-photo ideal avif; do python eval/bd_table.py "$RD" --anchor $a; done > "$OUT/photo_lite_rd_val256.txt"
python eval/bench_codec.py --sizes 256x256 --qualities 75 --model photo,"$W/photo-lite" \
  --json "$OUT/photo_lite_bench.json" | tee "$OUT/photo_lite_bench.txt"
python eval/bench_codec.py --sizes 768x512 --qualities 100 --model photo,"$W/photo-lite" \
  --json "$OUT/photo_lite_bench.json" --append | tee -a "$OUT/photo_lite_bench.txt"
