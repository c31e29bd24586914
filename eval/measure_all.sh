#!/usr/bin/env bash
# Re-measures every figure that eval/README.md (the lab book), README.md and the model cards quote.
# The evaluators' results go to OUTDIR (default eval/results), the studies' to STUDIES_OUTDIR
# (default eval/studies/results; OUTDIR/studies when only OUTDIR is given).
# Usage: bash eval/measure_all.sh [OUTDIR [STUDIES_OUTDIR]]
# Time: several hours on 2 cores (the first two streams were about 200 minutes before the format-12
# studies and the timing phase were added; not re-timed as a whole), plus about 70 minutes for the
# full T = 1000 bound of fmnist on 1000 images unless SKIP_FULL_BOUND=1. SKIP_PHOTO_BPD=1 skips the
# photo bounds. JPEG XL needs the baselines extra: pip install ".[baselines]".
# Not here: the GPU training runs (eval/gpu/README.md gives their commands), the CPU fine-tunes of
# eval/studies/more_photos.sh (two hours, and it needs the photo repositories' mirrors), the CPU
# distillation of eval/studies/photo_lite.sh (two hours), the learning curves
# (eval/learning_curve.py needs a training run's snapshots; the model cards give the commands), and
# the figures eval/README.md lists under "Figures without a result file".
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-eval/results}
SOUT=${2:-${1:+$1/studies}}
SOUT=${SOUT:-eval/studies/results}
FM=${FMNIST:-/usr/share/datasets/fashion-mnist}
PH=${PHOTOS:-../shared/data/photos}
VAL=eval/data/val768                 # validation photos 045-049, long side 768 (eval/make_fullsize.py)
KODAK=${KODAK:-}                     # the 24 Kodak images (held out, reporting only; not in the repository)
S=eval/studies
kodak_copy() {   # kodak_copy DIR NN...: each named Kodak image into DIR (PNG, or a lossless WebP copy)
  local d=$1 n e; shift
  for n; do for e in png webp; do [ -f "$KODAK/kodim$n.$e" ] && { cp "$KODAK/kodim$n.$e" "$d/"; break; }; done; done
}
mkdir -p "$OUT" "$SOUT"
export OMP_NUM_THREADS=1

# Full T = 1000 bound of fmnist, sharded over both cores.
[ -n "${SKIP_FULL_BOUND:-}" ] || torchrun --standalone --nproc_per_node 2 -m diffcodec bpd --model fmnist \
  --data "$FM" --limit 1000 --json "$OUT/bpd_fmnist_1000img_fullT.json" > "$OUT/bpd_fmnist_1000img_fullT.log" 2>&1

# Two streams, one core each.
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
  if [ -z "${SKIP_PHOTO_BPD:-}" ]; then
    diffcodec bpd --model photo --data "$PH" --limit 200 --steps 100 --json "$OUT/bpd_photo_200tiles_100steps.json"
    python $S/respacing_study.py --model photo --data "$PH" --limit 200 --specs 100,ddim100,quad100,geo5,all --out "$SOUT/respacing_photo.txt"
    diffcodec fit-steps --model photo --data "$PH" --limit 50 -n 100 -o "$OUT/steps_photo_fit100.txt" --force
    diffcodec bpd --model photo --data "$PH" --limit 200 --steps "@$OUT/steps_photo_fit100.txt" --json "$OUT/bpd_photo_200tiles_fit100.json"
  fi
  python eval/baselines_lossless.py --model photo --data "$PH" --limit 200 > "$OUT/lossless_photo.txt"
  python eval/baselines_lossless.py --model fmnist --data "$FM" --limit 1000 > "$OUT/lossless_fmnist.txt"
  diffcodec eval progressive --model fmnist -o "$OUT/figure6_fmnist.png" -n 8 --force
  diffcodec eval progressive --model fmnist -o "$OUT/figure7_fmnist.png" --shared-xt -n 6 --force
  diffcodec sample --model fmnist -n 64 -o "$OUT/samples_fmnist.png" --force
  # studies on photos (256x256 crops of training photos)
  python $S/schedule_study.py --model photo --photos "$PH" --specs geo9,geo6,geo9c40,geo9c30,geo9c20,geo12c20,geo6c20,geo9c10,geo6c10,all \
    --records "$SOUT/schedule_study_photo.json" > "$SOUT/schedule_study_photo.txt"
  python $S/tuq_sweep.py --data "$PH" > "$SOUT/tuq_sweep.txt"
  python $S/tuq_sweep.py --data "$PH" --settings "0.25:quad10 0.18:quad10 0.35:quad10 0.25:quad9 0.25:quad11 0.35:quad11 0.18:quad9 0.5:quad10" > "$SOUT/tuq_sweep_thresholds.txt"
  python $S/tuq_overhead.py --data "$PH" > "$SOUT/tuq_overhead.txt"
  python $S/tuq_overhead.py --data "$PH" --backend tuqrcc --chains quad14 > "$SOUT/tuqrcc_overhead.txt"
  python $S/tuq_sweep.py --data "$PH" --backend tuqrcc --settings "0.25:quad14 0.25:quad17" > "$SOUT/tuqrcc_sweep.txt"
  python $S/tuq_sweep.py --data "$PH" --backend tuqrcc --settings "0.5:quad14 0.35:quad14" > "$SOUT/tuqrcc_sweep_thresholds.txt"
  python $S/tuq_sweep.py --data "$PH" --backend tuqrcc --settings "0.25:quad14" --aims 1,1.6 > "$SOUT/tuqrcc_aim_sweep.txt"
  python $S/tuq_sweep.py --data "$PH" --backend rcc --settings "1.6:geo9 1.6:geo12 1:geo9" > "$SOUT/rcc_photo_sweep.txt"
  python $S/tuq_sweep.py --data "$PH" --backend rcc --settings "1.6:geo9 1.6:geo6" > "$SOUT/rcc_photo_sweep_geo6.txt"
  python $S/tuq_sweep.py --data "$PH" --backend rcc --settings "1.6:geo9c20 1.6:geo9c40" > "$SOUT/rcc_photo_sweep_caps.txt"
) > "$OUT/stream_a.log" 2>&1 &
(
  python eval/studies/bench_backends.py --threads 1 --photo-only --photo-backends uq,tuq --json "$OUT/bench_codec.json" > "$OUT/bench_codec.log"
  python eval/studies/bench_backends.py --threads 1 --photo-backends tuqrcc,rcc --json "$OUT/bench_codec_v10.json" > "$OUT/bench_codec_v10.log"
  diffcodec eval rd --model fmnist --data "$FM" --limit 100 --codecs ideal,rcc,uq,tuq,tuqrcc,jpeg,webp,avif,jpeg2000,jxl --anchor webp -o "$OUT/rd_fmnist"
  diffcodec eval rd --model photo --data "$PH" --tile 256 --limit 5 --codecs uq,tuq,tuqrcc,rcc,jpeg,webp,avif,jpeg2000,jxl,ideal --anchor jpeg -o "$OUT/rd_photo256"
  (python eval/bd_table.py "$OUT/rd_photo256" --anchor avif; python eval/bd_table.py "$OUT/rd_photo256" --anchor avif --range 28 42) > "$OUT/rd_photo256/bd_vs_avif.txt"
  c=$(mktemp -d) && cp "$OUT"/rd_photo256/{avif,jpeg,ideal}.json "$c/" \
    && diffcodec eval rd --model photo --data "$PH" --tile 256 --limit 5 --codecs rcc --steps geo12c30 --anchor jpeg --keep -o "$c" \
    && cp "$c/rcc.json" "$SOUT/rcc_photo256_geo12c30.json"; rm -rf "$c"   # the 256x256 chain not taken
  diffcodec eval rd --model photo --data "$PH" --tile 256 --limit 5 --codecs rcc,ideal,jpeg,avif --anchor jpeg -o "$OUT/rd_photo256_v14"
  diffcodec eval rd --model photo --data "$PH" --tile 256 --limit 5 --codecs rcc,ideal,jpeg,webp,avif,jpeg2000,jxl --anchor jpeg -o "$OUT/rd_photo256_coarse"
  (python eval/bd_table.py "$OUT/rd_photo256_coarse" --anchor avif; python eval/bd_table.py "$OUT/rd_photo256_coarse" --anchor avif --range 28 42) > "$OUT/rd_photo256_coarse/bd_vs_avif.txt"
  diffcodec eval rd --model photo --data "$PH" --tile 128 --limit 10 --codecs rcc,jpeg,webp,avif,jxl --anchor avif -o "$OUT/rd_photo128"
  python eval/studies/chain_length.py --data "$PH" > "$SOUT/chain_length.txt"
  # whole photos: the validation set, and the held-out Kodak set when KODAK names its folder
  python eval/baselines_lossless.py --model photo --data "$VAL" --tile 0 > "$OUT/lossless_photo_val768.txt"
  diffcodec bpd --model photo --data "$VAL" --tile 0 --steps "@$OUT/steps_photo_fit100.txt" --batch-size 1 --json "$OUT/bpd_photo_val768_fit100.json"
  v3=$(mktemp -d) && cp "$VAL"/04[579].png "$v3/" \
    && diffcodec eval rd --model photo --data "$v3" --tile 0 --codecs rcc,jpeg,webp,avif,jxl --anchor avif -o "$OUT/rd_val3"
  # the 768x512 tier's encoder chain (rcc.ENCODER_STEPS, geo12c40) against the implied geo9c40 and a shorter one
  for spec in geo9c40 geo15c60; do
    c=$(mktemp -d) && cp "$OUT"/rd_val3/{avif,jpeg}.json "$c/" \
      && diffcodec eval rd --model photo --data "$v3" --tile 0 --codecs rcc --steps $spec --anchor avif --keep -o "$c" \
      && cp "$c/rcc.json" "$SOUT/rcc_val3_$spec.json"; rm -rf "$c"
  done
  rm -rf "$v3"
  diffcodec encode models/photo/example.png -o "$OUT/example_photo.dfc" --force
  python eval/progressive_decoding.py "$OUT/example_photo.dfc" models/photo/example.png -o "$OUT/progressive_decoding_photo.png"
  if [ -n "$KODAK" ]; then
    python eval/baselines_lossless.py --model photo --data "$KODAK" --tile 0 > "$OUT/lossless_photo_kodak.txt"
    k6=$(mktemp -d) && kodak_copy "$k6" 01 02 03 04 05 06   # the bound costs 100 network calls per photo: six photos
    python eval/baselines_lossless.py --model photo --data "$k6" --tile 0 > "$OUT/lossless_photo_kodak6.txt"
    diffcodec bpd --model photo --data "$k6" --tile 0 --steps "@$OUT/steps_photo_fit100.txt" --batch-size 1 --json "$OUT/bpd_photo_kodak6_fit100.json"
    diffcodec eval rd --model photo --data "$k6" --tile 0 --codecs rcc,jpeg,webp,avif,jxl --anchor avif -o "$OUT/rd_kodak_full6"
    (for a in avif webp jxl jpeg; do python eval/bd_table.py "$OUT/rd_kodak_full6" --anchor $a; done
     python eval/bd_table.py "$OUT/rd_kodak_full6" --anchor avif --range 28 42 --per-image
     python eval/bd_table.py "$OUT/rd_kodak_full6" --anchor webp --range 28 42) > "$OUT/rd_kodak_full6/bd_tables.txt"
    c=$(mktemp -d) && cp "$OUT"/rd_kodak_full6/{avif,jpeg}.json "$c/" \
      && diffcodec eval rd --model photo --data "$k6" --tile 0 --codecs rcc --steps geo9c40 --anchor avif --keep -o "$c" \
      && cp "$c/rcc.json" "$SOUT/rcc_kodak6_geo9c40.json"; rm -rf "$c"   # the chain a file implies
    rm -rf "$k6"
    diffcodec eval rd --model photo --data "$KODAK" --tile 256 --limit 5 --codecs rcc,jpeg,webp,avif,jxl,jpeg2000 --anchor jpeg -o "$OUT/rd_kodak256"
    python eval/bd_table.py "$OUT/rd_kodak256" --anchor avif > "$OUT/rd_kodak256/bd_vs_avif.txt"
    python eval/bd_table.py "$OUT/rd_kodak256" --anchor avif --range 28 42 >> "$OUT/rd_kodak256/bd_vs_avif.txt"
    c=$(mktemp -d) && cp "$OUT"/rd_kodak256/{avif,jpeg}.json "$c/" \
      && diffcodec eval rd --model photo --data "$KODAK" --tile 256 --limit 5 --codecs rcc --steps geo12c30 --anchor jpeg --keep -o "$c" \
      && cp "$c/rcc.json" "$SOUT/rcc_kodak256_geo12c30.json"; rm -rf "$c"
    diffcodec eval rd --model photo --data "$KODAK" --tile 128 --limit 10 --codecs rcc,jpeg,webp,avif,jxl --anchor avif -o "$OUT/rd_kodak128"
    d=$(mktemp -d) && kodak_copy "$d" 01 02 \
      && diffcodec eval rd --model photo --data "$d" --tile 0 --codecs rcc,jpeg,webp,avif,jxl --anchor avif -o "$OUT/rd_kodak_full2" \
      && python eval/baselines_lossless.py --model photo --data "$d" --tile 0 > "$OUT/lossless_photo_kodak2.txt" \
      && diffcodec bpd --model photo --data "$d" --tile 0 --steps "@$OUT/steps_photo_fit100.txt" --batch-size 1 --json "$OUT/bpd_photo_kodak2_fit100_tiles.json"
    (for a in avif webp jxl jpeg; do python eval/bd_table.py "$OUT/rd_kodak_full2" --anchor $a; done
     python eval/bd_table.py "$OUT/rd_kodak_full2" --anchor avif --range 28 42) > "$OUT/rd_kodak_full2/bd_tables.txt"
    rm -rf "$d"
  fi
  diffcodec eval orderings --model fmnist-ardm --data "$FM" --limit 100 --gaussian "$OUT/rd_fmnist" -o "$OUT/orderings_fmnist"
  python eval/bench_net.py --threads 1 --repeats 2 > "$OUT/bench_net.txt"
  # studies on Fashion-MNIST
  python $S/schedule_study.py --fmnist "$FM" --limit 10 > "$SOUT/schedule_study.txt"
  diffcodec fit-steps --model fmnist --data "$FM" --limit 50 -n 59 -o "$OUT/steps_fmnist_fit59.txt" --force
  python $S/schedule_study.py --fmnist "$FM" --limit 10 --specs "geo9,quad59,@$OUT/steps_fmnist_fit59.txt,all" > "$SOUT/schedule_study_fitted.txt"
  python $S/clean_bits.py > "$SOUT/clean_bits.txt"
  for spec in geo9c20 quad59; do   # real rcc files on other chains, against rd_fmnist's ideal and WebP curves
    d=$(mktemp -d) && cp "$OUT/rd_fmnist/ideal.json" "$OUT/rd_fmnist/webp.json" "$d/" \
      && diffcodec eval rd --model fmnist --data "$FM" --limit 100 --codecs rcc --steps $spec --anchor webp --keep -o "$d" \
      && cp "$d/rcc.json" "$SOUT/rcc_${spec}_fmnist.json"
    rm -rf "$d"
  done
  python $S/rcc_index_law.py --data "$FM" --limit 24 > "$SOUT/rcc_index_law.txt"
  python $S/rcc_index_law.py --data "$FM" --limit 48 --classes > "$SOUT/rcc_index_law_classes.txt"
  (python $S/rcc_bias.py --trials 2000 --log2-k 13 --chunk-bits 10; echo
   python $S/rcc_bias.py --trials 2000 --log2-k 13 --chunk-bits 10 --aim 1.6) > "$SOUT/rcc_bias_aim.txt"
  python $S/rcc_aim.py --data "$FM" --limit 20 > "$SOUT/rcc_aim.txt"
  python $S/rcc_aim.py --data "$FM" --limit 20 --rules const:1.8 > "$SOUT/rcc_aim_18.txt"
  python $S/rcc_aim.py --data "$FM" --limit 20 --rules "const:1.6 const:1" > "$SOUT/rcc_aim_codebook.txt"
  (python $S/rcc_aim.py --data "$FM" --limit 20 --rules const:1.6; echo
   python $S/rcc_aim.py --data "$FM" --limit 20 --rules "sharp:1.6,1.3 sharp:1.6,0.8 sharp:1.3,1.3 sharp:1.0,1.6 sharp:1.3,1.6"; echo
   python $S/rcc_aim.py --data "$FM" --limit 20 --rules "sharp:1.6,1,0 sharp:1.6,1,0.5 sharp:1.3,1,0"; echo
   python $S/rcc_aim.py --data "$FM" --limit 20 --rules "chunk:12,13,1.6 chunk:8,13,1.6 chunk:12,14,1.6") > "$SOUT/rcc_aim_v12.txt"
  (python $S/rcc_aim.py --data "$FM" --limit 20 --steps geo13 --rules "const:1.6 const:2"
   python $S/rcc_aim.py --data "$FM" --limit 20 --steps geo6 --rules const:1.6) > "$SOUT/rcc_aim_v12_chains.txt"
) > "$OUT/stream_b.log" 2>&1 &
wait

# Timings alone on the machine, with torch's and OpenBLAS's default threads, as `diffcodec encode` runs.
python eval/bench_codec.py --sizes 64x64,256x256,768x512 --qualities 75,100 --json "$OUT/bench_codec_sizes.json" > "$OUT/bench_codec_sizes.log"
python eval/bench_codec.py --sizes 1536x1024 --qualities 75 --json "$OUT/bench_codec_sizes.json" --append --plot "$OUT/bench_codec_sizes.png" >> "$OUT/bench_codec_sizes.log"
python eval/bench_codec.py --sizes 64x64,256x256,768x512 --qualities 75,100 --json "$OUT/bench_codec_sizes_det.json" --plot "$OUT/bench_codec_sizes_det.png" > "$OUT/bench_codec_sizes_det.log"
python eval/bench_codec.py --sizes 1536x1024 --qualities 75 --json "$OUT/bench_codec_1536_fused.json" > "$OUT/bench_codec_1536_fused.log"
(python eval/bench_runtime.py --size 512x768 --repeats 3 --no-compile
 python eval/bench_runtime.py --size 512x768 --repeats 3 --no-compile --system-malloc) > "$OUT/bench_runtime_512x768.txt"
python eval/bench_codec.py --sizes 64x64,256x256,768x512 --qualities 75,100 --json "$OUT/bench_codec_s23.json" --plot "$OUT/bench_codec_s23.png" > "$OUT/bench_codec_s23.log"
python eval/bench_codec.py --sizes 1536x1024,4224x2816 --qualities 75 --json "$OUT/bench_codec_large.json" --plot "$OUT/bench_codec_large.png" > "$OUT/bench_codec_large.log"
python eval/bench_tiles.py > "$OUT/bench_tiles.txt"
python eval/studies/network_floor.py > "$SOUT/network_floor.txt"
python eval/studies/fixed_norm.py > "$SOUT/fixed_norm.txt"
python eval/studies/tile_study.py --halo 32 > /dev/null    # writes $SOUT/tile_study.txt and .json
python eval/studies/tile_study.py --data eval/data/val768 --names 045,047,049 --tiles 0,256 --halo 32 --out "$SOUT/tile_study_val768.txt" > /dev/null
for h in 4 0; do python eval/studies/tile_study.py --data eval/data/val768 --names 045,047,049 --tiles 0,128 --halo $h --out "$SOUT/tile_study_val768_128h$h.txt" > /dev/null; done
python eval/bench_codec.py --sizes 256x256,768x512 --qualities 75,100 --json "$OUT/bench_codec_s24.json" --plot "$OUT/bench_codec_s24.png" > "$OUT/bench_codec_s24.log"
python eval/bench_codec.py --sizes 256x256,768x512 --qualities 75,100 --json "$OUT/bench_codec_s25.json" --plot "$OUT/bench_codec_s25.png" > "$OUT/bench_codec_s25.log"
python eval/bench_codec.py --sizes 4224x2816 --qualities 75 --json "$OUT/bench_codec_12mp_s25.json" --plot "$OUT/bench_codec_12mp_s25.png" > "$OUT/bench_codec_12mp_s25.log"
for size in 64x64 128x128 256x256 768x512; do   # 768x512 pinned to the chain its results were measured on
  pin=(); [ $size = 768x512 ] && pin=(--steps geo9c40)
  python eval/studies/coarse_steps.py --size $size "${pin[@]}" --json "$SOUT/coarse_steps_${size%%x*}.json" > "$SOUT/coarse_steps_${size%%x*}.txt"; done
python eval/studies/first_step.py --out "$SOUT/first_step.txt"
python eval/studies/variance_scale.py --out "$SOUT/variance_scale.txt"
python eval/studies/first_step.py --sizes 64x64,96x64,128x128 --out "$SOUT/first_step_small.txt"
python eval/studies/variance_scale.py --sizes 64x64,96x64,128x128 --out "$SOUT/variance_scale_small.txt"
python eval/studies/variance_scale.py --model fmnist --fmnist 20 --out "$SOUT/variance_scale_fmnist.txt"
python eval/studies/mean_scale.py --out "$SOUT/mean_scale.txt"
python eval/bench_codec.py --sizes 256x256,768x512 --qualities 75,100 --json "$OUT/bench_codec_s28.json" --plot "$OUT/bench_codec_s28.png" > "$OUT/bench_codec_s28.log"
python eval/bench_codec.py --sizes 4224x2816 --qualities 75 --json "$OUT/bench_codec_12mp_s28.json" --plot "$OUT/bench_codec_12mp_s28.png" > "$OUT/bench_codec_12mp_s28.log"
# on a CPU with AVX2 alone (no bfloat16 kernels; float32 is the encoder's format there), with
# "before" a worktree of the commit before rcc's scoring batches (2f2c6dc):
#   python eval/bench_codec.py --sizes 256x256,768x512 --qualities 75,100 --code /work/before,. --json "$OUT/bench_codec_s29_avx2.json" --plot "$OUT/bench_codec_s29_avx2.png" > "$OUT/bench_codec_s29_avx2.log"
#   python eval/studies/precision_drift.py --sizes 256x256 --threads 2,1,3,4 > "$SOUT/precision_drift_avx2.txt"
#   python eval/bench_runtime.py --size 512x768 --repeats 3 --no-compile > "$OUT/bench_runtime_512x768_avx2.txt"
# the same CPU, with "before" a worktree of ed3dfe1 (the codebook's squares held, zero uniforms):
#   python eval/bench_codec.py --sizes 256x256,768x512 --qualities 75,100 --code /work/before,. --json "$OUT/bench_codec_s30_avx2.json" --plot "$OUT/bench_codec_s30_avx2.png" > "$OUT/bench_codec_s30_avx2.log"
#   python eval/bench_codec.py --sizes 4224x2816 --qualities 75 --json "$OUT/bench_codec_12mp_s30_avx2.json" --plot "$OUT/bench_codec_12mp_s30_avx2.png" > "$OUT/bench_codec_12mp_s30_avx2.log"
#   (echo "## ed3dfe1"; PYTHONPATH=/work/before python eval/studies/encode_memory.py; echo "## now"; python eval/studies/encode_memory.py) > "$SOUT/encode_memory_avx2.txt"
# the same CPU, after the blank first step and the rescale:
#   python eval/bench_codec.py --sizes 256x256,768x512 --qualities 75,100 --json "$OUT/bench_codec_s34_avx2.json" --plot "$OUT/bench_codec_s34_avx2.png" > "$OUT/bench_codec_s34_avx2.log"
#   python eval/studies/int8_conv.py > "$SOUT/int8_conv_avx2.txt"
# the same CPU, with the encoder's geo12c40 above 256x256 (BEFORE: a worktree of 061a5bd; the stored
# 256x256 "main" rows ran geo12c30, then the encoder's chain there, which was not kept):
#   python eval/bench_codec.py --sizes 256x256,768x512 --qualities 75,100 --code BEFORE,. --json "$OUT/bench_codec_s35_avx2.json" --plot "$OUT/bench_codec_s35_avx2.png" > "$OUT/bench_codec_s35_avx2.log"
(echo "## python eval/studies/chain_decode_time.py 256x256 geo9c20,geo12c30"; python eval/studies/chain_decode_time.py 256x256 geo9c20,geo12c30
 echo "## python eval/studies/chain_decode_time.py 768x512 geo9c40,geo12c40"; python eval/studies/chain_decode_time.py 768x512 geo9c40,geo12c40) > "$SOUT/chain_decode_time.txt"
# the same CPU, rcc's variance term at its mean (BEFORE: a worktree of c11e947; the checkouts take turns):
#   python eval/bench_codec.py --sizes 256x256,768x512 --qualities 75,100 --code BEFORE,. --json "$OUT/bench_codec_s36_avx2.json" --plot "$OUT/bench_codec_s36_avx2.png" > "$OUT/bench_codec_s36_avx2.log"
python eval/studies/variance_term.py > "$SOUT/variance_term.txt"
python eval/bench_codec.py --sizes 4224x2816 --qualities 75 --json "$OUT/bench_codec_12mp_s37_avx2.json" --plot "$OUT/bench_codec_12mp_s37_avx2.png" > "$OUT/bench_codec_12mp_s37_avx2.log"   # AVX2 alone, float32
python eval/studies/deep_cache.py --out "$SOUT/deep_cache.txt"
python eval/studies/encode_memory.py --size 4224x2816 --quality 75 > "$SOUT/encode_memory_12mp_avx2.txt"   # AVX2 alone, float32
# $SOUT/rcc_{photo256,val3,kodak256,kodak128,kodak6}_pervar.json are the rcc curves of rd_photo256, rd_val3,
# rd_kodak256, rd_kodak128 and rd_kodak_full6 as c11e947 made them (q's variance term per dimension at every size), and
# rcc_fmnist_mean.json rd_fmnist's with the mean at every size (rcc.EXACT_MAX_DIMS = 0): the
# comparisons of eval/README.md, "q's variance term at its mean"; this code does not re-make them.
(python eval/studies/score_batches.py --size 256x256 --repeats 4
 python eval/studies/score_batches.py --size 768x512 --repeats 2) > "$SOUT/score_batches.txt"
python eval/studies/network_profile.py > "$SOUT/network_profile_avx2.txt"    # AVX2 alone, float32
# rcc_photo_sweep_tiles.txt is this sweep before the rescale (code of 2026-12-06); now:
python eval/studies/tuq_sweep.py --backend rcc --settings "1.6:geo9c20 1.6:geo9c30 1.6:geo12c30 1.6:geo12c40" > "$SOUT/rcc_photo_sweep_rescale.txt"
python eval/studies/precision_drift.py --sizes 256x256 --threads 2,1,3,4 > "$SOUT/precision_drift.txt"
python eval/studies/fixed_order_cost.py > "$SOUT/fixed_order_cost.txt"
(python eval/studies/precision_drift.py --sizes 768x512 --threads 2,1 --formats bfloat16
 python eval/studies/precision_drift.py --sizes 768x512 --threads 2,1 --formats float32) > "$SOUT/precision_drift_768.txt"
env -u OMP_NUM_THREADS python eval/studies/bench_backends.py --photo-backends rcc --json "$OUT/bench_codec_v12.json" > "$OUT/bench_codec_v12.log"
env -u OMP_NUM_THREADS python eval/studies/bench_backends.py --photo-only --photo-backends rcc --json "$OUT/bench_codec_v12_photo.json" > "$OUT/bench_codec_v12_photo.log"
