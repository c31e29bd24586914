"""The network as the codecs see it: one evaluation of p_theta(x_{i-1} | x_i) per chain step on
the model's device, in the network format the file records (``core.precision``: number format,
tiles, and coarse calls at high noise, ``core.scales``), returned as float64 numpy vectors for
coding; and the receiver's reconstructions of x_0 from a partly decoded chain (x0_hat, the
deterministic DDIM flow, or ancestral completion), computed with ``GaussianDiffusion``'s own
formulas.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

from ..coding.randomness import PURPOSE_ANCESTRAL, normals
from ..nets.tiling import forward
from ..timing import stage
from . import precision, scales
from .allocator import keep_large_blocks

RECONSTRUCTIONS = ("x0", "flow", "ancestral")
SINGLE_THREAD_DIMS = 4096   # images up to this many values run the network on one CPU thread
RESCALE_RANGE = (0.25, 4.0)  # the variance scale ``residual_scale`` gives is clipped to this range
RESIDUAL_BLOCK = 1 << 20    # values per pass of ``residual_scale`` (its temporaries: 8 MB)


def residual_scale(x: np.ndarray, before: dict) -> float:
    """r_i, the variance scale of chain index i (``core.scales.RESCALE``): the mean over the D
    dimensions of (x_i - mu_{i+1})^2 / (sigma^2_{i+1} / r_{i+1}), where ``before`` is p_theta's
    output at i + 1 (mean, variance, its own "scale" r_{i+1}) and x = x_i was drawn from it. A
    sample of q there gives var_q + (mu_q - mu_p)^2 over the network's variance on average, the
    scale that would have minimised the step's KL; a sample of p gives back r_{i+1}. Clipped to
    RESCALE_RANGE. Summed in float64 in blocks of RESIDUAL_BLOCK values, so a large image needs no
    temporaries of its size; both sides compute it from values they share, and it only moves
    samples (the coded symbols never depend on p)."""
    mean, variance = before["mean"], before["variance"]
    total = 0.0
    for a in range(0, x.size, RESIDUAL_BLOCK):
        d = x[a:a + RESIDUAL_BLOCK] - mean[a:a + RESIDUAL_BLOCK]
        d *= d
        d /= variance[a:a + RESIDUAL_BLOCK]
        total += float(d.sum())
    return float(np.clip(before["scale"] * total / x.size, *RESCALE_RANGE))


@contextlib.contextmanager
def threads_for(dims: int, device, single: bool = False):
    """Run torch on one CPU thread inside this context when ``single`` or for images up to
    SINGLE_THREAD_DIMS values: starting threads costs more than it saves there (and they fight
    rcc's workers and other processes)."""
    import torch

    from ..nets.inference import one_thread

    single = (torch.get_num_threads() > 1 and (single or dims <= SINGLE_THREAD_DIMS)
              and torch.device(device).type == "cpu")
    with one_thread() if single else contextlib.nullcontext():
        yield


class NetworkAdapter:
    """A loaded model on a respaced chain for images of ``shape`` (C, H, W), counting its network
    evaluations and the seconds they take. Vectors are flat float64 numpy arrays of C * H * W."""

    def __init__(self, loaded, steps, shape, network: str = "float32"):
        self.loaded, self.net = loaded, loaded.net
        self.diffusion = loaded.diffusion(steps)
        self.shape = tuple(shape)
        self.network = network      # the network's format (precision.encoder_network)
        fmt = precision.parse(network)
        self.dtype, self.tile, self.halo = precision.dtype(network), fmt.tile, fmt.halo
        self.scales = scales.parse(fmt.scales)
        self.rescale = scales.rescales(fmt.scales)
        self.alphas_cumprod = loaded.diffusion(None).alphas_cumprod if self.scales else None
        self.evals, self.seconds = 0, 0.0
        if self.loaded.device.type == "cpu":
            keep_large_blocks()

    @property
    def num_steps(self) -> int:
        return self.diffusion.num_timesteps

    def out(self, x: np.ndarray, i: int, scale: float = 1.0) -> dict:
        """p_theta(x_{i-1} | x_i) at chain index i: mean, variance, pred_xstart (x0_hat), and the
        ``scale`` r_i its variance carries: 1 at the chain's first step, else ``scale_after`` the
        previous step (1 but where the format rescales, ``core.scales.RESCALE``). Never at i = 0:
        the lossless layer codes x_0's symbols with that variance, and coded symbols must not
        depend on a value computed from network outputs, which drift."""
        out = self._out(x, i)
        scale = 1.0 if i == 0 else scale
        out["scale"] = scale
        if scale != 1.0:
            out["variance"] *= scale
        return out

    def scale_after(self, x: np.ndarray, before: dict) -> float:
        """The variance scale of the step from x_i, drawn from ``before`` (this adapter's ``out`` at
        i + 1): ``residual_scale`` where the format rescales, else 1."""
        return residual_scale(x, before) if self.rescale else 1.0

    def _out(self, x: np.ndarray, i: int) -> dict:
        """``out`` before any rescaling: the network's (or a blank tier's) p_theta."""
        import torch

        t_net = int(self.diffusion.timestep_map[i])     # the original timestep the network sees
        f = scales.factor(self.scales, t_net)
        if f == scales.BLANK and i > 0:     # the step to x_0 always calls the network
            return self._blank(x, i)
        t0 = time.perf_counter()
        xt = torch.from_numpy(x.reshape(1, *self.shape)).float().to(self.loaded.device)
        t = torch.full((1,), i, dtype=torch.long, device=xt.device)
        with stage("network"), threads_for(x.size, xt.device), torch.no_grad():
            if f > 1:   # one call on x_t pooled by f (``core.scales``)
                raw = torch.from_numpy(scales.coarse_output(
                    self._run_coarse, x.reshape(self.shape), t_net, f, self.alphas_cumprod,
                    self.loaded.config.model.learn_sigma))[None].to(xt.device)
            else:
                raw = self._run(xt, self.diffusion.model_t(t))
            # one thread: torch's element-wise exp splits a tensor between threads at points that
            # depend on the thread count, with a scalar loop for each piece's tail whose last bit
            # can differ from the vector loop's; the decoded pixels must not depend on the count
            with threads_for(x.size, xt.device, single=True):
                o = self.diffusion.p_mean_variance(self.net, xt, t, output=raw.float().contiguous())
            del raw, xt
        self.evals += 1
        self.seconds += time.perf_counter() - t0
        return {k: o.pop(k).double().cpu().numpy().ravel() for k in ("mean", "variance", "pred_xstart")}

    def _blank(self, x: np.ndarray, i: int) -> dict:
        """``out`` where the schedule makes no call (``scales.BLANK``): x0_hat = 0 and q's variance,
        so the mean is posterior_mean_coef2 x_i, all in float64."""
        return {"mean": self.posterior_mean(np.zeros_like(x), x, i),
                "variance": np.full(x.size, self.posterior_variance(i)), "pred_xstart": np.zeros(x.size)}

    def _run(self, x, t):
        """The network's raw output in this format at x [1, C, H, W] and original timesteps t
        ([1], float)."""
        import torch

        with precision.autocast(x.device, self.dtype):
            return forward(self.loaded.inference_net, x.contiguous(memory_format=torch.channels_last), t,
                           self.tile, self.halo)

    def _run_coarse(self, y: np.ndarray, t: int) -> np.ndarray:
        """``_run`` on a pooled image y [C, h, w] at original timestep t -> float64 [out_C, h, w]."""
        import torch

        x = torch.from_numpy(y[None]).float().to(self.loaded.device)
        return self._run(x, torch.full((1,), float(t), device=x.device))[0].double().cpu().numpy()

    def posterior_mean(self, x0: np.ndarray, x: np.ndarray, i: int) -> np.ndarray:
        """Mean of q(x_{i-1} | x_i, x_0)."""
        d = self.diffusion
        return d.posterior_mean_coef1[i] * x0 + d.posterior_mean_coef2[i] * x

    def posterior_variance(self, i: int) -> float:
        """Variance of q(x_{i-1} | x_i, x_0) (a schedule constant)."""
        return float(self.diffusion.posterior_variance[i])

    def paper_t(self, i: int) -> int:
        """The paper's 1-based timestep of chain index i."""
        return int(self.diffusion.timestep_map[i]) + 1

    def flow_step(self, x: np.ndarray, i: int, out: dict) -> np.ndarray:
        """Deterministic DDIM step x_i -> x_{i-1} from this step's network output, in float64."""
        import torch

        x0 = torch.from_numpy(np.clip(out["pred_xstart"], -1, 1))
        t = torch.full((1,), i, dtype=torch.long)
        return self.diffusion.ddim_step_from_xstart(torch.from_numpy(x), t, x0).numpy()


def reconstruct(model: NetworkAdapter, x: np.ndarray, i: int, out: dict, how: str, seed: int) -> np.ndarray:
    """x_0 in model range from x_i (``out`` = model.out(x, i)): x0_hat (Eq. 15), the deterministic
    DDIM flow from x_i, or ancestral completion from x_i with noise from the shared seed."""
    if how == "x0" or i == 0:
        return out["pred_xstart"]
    for j in range(i, 0, -1):
        if how == "flow":
            x = model.flow_step(x, j, out)
            out = model.out(x, j - 1)
        else:
            x = out["mean"] + np.sqrt(out["variance"]) * normals(seed, PURPOSE_ANCESTRAL, j, x.size)
            out = model.out(x, j - 1, model.scale_after(x, out))
    return out["pred_xstart"]
