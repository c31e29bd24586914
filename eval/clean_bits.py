"""Bits-back's one-time pad against a closed-form bound (diffcodec.evaluation.clean_bits): coded
rate with and without the pad for reverse processes whose variance is r x the posterior's.

    python eval/clean_bits.py > eval/results/clean_bits.txt
"""
from diffcodec.evaluation.clean_bits import check

print("r     steps  dims    bound   coded (pad)  coded (no pad)  noise (1 sd)   bits/dim")
for steps in (20, 100):
    for r in (0.8, 1.2, 1.5):
        c = check(r=r, steps=steps, side=256)
        print(f"{r:<5} {steps:<6} {c['dims']:<7} {c['bound_bpd']:.4f}  {c['coded_bpd']:.4f} ({c['coded_bpd'] - c['bound_bpd']:+.4f})"
              f"  {c['coded_without_pad_bpd']:.4f} ({c['coded_without_pad_bpd'] - c['bound_bpd']:+.4f})  {c['noise_bpd']:.4f}",
              flush=True)
