#!/usr/bin/env bash
# Does more training data help the photo model (issue "Full-size photos, part 1")? Two CPU
# fine-tunes of the shipped weights that differ only in their photos, then the bound of each and
# of the shipped model on tiles of 128 (the codec's tile), on the same tiles, chain and seed:
#   more    the 44 training photos and the 288 of eval/data/extra_photos.csv (eval/extra_photos.py)
#   base44  the 44 training photos alone (the control: the same steps, crops and schedule)
# Each run: warm start from `photo` (step 29800, fresh Adam), 2400 steps of batch 8 of 128x128
# crops, lr 1e-4 after 50 warm-up steps falling linearly to 0, EMA 0.999, one thread; the two run
# side by side, one core each (about 100 minutes). Then, one core each again, the bound on the
# validation photos (eval/data/val768, 60 of their 120 tiles, spread evenly) and on held-out Kodak
# tiles (KODAK, 60 spread over the 24 images; reporting only), on the fitted 100-step chain.
# Usage: MIRRORS=/work/.mirror KODAK=DIR bash eval/studies/more_photos.sh WORKDIR [OUT]
set -euo pipefail
ROOT=$(realpath "$(dirname "$0")/../..")
mkdir -p "$1"
W=$(realpath "$1") OUT=$(realpath -m "${2:-$ROOT/eval/studies/results}")
MIRRORS=$(realpath "${MIRRORS:-/work/.mirror}") PH=$(realpath "${PHOTOS:-$ROOT/../shared/data/photos}")
KODAK=${KODAK:+$(realpath "$KODAK")}
cd "$ROOT"
CHAIN=@eval/results/steps_photo_fit100.txt
mkdir -p "$W/base44" "$OUT"
python eval/extra_photos.py "$MIRRORS" "$W/photos_more" --with "$PH"
for i in $(seq -w 1 44); do ln -sf "$(realpath "$PH/0$i.png")" "$W/base44/0$i.png"; done
train() {   # NAME DATA
  diffcodec train --config configs/photo.toml --out "$W/runs/$1" --init photo --max-steps 32200 --data "$2" \
    --set data.crop=128 --set "data.holdout=[]" --set train.batch_size=8 --set train.lr=1e-4 \
    --set train.warmup_steps=50 --set train.decay_from=29800 --set train.snapshot_every_steps=400 \
    --set train.checkpoint_every_steps=200 --set train.log_every=10 --set train.threads=1 > "$W/runs/$1.log" 2>&1
  python eval/gpu/export_run.py "$W/runs/$1/last.pt" "$W/models/$1" configs/photo.toml
}
mkdir -p "$W/runs"
train more "$W/photos_more" & a=$!
train base44 "$W/base44" & b=$!
wait $a && wait $b
bound() {   # MODEL NAME
  diffcodec bpd --model "$1" --data eval/data/val768 --tile 128 --limit 60 --steps $CHAIN --batch-size 20 \
    --json "$OUT/more_photos_val128_$2.json" > /dev/null
  [ -z "$KODAK" ] || diffcodec bpd --model "$1" --data "$KODAK" --tile 128 --limit 60 --steps $CHAIN \
    --batch-size 20 --json "$OUT/more_photos_kodak128_$2.json" > /dev/null
}
export OMP_NUM_THREADS=1
(bound photo shipped && bound "$W/models/base44" base44) & a=$!
bound "$W/models/more" more & b=$!
wait $a && wait $b
python - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
for data in ("val128", "kodak128"):
    row = []
    for name in ("shipped", "base44", "more"):
        path = f"{out}/more_photos_{data}_{name}.json"
        if data == "kodak128" and not os.path.exists(path):
            break                   # no KODAK given
        row.append(f"{name} {json.load(open(path))['total_bpd']:.4f}")
    if row:
        print(data, "bits/dim:", ", ".join(row))
EOF
