#!/usr/bin/env bash
# Trains configs/photo_large.toml (or $CONFIG) on one GPU, resumable, and exports its EMA weights
# as a model directory, $OUT/<the config's name>. The training photos travel as lossless WebP, gathered
# in /root/photos while the machine stays warm; 045-049 (validation) never travel. The 44 and the
# 288 of eval/data/extra_photos.csv: python eval/extra_photos.py /work/.mirror /tmp/photos_extra,
# then python eval/gpu/photos_webp.py ../shared/data/photos /tmp/photos_extra (parts .gpu/01, 02, ...).
#   call 1..k (carry .whl .gpu/<part>):  bash eval/gpu/gpu_photo_large.sh gather
#   call k+1 (carry .whl):               bash eval/gpu/gpu_photo_large.sh STEPS [--resume]
# The cheaper network distilled from photo (eval/README.md, "A cheaper network"), at a GPU's batch:
#   CONFIG=configs/photo_lite.toml bash eval/gpu/gpu_photo_large.sh 40000 --init photo --set train.batch_size=64 --set train.threads=0
#   (a later call: --resume in place of --init photo)
# Decide on the validation photos before shipping: diffcodec bpd --model $OUT/photo_large
#   --data eval/data/val768 --tile 0 --steps 100 against the shipped photo's figure in its card.
set -uo pipefail
source eval/gpu/gpu_env.sh || exit 1
mkdir -p /root/photos && for f in .gpu/*/*.webp; do [ -e "$f" ] && [ ! -e "/root/photos/${f##*/}" ] && cp "$f" /root/photos/; done
echo "photos: $(ls /root/photos | wc -l)"
[ "${1:-}" = gather ] && exit 0
steps=$1; shift
config=${CONFIG:-configs/photo_large.toml} name=$(basename "${CONFIG:-photo_large.toml}" .toml)
run=${RUN:-/root/runs/$name}
python3 -m diffcodec train --config $config --out $run --max-steps "$steps" \
  --set data.path=/root/photos --set "data.holdout=[]" "$@" 2>&1 | tr '\r' '\n' | grep -v "^training \[" | tail -3 || exit 1
python3 eval/gpu/export_run.py $run/last.pt "$OUT/$name" $config || exit 1
cp $run/train_log.jsonl $run/config.json "$OUT/"
