"""Evaluation: metrics (PSNR, MS-SSIM, BD-rate), the bound in bits/dim, Table 4, rate-distortion
curves against conventional codecs, lossless evaluators, and figures."""
