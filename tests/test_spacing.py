"""The bound-optimal respacing: its jump costs against the respaced diffusion's own bound terms, and
its shortest-path search against brute force."""
import itertools

import numpy as np
import pytest
import torch

from conftest import synthetic_images
from diffcodec.core.diffusion import GaussianDiffusion
from diffcodec.evaluation.spacing import best_spacing, chain_cost, costs_at
from diffcodec.io.pixels import to_model_tensor


@pytest.mark.parametrize("name,var_type", [("tiny", None), ("tinyrgb", None), ("tinyrgb", "fixedlarge")])
def test_jump_costs_match_the_respaced_chains_terms(name, var_type, request):
    """Every jump t -> s priced from one call at (x_t, t) of the full chain equals the KL term of
    the two-step chain [s, t] computed by GaussianDiffusion.vb_terms_bpd on the same x_t (learned
    and fixed variances); the decoder row equals that chain's L_0."""
    loaded = request.getfixturevalue(name)
    c = loaded.config.model.in_channels
    imgs = synthetic_images(6, seed=5)[:, None]
    imgs = np.repeat(imgs, c, axis=1)
    x0 = to_model_tensor(imgs)
    dims = x0[0].numel()
    cfg = loaded.config.diffusion
    if var_type:  # the eps-only network of tinyrgb under a fixed large variance
        def chain_of(steps):
            return GaussianDiffusion.from_config(cfg.schedule, cfg.num_timesteps, var_type, steps)
    else:
        chain_of = loaded.diffusion
    full = chain_of(None)
    T = full.num_timesteps
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for t in (0, 1, 17, T - 1):
            tt = torch.full((len(x0),), t, dtype=torch.long)
            x_t = full.q_sample(x0, tt, torch.randn(x0.shape, generator=g))
            row = costs_at(full, loaded.net, x0, t, x_t).numpy()
            targets = range(1, T) if t == 0 else range(t)
            for s in list(targets)[:: max(1, len(targets) // 7)]:
                pair = f"0,{s}" if t == 0 else f"{s},{t}"
                chain = chain_of(pair)
                idx = torch.full((len(x0),), 0 if t == 0 else 1, dtype=torch.long)
                ref = chain.vb_terms_bpd(loaded.net, x0, x_t, idx)["output"].double().mean() * dims
                assert row[s] == pytest.approx(float(ref), rel=2e-4, abs=1e-3), (t, s)
            assert np.isinf(row[0] if t == 0 else row[t:]).all()


def test_best_spacing_is_the_brute_force_optimum():
    rng = np.random.default_rng(0)
    T = 9
    jumps = np.where(np.tri(T, k=-1, dtype=bool), rng.uniform(0.1, 5.0, (T, T)), np.inf)
    jumps[0] = np.inf
    decoder = np.r_[np.inf, rng.uniform(0.0, 3.0, T - 1)]
    for n in (2, 3, 5, T):
        best = min(([0, *mid, T - 1] for mid in itertools.combinations(range(1, T - 1), n - 2)),
                   key=lambda k: chain_cost(jumps, decoder, k))
        kept, cost = best_spacing(jumps, decoder, n)
        assert kept == best
        assert cost == pytest.approx(chain_cost(jumps, decoder, best))
    with pytest.raises(ValueError):
        best_spacing(jumps, decoder, 1)
