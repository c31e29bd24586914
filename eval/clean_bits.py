"""Bits-back's one-time pad against a closed-form bound (diffcodec.evaluation.clean_bits): coded
rate with and without the pad for reverse processes whose variance is r x the posterior's, then
what the pad costs the ANS coder on 1000-step chains of 28x28 images.

    python eval/clean_bits.py > eval/results/clean_bits.txt
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
print("30 random 28x28 images chained on one stack, r = 1 (p is the posterior), 1000 steps")
print("pad   bound   info    net     (bits/dim)  coder overhead (bits/image)")
for pad in (True, False):
    c = chained(r=1.0, steps=1000, n=30, pad=pad)
    print(f"{'yes' if pad else 'no':<5} {c['bound_bpd']:.4f}  {c['info_bpd']:.4f}  {c['net_bpd']:.4f}  "
          f"{c['coder_overhead_bits']:.2f}", flush=True)
