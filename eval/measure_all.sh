#!/usr/bin/env bash
# Re-measures every number quoted in README.md and the model cards (an estimated 200 minutes on 2
# cores, plus about 70 for the full T = 1000 bound of fmnist on 1000 images unless SKIP_FULL_BOUND=1;
# JPEG XL needs the baselines extra: pip install ".[baselines]").
# Usage: bash eval/measure_all.sh [OUTDIR]   (default eval/results)
# Not here: the GPU runs in eval/results/photo_gpu/ (they need a GPU machine; its README gives
# their commands: eval/photo_blocks.py, eval/gpu_train_photo.sh, eval/gpu_photo_variants.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-eval/results}
FM=${FMNIST:-/usr/share/datasets/fashion-mnist}
PH=${PHOTOS:-../shared/data/photos}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
[ -n "${SKIP_FULL_BOUND:-}" ] || torchrun --standalone --nproc_per_node 2 -m diffcodec bpd --model fmnist \
  --data "$FM" --limit 1000 --json "$OUT/bpd_fmnist_1000img_fullT.json" > "$OUT/bpd_fmnist_1000img_fullT.log" 2>&1
(
  diffcodec eval bitsback --model fmnist --data "$FM" --limit 100 --steps 100 --json "$OUT/bitsback_fmnist_100img_100steps.json"
  diffcodec eval bitsback --model fmnist --data "$FM" --limit 100 --steps 1000 --json "$OUT/bitsback_fmnist_100img_1000steps.json"
  for s in 1 2; do
    diffcodec bpd --model fmnist --data "$FM" --limit 100 --seed $s --json "$OUT/bpd_fmnist_100img_fullT_seed$s.json"
    diffcodec bpd --model fmnist --data "$FM" --limit 100 --steps 100 --seed $s --json "$OUT/bpd_fmnist_100img_100steps_seed$s.json"
  done
  python eval/bitsback_seeds.py "$OUT/bitsback_fmnist_100img_100steps.json" "$OUT/bpd_fmnist_100img_100steps_seed1.json" \
    "$OUT/bpd_fmnist_100img_100steps_seed2.json" > "$OUT/bitsback_seeds_100steps.txt"
  python eval/bitsback_seeds.py "$OUT/bitsback_fmnist_100img_1000steps.json" "$OUT/bpd_fmnist_100img_fullT_seed1.json" \
    "$OUT/bpd_fmnist_100img_fullT_seed2.json" > "$OUT/bitsback_seeds_1000steps.txt"
  diffcodec eval ardm --model fmnist-ardm --data "$FM" --limit 100 --order random --code 20 --code-steps all,200,100,50,25 --figure "$OUT/ardm_generation_fmnist.png" --json "$OUT/ardm_fmnist.json"
  diffcodec eval ardm --model fmnist-ardm --data "$FM" --limit 20 --order random --code 20 --code-steps 100 --json "$OUT/ardm_fmnist_20img_payload.json"
  diffcodec eval ardm --model fmnist-ardm --data "$FM" --limit 2 --order random --code 2 --code-steps all,100 --json "$OUT/ardm_fmnist_2img_payload.json"
  diffcodec bpd --model fmnist --data "$FM" --limit 1000 --steps 100 --json "$OUT/bpd_fmnist_1000img_100steps.json"
  diffcodec bpd --model fmnist --data "$FM" --limit 1000 --steps quad100 --json "$OUT/bpd_fmnist_1000img_quad100.json"
  diffcodec fit-steps --model fmnist --data "$FM" --limit 50 -n 100 -o "$OUT/steps_fmnist_fit100.txt" --force
  diffcodec bpd --model fmnist --data "$FM" --limit 1000 --steps "@$OUT/steps_fmnist_fit100.txt" --json "$OUT/bpd_fmnist_1000img_fit100.json"
  diffcodec eval bitsback --model fmnist --data "$FM" --limit 100 --steps "@$OUT/steps_fmnist_fit100.txt" --json "$OUT/bitsback_fmnist_100img_fit100.json"
  diffcodec eval table4 --model fmnist --data "$FM" --limit 50 --json "$OUT/table4_fmnist.json" --plot "$OUT/figure5_fmnist.png"
  [ -n "${SKIP_PHOTO_BPD:-}" ] || diffcodec bpd --model photo --data "$PH" --limit 200 --steps 100 --json "$OUT/bpd_photo_200tiles_100steps.json"
  if [ -z "${SKIP_PHOTO_BPD:-}" ]; then
    python eval/respacing_study.py --model photo --data "$PH" --limit 200 --specs 100,ddim100,quad100,geo5,all --out "$OUT/respacing_photo.txt"
    diffcodec fit-steps --model photo --data "$PH" --limit 50 -n 100 -o "$OUT/steps_photo_fit100.txt" --force
    diffcodec bpd --model photo --data "$PH" --limit 200 --steps "@$OUT/steps_photo_fit100.txt" --json "$OUT/bpd_photo_200tiles_fit100.json"
  fi
  python eval/baselines_lossless.py --model photo --data "$PH" --limit 200 > "$OUT/lossless_photo.txt"
  python eval/baselines_lossless.py --model fmnist --data "$FM" --limit 1000 > "$OUT/lossless_fmnist.txt"
  diffcodec eval progressive --model fmnist -o "$OUT/figure6_fmnist.png" -n 8 --force
  diffcodec eval progressive --model fmnist -o "$OUT/figure7_fmnist.png" --shared-xt -n 6 --force
  diffcodec sample --model fmnist -n 64 -o "$OUT/samples_fmnist.png" --force
) > "$OUT/stream_a.log" 2>&1 &
(
  python eval/bench_codec.py --threads 1 --photo-only --photo-backends uq,tuq --json "$OUT/bench_codec.json" > "$OUT/bench_codec.log"
  python eval/bench_codec.py --threads 1 --photo-backends tuqrcc,rcc --json "$OUT/bench_codec_v10.json" > "$OUT/bench_codec_v10.log"
  diffcodec eval rd --model fmnist --data "$FM" --limit 100 --codecs ideal,rcc,uq,tuq,tuqrcc,jpeg,webp,avif,jpeg2000,jxl --anchor webp -o "$OUT/rd_fmnist"
  diffcodec eval rd --model photo --data "$PH" --tile 256 --limit 5 --codecs uq,tuq,tuqrcc,rcc,jpeg,webp,avif,jpeg2000,jxl,ideal --anchor jpeg -o "$OUT/rd_photo256"
  diffcodec eval orderings --model fmnist-ardm --data "$FM" --limit 100 --gaussian "$OUT/rd_fmnist" -o "$OUT/orderings_fmnist"
  python eval/schedule_study.py --limit 10 > "$OUT/schedule_study.txt"
  diffcodec fit-steps --model fmnist --data "$FM" --limit 50 -n 59 -o "$OUT/steps_fmnist_fit59.txt" --force
  python eval/schedule_study.py --limit 10 --specs "geo9,quad59,@$OUT/steps_fmnist_fit59.txt,all" > "$OUT/schedule_study_fitted.txt"
  python eval/clean_bits.py > "$OUT/clean_bits.txt"
  python eval/rcc_tradeoff.py --limit 5 > "$OUT/rcc_tradeoff.txt"
  python eval/rcc_tradeoff.py --limit 6 --split train --settings "10,13 10,14 10,14,0.925 10,14,0.85" --layouts "" > "$OUT/rcc_tradeoff_train.txt"
  for spec in geo9c20 geo13 quad59; do   # real files on other schedules, against rd_fmnist's ideal and WebP curves
    mkdir -p "$OUT/rd_$spec" && cp "$OUT/rd_fmnist/ideal.json" "$OUT/rd_fmnist/webp.json" "$OUT/rd_$spec/"
    diffcodec eval rd --model fmnist --data "$FM" --limit 100 --codecs rcc --steps $spec --anchor webp --keep -o "$OUT/rd_$spec"
  done
  python eval/rcc_index_law.py --limit 24 > "$OUT/rcc_index_law.txt"
  python eval/tuq_sweep.py > "$OUT/tuq_sweep.txt"
  python eval/tuq_sweep.py --crops 045.png,046.png,047.png,048.png,049.png --settings "0.5:quad15 0.25:quad10" > "$OUT/tuq_sweep_heldout.txt"
  python eval/tuq_sweep.py --settings "0.25:quad10 0.18:quad10 0.35:quad10 0.25:quad9 0.25:quad11 0.35:quad11 0.18:quad9 0.5:quad10" > "$OUT/tuq_sweep_thresholds.txt"
  python eval/tuq_overhead.py > "$OUT/tuq_overhead.txt"
  python eval/tuq_overhead.py --backend tuqrcc --chains quad14 > "$OUT/tuqrcc_overhead.txt"
  python eval/tuq_sweep.py --backend tuqrcc --settings "0.25:quad14 0.25:quad17" > "$OUT/tuqrcc_sweep.txt"
  python eval/tuq_sweep.py --backend tuqrcc --settings "0.5:quad14 0.35:quad14" > "$OUT/tuqrcc_sweep_thresholds.txt"
  python eval/bench_net.py --threads 1 --repeats 2 > "$OUT/bench_net.txt"
  (python eval/rcc_bias.py --trials 2000; echo; python eval/rcc_bias.py --trials 1000 --log2-k 16) > "$OUT/rcc_bias.txt"
  python eval/rcc_aim.py --limit 20 > "$OUT/rcc_aim.txt"
  python eval/rcc_aim.py --limit 20 --rules const:1.8 > "$OUT/rcc_aim_18.txt"
  python eval/tuq_sweep.py --backend tuqrcc --settings "0.25:quad14" --aims 1,1.6 > "$OUT/tuqrcc_aim_sweep.txt"
  (python eval/rcc_bias.py --trials 2000 --log2-k 13 --chunk-bits 10; echo; python eval/rcc_bias.py --trials 2000 --log2-k 13 --chunk-bits 10 --aim 1.6) > "$OUT/rcc_bias_aim.txt"
  python eval/rcc_aim.py --limit 20 --rules "const:1.6 const:1" > "$OUT/rcc_aim_codebook.txt"
  python eval/tuq_sweep.py --backend rcc --settings "1.6:geo9 1.6:geo12 1:geo9" > "$OUT/rcc_photo_sweep.txt"
) > "$OUT/stream_b.log" 2>&1 &
wait
