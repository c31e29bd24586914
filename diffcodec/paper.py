"""Published numbers we compare against (Ho et al. 2020, CIFAR-10 test set, T = 1000)."""

# Table 4: cumulative rate (bits/dim) and RMSE (0..255) after each block of 100 reverse steps.
TABLE4_STEPS = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
TABLE4_RATE = [0.00000, 0.00013, 0.00081, 0.00282, 0.00716, 0.01507, 0.02866, 0.05415, 0.11994, 1.77581]
TABLE4_RMSE = [67.60, 60.97, 54.19, 46.13, 38.03, 30.81, 24.44, 18.47, 12.02, 0.95]
