"""Bits-back's one-time pad and windows against a closed-form bound (diffcodec.evaluation.clean_bits):
coded rate with and without the pad for reverse processes whose variance is r x the posterior's,
then 1000-step chains of 28x28 images split into what the symbols and the ANS coder cost.

    python eval/studies/clean_bits.py > eval/studies/results/clean_bits.txt
"""
from diffcodec.evaluation.clean_bits import chained, check

print("r     steps  dims    bound   coded (pad)  coded (no pad)  noise (1 sd)   bits/dim")
for steps in (20, 100):
    for r in (0.8, 1.2, 1.5):
        c = check(r=r, steps=steps, side=256)
        print(f"{r:<5} {steps:<6} {c['dims']:<7} {c['bound_bpd']:.4f}  {c['coded_bpd']:.4f} ({c['coded_bpd'] - c['bound_bpd']:+.4f})"
              f"  {c['coded_without_pad_bpd']:.4f} ({c['coded_without_pad_bpd'] - c['bound_bpd']:+.4f})  {c['noise_bpd']:.4f}",
              flush=True)

print()
print("30 random 28x28 images chained on one stack, 1000 steps; p's variance r x the posterior's;")
print("grid: bins per smallest noise scale. Bits per image: info - bound (the symbols' information")
print("content against the closed form, +- 1 standard error of sampling noise), net - info (the ANS")
print("coder, the pad's cost included), net - bound.")
print("r    grid pad   bound bits/dim  info - bound     net - info  net - bound")
for r, grid, pad in ((1.0, None, True), (1.0, None, False), (1.0, 32, True), (1.1, None, True), (1.1, 32, True)):
    c = chained(r=r, steps=1000, n=30, pad=pad, grid=grid)
    D = c["dims"]
    print(f"{r:<4} {c['grid']:<4} {'yes' if pad else 'no':<5} {c['bound_bpd']:.4f}          "
          f"{c['info_minus_bound_bits']:+7.2f} +- {c['info_minus_bound_sem_bits']:5.2f}  "
          f"{c['coder_overhead_bits']:+8.2f}    {(c['net_bpd'] - c['bound_bpd']) * D:+8.2f}", flush=True)
