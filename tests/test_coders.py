"""The step-coder contract, run over every registered coder with stub Gaussians (no network).

A new backend registered in diffcodec/coding/ is picked up here automatically: it must round-trip
exactly, decode from any prefix of a file, and write about as many bytes as the information
content of its symbols.
"""
import importlib
import inspect
import pkgutil

import numpy as np
import pytest
import torch

import diffcodec.coding
from diffcodec.coding import registry
from diffcodec.coding.base import StepCoder, StepContext
from diffcodec.coding.randomness import permutation
from diffcodec.coding.entropy import Decoder, encode_layered, info_bits
from diffcodec.coding.ideal import IdealEstimator
from diffcodec.container.format import Container, Header, Layer

D, STEPS, SEED = 40, 6, 3
SHAPE = (1, 5, 8)     # the stub image's (C, H, W)
SPECS = registry.specs()


def stub_p(x, i):
    """A deterministic stand-in for the network: p(x_{i-1} | x_i) = N(0.9 x_i, 0.02 + 0.01 i)."""
    return 0.9 * x, np.full(D, 0.02 + 0.01 * i)


def var_q(i):
    return 0.5 * (0.02 + 0.01 * i)


def x_T():
    return np.random.default_rng(1).standard_normal(D)


def send(coder):
    """Encoder side of a STEPS-step chain towards a fixed x_0. -> (x after each step, ops per step,
    KLs, each step's (mu_q, var_q, mu_p, var_p))."""
    x0 = np.random.default_rng(0).uniform(-1, 1, D)
    x, state, xs, step_ops, kls, gaussians = x_T(), {}, [], [], [], []
    for i in range(STEPS, 0, -1):
        mu_p, var_p = stub_p(x, i)
        ctx = StepContext(i, SEED, var_q(i), mu_p, var_p, state, SHAPE)
        mu_q = 0.5 * x0 + 0.5 * mu_p
        gaussians.append((mu_q, var_q(i), mu_p, var_p))
        ops, x, kl = coder.encode(ctx, mu_q)
        xs.append(x)
        step_ops.append(ops)
        kls.append(kl)
    return xs, step_ops, kls, gaussians


def receive(coder, layers):
    """Decoder side: x after each decoded step; the lossy layers are slices of one stream."""
    x, state, i, xs = x_T(), {}, STEPS, []
    dec = Decoder(b"".join(layer.data for layer in layers))
    for layer in layers:
        for _ in range(layer.steps):
            x = coder.decode(StepContext(i, SEED, var_q(i), *stub_p(x, i), state, SHAPE), dec)
            xs.append(x)
            i -= 1
    return xs


def file_for(spec, step_ops, per_layer=2):
    coder = spec.from_params(b"")
    groups = [step_ops[k:k + per_layer] for k in range(0, len(step_ops), per_layer)]
    slices = encode_layered([[op for ops in g for op in ops] for g in groups])
    layers = [Layer(len(g), d) for g, d in zip(groups, slices)]
    header = Header("m", bytes(32), 5, 8, 1, spec.name, str(STEPS), SEED, False, coder.params())
    return Container(header, layers)


@pytest.fixture(scope="module", params=SPECS, ids=[s.name for s in SPECS])
def coded(request):
    spec = request.param
    xs, step_ops, kls, gaussians = send(spec.from_params(b""))
    return spec, xs, step_ops, kls, gaussians


def test_round_trip_is_exact(coded):
    spec, xs, step_ops, *_ = coded
    layers = [Layer(1, d) for d in encode_layered(step_ops)]
    got = receive(spec.from_params(b""), layers)
    assert len(got) == STEPS
    for a, b in zip(xs, got):
        assert np.array_equal(a, b)


def test_reported_kl_is_the_gaussian_kl_of_the_backends_p(coded):
    """Each step's reported KL (a record's kl_bits) is KL(q || p) in bits, summed over dimensions,
    computed here from the two Gaussians: p is the network's N(mu_p, var_p), and for uq the
    channel its symbols are coded under, N(mu_p, var_q + (s Delta)^2) with s the symbols' coded
    scale (in units of Delta = sqrt(12 var_q)). A KL in nats, reversed, summed over the wrong
    variance or scaled by 1.05 fails; ``kl >= 0``, the check here before, held for all of them."""
    spec, _, step_ops, kls, gaussians = coded
    for ops, kl, (mu_q, vq, mu_p, var_p) in zip(step_ops, kls, gaussians):
        if spec.name == "uq":
            s = ops[1][5]                            # the symbols' op: ("gauss", k, lo, hi, dither, s)
            var_p = vq + 12.0 * vq * s ** 2
        expected = np.sum(np.log2(np.sqrt(var_p / vq))
                          + ((mu_q - mu_p) ** 2 + vq - var_p) / (2.0 * var_p * np.log(2.0)))
        assert kl == pytest.approx(expected, rel=1e-9), spec.name


def test_every_prefix_decodes_its_complete_layers(coded):
    spec, xs, step_ops, *_ = coded
    c = file_for(spec, step_ops)
    data = c.to_bytes()
    for n in range(c.header_size(), len(data) + 1):
        cut = Container.from_bytes(data[:n], {"m": bytes(32)})
        assert cut.header.backend == spec.name
        got = receive(spec.from_params(cut.header.params), cut.layers)
        assert len(got) == sum(l.steps for l in cut.layers)
        for a, b in zip(xs, got):
            assert np.array_equal(a, b)


def test_bytes_match_information_content(coded):
    spec, _, step_ops, *_ = coded
    info = sum(info_bits(op) for ops in step_ops for op in ops)
    layers = file_for(spec, step_ops).layers
    payload = 8 * sum(len(l.data) for l in layers)
    # one range-coded stream for all layers: it pays at most its final word over -log2 P, and
    # cannot beat -log2 P by more than the bytes trimmed from that word
    assert info - 8 <= payload <= info + 32


def test_rounded_up_end_is_shorter_than_the_plain_cut_and_keeps_earlier_layers():
    """The last slice ends at a rounded-up value (``_round_up_end``); compare it with the plain cut,
    found here independently as the shortest prefix of constriction's own stream that decodes."""
    import constriction

    from diffcodec.coding.entropy import _decodes_to, _encode_into, _words_to_bytes

    rng = np.random.default_rng(5)
    saved = []
    for _ in range(40):
        n = int(rng.integers(4, 60))
        mu, sd = rng.normal(0, 2, n), rng.uniform(0.3, 3, n)
        k = np.clip(np.round(mu + sd * rng.standard_normal(n)), -20, 20).astype(np.int32)
        cuts = [0, n // 3, 2 * n // 3, n]
        layers = [[("gauss", k[a:b], -20, 20, mu[a:b], sd[a:b])] for a, b in zip(cuts, cuts[1:])]
        enc = constriction.stream.queue.RangeEncoder()
        every = [op for ops in layers for op in ops]
        _encode_into(enc, every)
        raw = _words_to_bytes(enc.get_compressed())
        plain = min(m for m in range(len(raw) + 1) if _decodes_to(raw[:m], every))
        a, b, c = encode_layered(layers)
        assert raw.startswith(a + b)                   # earlier layers' bytes are never changed
        assert _decodes_to(a, layers[0]) and _decodes_to(a + b, layers[0] + layers[1])
        assert _decodes_to(a + b + c, every)
        assert len(a + b + c) <= plain
        saved.append(plain - len(a + b + c))
    assert np.mean(saved) > 0.5                        # about a byte per stream is the point of it


def test_rounded_up_end_never_changes_earlier_bytes(monkeypatch):
    """The carry and overflow branches of ``_round_up_end``, on crafted byte strings (a stand-in
    decoder accepts any value at least as large as the original stream's)."""
    from diffcodec.coding import entropy

    def at_least(original):
        return lambda cand, ops: int.from_bytes(cand.ljust(len(original), b"\0"), "big") >= int.from_bytes(original, "big")

    data = b"\x12\x34\xff\xff"
    monkeypatch.setattr(entropy, "_decodes_to", at_least(data))
    assert entropy._round_up_end(data, [], keep=2) == data          # a carry would change byte 1
    assert entropy._round_up_end(data, [], keep=1) == b"\x12\x35"  # the carry stays in the last slice
    data = b"\xff\xff"
    monkeypatch.setattr(entropy, "_decodes_to", at_least(data))
    assert entropy._round_up_end(data, [], keep=0) == data          # 0xff.. + 1 overflows: no shorter value
    data = b"\x40\x00\x01"
    monkeypatch.setattr(entropy, "_decodes_to", at_least(data))
    assert entropy._round_up_end(data, [], keep=0) == b"\x41"


def test_params_round_trip_and_wire_id(coded):
    spec = coded[0]
    coder = spec.from_params(b"")
    assert coder.name == spec.name and spec.from_params(coder.params()).params() == coder.params()
    data = file_for(spec, coded[2]).to_bytes()
    assert (data[1] >> 3) & 7 == spec.wire_id
    with pytest.raises(ValueError):
        spec.from_params(b"\xff" * 7)


def test_registry_is_complete_and_consistent():
    """Every StepCoder subclass under diffcodec/coding/ is registered by importing the package (as
    the command line does), with a distinct wire id."""
    import subprocess
    import sys

    fresh = subprocess.run([sys.executable, "-c", "from diffcodec.coding import registry; print(*registry.names())"],
                           capture_output=True, text=True, check=True).stdout.split()
    found = set()
    for mod in pkgutil.iter_modules(diffcodec.coding.__path__):
        module = importlib.import_module(f"diffcodec.coding.{mod.name}")
        found |= {cls for _, cls in inspect.getmembers(module, inspect.isclass)
                  if issubclass(cls, StepCoder) and cls is not StepCoder}
    assert found == {s.cls for s in SPECS}
    assert sorted(cls.name for cls in found) == sorted(fresh)
    ids = [s.wire_id for s in SPECS]
    assert len(set(ids)) == len(ids) and all(0 <= i <= registry.MAX_WIRE_ID for i in ids)
    assert registry.names()[0] == "uq" and set(registry.names()) >= {"uq", "rcc"}
    assert all(registry.by_wire_id(s.wire_id) is s for s in SPECS)


def test_cli_and_evaluator_offer_every_registered_coder():
    from diffcodec.evaluation.rd_curves import diffusion_codecs
    from diffcodec_cli import main

    backend = next(p for p in main.commands["encode"].params if p.name == "backend")
    assert tuple(backend.type.choices) == (registry.AUTO, *registry.names())
    assert set(diffusion_codecs()) == {"ideal", *registry.names()}


def test_ideal_estimate_writes_nothing():
    """The ideal estimator codes no symbols (its KL is checked against an independent derivation
    of the bound in test_reference_bound.py)."""
    xs, step_ops, kls, gaussians = send(IdealEstimator())
    assert all(ops == [] for ops in step_ops) and len(xs) == STEPS
    for kl, (mu_q, vq, mu_p, var_p) in zip(kls, gaussians):     # KL(q || p_theta) in bits
        assert kl == pytest.approx(np.sum(0.5 * np.log2(var_p / vq) + ((mu_q - mu_p) ** 2 + vq - var_p)
                                          / (2.0 * var_p * np.log(2.0))), rel=1e-9)
    assert "ideal" not in registry.names()


def test_samples_follow_the_posterior(monkeypatch):
    """Each coder's x_{t-1} is a sample of q(x_{t-1} | x_t, x_0): over 2000 dimensions of one step
    (about 0.2 bits of KL each; 1.2 bits for tuq, which codes a band only from 0.25 bits of KL per
    coefficient and otherwise, by design, sends a sample of p), the residuals (x - mu_q) / sigma_q
    have mean 0 and variance 1 within what sampling noise and rcc's measured truncation bias allow
    (rcc's aim past q narrows each chunk's sample along one direction only, see the next test)."""
    n = 2000
    rng = np.random.default_rng(5)
    vq = 0.04
    mu_p, var_p = rng.standard_normal(n), np.full(n, 1.5 * vq)
    from diffcodec.coding import rcc
    segmented = [("rcc-segments", registry.get("rcc"))]   # rcc with chunks of 3-4 segments
    for name, spec in [(s.name, s) for s in SPECS] + segmented:
        if name == "rcc-segments":
            monkeypatch.setattr(rcc, "SEGMENT_DIMS", 12)
        spread = 3.0 if spec.name == "tuq" else 0.3
        mu_q = mu_p + np.random.default_rng(6).normal(0, np.sqrt(spread * vq), n)
        ctx = StepContext(1, SEED, vq, mu_p, var_p, {})
        _, x, kl = spec.from_params(b"").encode(ctx, mu_q)
        z = (x - mu_q) / np.sqrt(vq)
        assert abs(z.mean()) < 0.1, name
        # rcc's truncation to K candidates pulls its samples towards p, whose variance is 1.5 here:
        # 1.15 on average over 12 seeds (1.10 to 1.27; with format 10's codebook 1.12 to 1.19),
        # so rcc's bound is on the mean over four seeds
        if spec.name == "rcc":
            var = np.mean([((spec.from_params(b"").encode(StepContext(1, seed, vq, mu_p, var_p, {}), mu_q)[1]
                             - mu_q) ** 2).mean() / vq for seed in range(SEED, SEED + 4)])
            assert 0.85 < var < 1.2, (name, var)
        else:
            assert 0.85 < z.var() < 1.15, (name, z.var())
        # the shift towards mu_q is transmitted: x is much closer to mu_q than p's own samples are
        assert np.mean((x - mu_q) ** 2) < 0.8 * np.mean((mu_p - mu_q) ** 2 + var_p), name
        assert kl > 0


def test_rcc_aims_past_q_to_undo_the_truncation_bias():
    """One chunk of 9.9 bits of KL, q and p differing by a mean shift m: along m, the plain
    selection (aim 1) moves the sample only part of q's way, as truncated ordered random
    coding does (eval/studies/rcc_bias.py); rcc's default aim restores the whole shift, on average over
    300 chunks (each with its own candidates), and the decoder regenerates the same sample."""
    from diffcodec.coding.rcc import RCCCoder

    d, trials = 64, 300
    m = np.random.default_rng(7).standard_normal(d)
    m *= np.sqrt(2 * 9.9 * np.log(2)) / np.linalg.norm(m)         # |m|^2 / 2 nats = 9.9 bits
    ratios = {}
    for aim in (1.0, None):
        coder, moved = RCCCoder(aim=aim), []
        for t in range(trials):
            ctx = StepContext(1 + t, SEED, 1.0, np.zeros(d), np.ones(d), {})
            ops, x, kl = coder.encode(ctx, m)
            assert kl == pytest.approx(9.9) and len(ops[-1][1]) == 1    # one chunk
            moved.append(x @ m / (m @ m))
        ratios[aim] = float(np.mean(moved))
    assert ratios[1.0] < 0.94 and abs(ratios[None] - 1.0) < 0.05, ratios
    ops, x, _ = RCCCoder().encode(StepContext(5, SEED, 1.0, np.zeros(d), np.ones(d), {}), m)
    dec = Decoder(encode_layered([ops])[0])
    assert np.array_equal(RCCCoder().decode(StepContext(5, SEED, 1.0, np.zeros(d), np.ones(d), {}), dec), x)


def test_rcc_sharpness_and_variance_weight_are_encoder_only():
    """eval/studies/rcc_aim.py's encoder-only settings, on 100 chunks of 64 dimensions where q is narrower
    than p (variance 1 against 1.5) and shifted by 6 bits. With the same candidates and arrival
    times, a sharper selection (sharpness 2) never picks a smaller index nor a sample of lower
    weight under its aim (q shifted AIM times); without q's variance in w (var_weight 0) the samples
    keep about p's spread; the default decoder regenerates each sample."""
    from diffcodec.coding.rcc import AIM, RCCCoder

    d, trials = 64, 100
    m = np.random.default_rng(8).standard_normal(d)
    m *= np.sqrt(2 * 6 * np.log(2) * 1.5) / np.linalg.norm(m)     # |m|^2 / (2 var_p) nats = 6 bits
    found = {}
    for name, kw in {"default": {}, "sharp": {"sharpness": 2.0}, "no variance": {"var_weight": 0.0}}.items():
        coder, rows = RCCCoder(**kw), []
        for t in range(trials):
            def ctx():
                return StepContext(1 + t, SEED, 1.0, np.zeros(d), np.full(d, 1.5), {"steps": 5, "chunks": 1})
            ops, x, _ = coder.encode(ctx(), m)
            (j,) = ops[-1][1]
            # log w of the aim q' = N(AIM m, 1) against p = N(0, 1.5), up to a constant; the spread
            # across the directions other than m
            rows.append((-0.5 * np.sum((x - AIM * m) ** 2) + np.sum(x ** 2) / 3.0, j,
                         np.var(x - (x @ m) / (m @ m) * m)))
            if t < 3:
                assert np.array_equal(RCCCoder().decode(ctx(), Decoder(encode_layered([ops])[0])), x), name
        found[name] = np.array(rows)
    base, sharp = found["default"], found["sharp"]
    assert np.all(sharp[:, 0] >= base[:, 0] - 1e-3) and np.all(sharp[:, 1] >= base[:, 1])
    assert np.any(sharp[:, 1] > base[:, 1])
    assert base[:, 2].mean() < 1.25 < found["no variance"][:, 2].mean()


def test_rcc_chunks_sharing_the_codebook_draw_independent_noise():
    """Every chunk of every step reads the same codebook, through its own signs and column order.
    With the same shift in every dimension (every chunk scores the codebook against the same
    coefficients but for its map) over 40 chunks of 32 dimensions, chunks that pick the same row
    (ordered random coding favours the first ones) still get different noise, and the residuals
    (x - mu_q) / sigma_q have variance about 1 and mean about -0.09: the plain selection (aim 1)
    moves the sample 0.89 of q's way here, as in the test above."""
    from diffcodec.coding.rcc import RCCCoder

    d = 1280
    shift = np.full(d, np.sqrt(2 * 10 * 40 * np.log(2) / d))        # 400 bits: 40 chunks of 10 bits
    ctx = StepContext(3, SEED, 1.0, np.zeros(d), np.ones(d), {"steps": 5, "chunks": 40})
    coder = RCCCoder(aim=1.0)
    ops, x, kl = coder.encode(ctx, shift)
    indices = ops[-1][1]
    assert kl == pytest.approx(400) and len(indices) == 40 and len(set(indices.tolist())) < 40
    z = x - shift
    assert -0.2 < z.mean() < 0.0 and 0.85 < z.var() < 1.15
    noise = {tuple(np.round(z[g], 6)) for g in np.array_split(permutation(SEED, 3, d), 40)}
    assert len(noise) == 40


def test_rcc_selection_scores_every_block_of_chunks_like_a_direct_computation(monkeypatch):
    """With arrival times fixed at T_j = j + 1, the index each chunk picks is the argmax of
    log w(z_j) - log(j + 1) computed directly from the chunk's candidates, whether the chunks are
    scored in blocks of 3 (several matrix products per length) or all at once, and over codebook
    rows in blocks that divide K or not. q's variance term is sum_d c2_d z_d^2 on an image of at
    most rcc.EXACT_MAX_DIMS values, and mean(c2) sum_d z_d^2 per segment above (here the limit is
    lowered to take that rule)."""
    from diffcodec.coding import rcc

    d, n = 700, 20
    rng = np.random.default_rng(9)
    mu_p, var_p = rng.standard_normal(d), rng.uniform(0.5, 2.0, d)
    c1, c2 = rng.standard_normal(d) * 0.5, rng.uniform(-0.3, 0.0, d)
    ctx = StepContext(4, SEED, 1.0, mu_p, var_p, {})
    coder = rcc.RCCCoder(chunk_bits=8, log2_k=10)
    # the encoder's randomness: every gap between arrivals 1, so T_j = j + 1
    coder._arrivals = lambda shape: torch.ones(shape)
    monkeypatch.setenv("DIFFCODEC_PRECISION", "float32")   # exact scores, as computed here
    perm = permutation(SEED, 4, d)
    groups = np.array_split(perm, n)
    shipped = rcc.EXACT_MAX_DIMS
    assert d <= shipped
    picked = {}
    for limit in (shipped, d - 1):
        monkeypatch.setattr(rcc, "EXACT_MAX_DIMS", limit)

        def squared(Z, s):
            return (Z[:, s] ** 2) @ c2[s] if d <= limit else c2[s].mean() * (Z[:, s] ** 2).sum(1)

        for segment, pieces in ((8192, 1), (13, 3)):      # chunks of 35 dimensions: one segment, or three
            monkeypatch.setattr(rcc, "SEGMENT_DIMS", segment)
            layout = coder._layout(ctx, perm, n)
            # the decoder's candidates: what _sample builds for every chunk at index j
            Z = np.stack([(coder._sample(ctx, layout, [j] * n) - mu_p) / np.sqrt(var_p) for j in range(coder.count)])
            expected = [int(np.argmax(Z[:, dims] @ c1[dims] + sum(squared(Z, s) for s in np.array_split(dims, pieces))
                                      - np.log(np.arange(1, coder.count + 1)))) for dims in groups]
            for block, rows in ((3, 256), (512, 256), (512, 100)):
                monkeypatch.setattr(rcc, "SELECT_BLOCK", block)
                monkeypatch.setattr(rcc, "ROW_BLOCK", rows)
                assert coder._select(ctx, layout, n, c2, c1) == expected
            picked[limit, segment] = expected
    assert picked[shipped, 8192] != picked[d - 1, 8192]     # the two rules differ here


def test_rcc_arrival_times_stay_finite_when_a_uniform_is_zero(monkeypatch):
    """torch's uniforms include 0 (once in 2^24 draws). A zero made a chunk's last arrival time
    infinite, so the wrap-around term made its log arrival times NaN from the offset on, and argmax
    picked a NaN: with equal scores every chunk must pick its first arrival (index 0, row
    ``offset``), the zero or not (here a zero after some chunks' offsets and before others')."""

    from diffcodec.coding import rcc

    coder = rcc.RCCCoder(chunk_bits=8, log2_k=10, encoder_seed=1)
    real = torch.rand

    def with_zeros(shape, generator=None):
        u = real(shape, generator=generator)
        u[:, 3] = 0.0
        return u

    monkeypatch.setattr(torch, "rand", with_zeros)
    offsets = torch.tensor([0, 2, 3, 4, 10, 1000])
    log_times = coder._log_times(offsets)
    assert torch.isfinite(log_times).all()
    assert torch.argmax(-log_times, 1).tolist() == offsets.tolist()
    # in index order the arrival times increase
    for k, offset in enumerate(offsets.tolist()):
        assert (torch.roll(log_times[k], -offset).diff() >= 0).all()


def test_rcc_log_times_are_the_differences_of_one_cumulative_sum():
    """_log_times (in place) gives, on random gaps, the float32 values of the expression it
    replaced: log(S - S[offset - 1] + [r < offset] S[K - 1]) with S the gaps' cumulative sum."""
    from diffcodec.coding import rcc

    coder = rcc.RCCCoder(chunk_bits=8, log2_k=10, encoder_seed=4)
    K = coder.count
    gaps = -torch.rand((6, K), generator=torch.Generator().manual_seed(3)).clamp_min(2.0 ** -25).log()
    coder._arrivals = lambda shape: gaps.clone()
    offsets = torch.tensor([0, 1, 2, 500, K - 2, K - 1])
    total = torch.cumsum(gaps, 1)
    before = torch.where(offsets[:, None] > 0, total.gather(1, (offsets[:, None] - 1).clamp(min=0)), 0.0)
    wrapped = torch.arange(K)[None, :] < offsets[:, None]
    assert torch.equal(coder._log_times(offsets), (total - before + wrapped * total[:, -1:]).log())


def test_rcc_scores_over_row_blocks_are_the_whole_products(monkeypatch):
    """rcc._scores runs its products over ROW_BLOCK codebook rows at a time: with blocks that divide
    K (both powers of two) or exceed it, the scores do not depend on the block, bit for bit (so
    neither do the encoder's selections and files). Exact, they are the whole codebook's products
    with the coefficients and, squared a block at a time in a reused buffer, never the whole
    codebook's squares; otherwise the linear product plus each segment's mean c2 times the rows'
    squared norms."""
    from diffcodec.coding import rcc

    rng = np.random.default_rng(2)
    K, m, d = 1024, 40, 300
    book = torch.from_numpy(rng.standard_normal((K, 64)).astype(np.float32))[:, :m]
    c1, c2 = rng.standard_normal(d).astype(np.float32), rng.uniform(-0.3, 0.0, d).astype(np.float32)
    chunks = 7
    dims = rng.permutation(d)[:chunks * m].reshape(chunks, m)
    columns = np.stack([rng.permutation(m) for _ in range(chunks)])
    signs = rng.choice([-1.0, 1.0], (chunks, m)).astype(np.float32)
    seg = rcc.Segments(np.arange(chunks), np.ones(chunks, bool), dims, columns, signs, np.zeros(chunks, np.int64))
    a1, a2 = np.zeros((m, chunks), np.float32), np.zeros((m, chunks), np.float32)
    for k in range(chunks):
        a1[columns[k], k], a2[columns[k], k] = signs[k] * c1[dims[k]], c2[dims[k]]
    linear = book @ torch.from_numpy(a1)
    whole = linear + book.square() @ torch.from_numpy(a2)
    by_mean = linear.T.double() + torch.from_numpy(c2[dims].mean(1, dtype=np.float64))[:, None] * book.double().square().sum(1)
    assert rcc.ROW_BLOCK & (rcc.ROW_BLOCK - 1) == 0      # a power of two: divides K or exceeds it
    real_square, squared = torch.square, []
    monkeypatch.setattr(torch, "square", lambda x, out=None: squared.append(len(x)) or real_square(x, out=out))
    first = None
    for rows in (256, 64, 4096):
        monkeypatch.setattr(rcc, "ROW_BLOCK", rows)
        squared.clear()
        (_, _, score), = rcc._scores([(seg, slice(0, chunks))], book, c1, c2, torch.float32, exact=True)
        assert torch.equal(score, whole.T)
        assert max(squared) == min(rows, K) and sum(squared) == K     # never the whole codebook's squares
        (_, _, score), = rcc._scores([(seg, slice(0, chunks))], book, c1, c2, torch.float32)
        assert torch.allclose(score.double(), by_mean, rtol=0, atol=1e-4)
        first = score if first is None else first
        assert torch.equal(score, first)


def test_rcc_scores_segments_of_near_lengths_in_one_product(monkeypatch):
    """rcc._batches: blocks of segments in layout order; a block joins the batch before it when
    the batch keeps at most SELECT_BLOCK segments and its length is at most the batch's first and
    at least BATCH_LENGTH of it (the one codebook read then serves both)."""
    from diffcodec.coding import rcc

    def segs(m, k):
        z = np.zeros(k, np.int64)
        return rcc.Segments(z, z.astype(bool), np.zeros((k, m), np.int64), np.zeros((k, m), np.int64),
                            np.ones((k, m), np.float32), z)

    monkeypatch.setattr(rcc, "SELECT_BLOCK", 10)
    layout = [segs(100, 4), segs(99, 4), segs(95, 3), segs(89, 2), segs(96, 1), segs(80, 1), segs(200, 25)]
    batches = rcc._batches(layout)
    shape = [[(seg.dims.shape[1], len(seg.chunk[block])) for seg, block in batch] for batch in batches]
    assert shape == [[(100, 4), (99, 4)], [(95, 3), (89, 2)], [(96, 1)], [(80, 1)],
                     [(200, 10)], [(200, 10)], [(200, 5)]]


def test_rcc_layout_and_selection_order_are_pinned(monkeypatch):
    """Steps whose chunks come in two classes of lengths (13 and 12 dimensions; 2 and 1 for 75 in
    50 chunks), cut into segments of at most 7 (both classes 2 segments, sharing a length), 12
    (2 and 1), 13 (1 each: single chunks of two lengths) and 1 (single and several-segment chunks
    in one length). The layout must hold each chunk's slice of the permutation, segment by segment,
    and the encoder (which draws its arrival times in the order it scores segments, in blocks of 3
    here) must pick the indices that the per-chunk lists before ``rcc.Segments`` picked (sha256 of
    the index list, computed with that code, 4cb855e). In blocks of 512, segments of 13 and 12
    dimensions share one product (``rcc._batches``; single chunks, and for d = 250 chunks of two
    segments): the indices the code before batches picked (2f2c6dc)."""
    import hashlib

    from diffcodec.coding import rcc

    monkeypatch.setenv("DIFFCODEC_PRECISION", "float32")
    pinned = {(125, 10, 7, 3): "cd9a6ecd6ae8ed4e", (125, 10, 12, 3): "2d3ed0d20260e9aa",
              (125, 10, 13, 3): "b20ac3367bde515b", (75, 50, 1, 3): "3ebd1a9ef1a51df8",
              (125, 10, 13, 512): "b20ac3367bde515b", (250, 10, 13, 512): "ae862dd90c81f696"}
    for (d, n, segment, block), want in pinned.items():
        monkeypatch.setattr(rcc, "SELECT_BLOCK", block)
        monkeypatch.setattr(rcc, "SEGMENT_DIMS", segment)
        rng = np.random.default_rng(5)
        mu_p, var_p = rng.standard_normal(d), rng.uniform(0.8, 1.2, d)
        mu_q = mu_p + np.sqrt(2 * np.log(2) * 6 * n / d) * rng.choice([-1.0, 1.0], d)   # ~6 bits a chunk
        ctx = StepContext(4, 11, 1.0, mu_p, var_p, {"steps": 5, "chunks": n})
        perm = permutation(11, 4, d)
        pieces: dict[int, list] = {}
        for seg in rcc.RCCCoder()._layout(ctx, perm, n):
            for k, c in enumerate(seg.chunk.tolist()):
                pieces.setdefault(c, []).append((seg.dims[k].tolist(), bool(seg.single[k])))
        for c, dims in enumerate(np.array_split(perm, n)):
            # a chunk's segments in order: longer first, those of one length in layout order
            ordered = sorted(pieces[c], key=lambda p: len(p[0]), reverse=True)
            assert sum((p[0] for p in ordered), []) == dims.tolist()
            assert [p[1] for p in ordered] == [len(ordered) == 1] * len(ordered)
        coder = rcc.RCCCoder(chunk_bits=6, log2_k=8, encoder_seed=3, aim=1.0)   # arrivals matter
        coder._choose_count = lambda total, prev, dims: n
        batches = [[seg.dims.shape[1] for seg, _ in batch] for batch in rcc._batches(coder._layout(ctx, perm, n))]
        assert (batches == [[13, 12]]) == (block == 512)
        ops, _, _ = coder.encode(ctx, mu_q)
        assert hashlib.sha256(repr(ops[-1][1].tolist()).encode()).hexdigest()[:16] == want, (d, n, segment)


@pytest.mark.parametrize("name", ["rcc", "tuqrcc"])
def test_a_step_after_a_step_of_no_chunks_round_trips(name):
    """A step whose KL is below rcc's min_bits sends no chunk (count 0); the next step's count is
    then coded against 0 and must not divide by it. Shifts alternate between almost none and
    some, over 8 steps of a 3x16x16 image, and the chain decodes to the encoder's x each step."""
    coder = registry.get(name).from_params(b"")
    shape, d = (3, 16, 16), 3 * 16 * 16
    rng = np.random.default_rng(11)
    contexts = [(i, rng.standard_normal(d), rng.standard_normal(d) * (1e-4 if i % 2 else 0.3))
                for i in range(8, 0, -1)]
    state, xs, step_ops, counts = {}, [], [], []
    for i, mu_p, shift in contexts:
        ops, x, _ = coder.encode(StepContext(i, SEED, 0.05, mu_p, np.full(d, 0.05), state, shape), mu_p + shift)
        xs.append(x)
        step_ops.append(ops)
        counts.append(state.get("rcc", state).get("chunks"))   # tuqrcc keeps rcc's state apart
    # steps with no chunk, each followed by one with chunks (none of the first two: INITIAL_COUNTS)
    assert any(a == 0 and b for a, b in zip(counts[2:], counts[3:])), counts
    dec, state = Decoder(encode_layered([[op for ops in step_ops for op in ops]])[0]), {}
    for (i, mu_p, _), want in zip(contexts, xs):
        got = registry.get(name).from_params(b"").decode(StepContext(i, SEED, 0.05, mu_p, np.full(d, 0.05), state, shape), dec)
        assert np.array_equal(got, want)


def test_rcc_builds_the_same_sample_on_one_thread_and_two(monkeypatch):
    """``_sample`` fills each length's segments in two halves on two threads from
    randomness.PARALLEL_MIN values on: the same x_{t-1}, bit for bit, as on one thread, from 40
    chunks of one length and from chunks of two lengths (1285 dimensions in 40 chunks)."""
    from diffcodec.coding import randomness, rcc

    for d in (1280, 1285):
        ctx = lambda: StepContext(3, SEED, 1.0, np.zeros(d), np.ones(d), {"steps": 5, "chunks": 40})  # noqa: E731
        monkeypatch.setattr(randomness, "PARALLEL_MIN", 10 ** 12)
        coder = rcc.RCCCoder()
        layout = coder._layout(ctx(), permutation(SEED, 3, d), 40)
        indices = np.random.default_rng(d).integers(0, coder.count, 40).tolist()
        one = coder._sample(ctx(), layout, indices)
        monkeypatch.setattr(randomness, "PARALLEL_MIN", 1)
        monkeypatch.setattr(randomness, "numpy_threads", lambda: 2)
        assert len(layout) == (1 if d == 1280 else 2)
        assert np.array_equal(coder._sample(ctx(), layout, indices), one)


def test_rcc_sends_a_large_step_of_little_kl_as_one_chunk_of_segments():
    """A codebook row is at most SEGMENT_DIMS long (K x its length in memory), so a longer chunk
    reads its candidates in segments: a step of 2 bits over 20000 dimensions is one chunk (one
    index) of three segments, and decodes."""
    from diffcodec.coding import rcc

    d = 20000
    shift = np.full(d, np.sqrt(2 * 2 * np.log(2) / d))
    ctx = lambda: StepContext(2, SEED, 1.0, np.zeros(d), np.ones(d), {"steps": 5, "chunks": 1})  # noqa: E731
    coder = rcc.RCCCoder()
    ops, x, kl = coder.encode(ctx(), shift)
    assert kl == pytest.approx(2.0) and len(ops[-1][1]) == 1
    layout = coder._layout(ctx(), np.arange(d), 1)    # ceil(20000 / 8192) = 3 segments, one chunk
    assert [s.dims.shape for s in layout] == [(2, 6667), (1, 6666)] and not any(s.single.any() for s in layout)
    assert np.array_equal(np.concatenate([s.dims.ravel() for s in layout]), np.arange(d))
    dec = Decoder(encode_layered([ops])[0])
    assert np.array_equal(rcc.RCCCoder().decode(ctx(), dec), x)


def test_auto_backend_by_image_size():
    """"auto" picks rcc at every size (its shared codebook makes a step about D x K multiply-adds
    in matrix products); the other backends are there when asked for."""
    for dims in (28 * 28, 3 * 32 * 32, 3 * 512 * 768):
        assert registry.choose("auto", dims).name == "rcc"
    assert registry.choose("uq", 4).name == "uq"


def test_tuq_transform_is_orthonormal_and_low_kl_bands_cost_flags():
    """tuq codes in an orthonormal transform (so q's isotropic noise stays isotropic) and skips
    bands whose KL is tiny: a step whose whole residual is a flat offset codes one band."""
    from diffcodec.coding import tuq

    shape = (3, 8, 12)
    rng = np.random.default_rng(4)
    v = rng.standard_normal(288)
    c = tuq.forward(v, shape)
    assert np.allclose(tuq.inverse(c, shape), v) and np.linalg.norm(c) == pytest.approx(np.linalg.norm(v))
    noise = np.stack([tuq.inverse(rng.uniform(-0.5, 0.5, 288), shape) for _ in range(400)])
    assert np.allclose(np.cov(noise.T), np.eye(288) / 12, atol=0.03)    # isotropic after inverse
    mu_p = rng.standard_normal(288)
    ctx = StepContext(5, SEED, 0.01, mu_p, np.full(288, 0.012), {}, shape)
    ops, x, _ = registry.choose("tuq", 288).from_params(b"").encode(ctx, mu_p + 0.3)
    coded = ops[0][1]
    ids, nb = tuq.bands(shape)
    assert coded.sum() == 1 and coded[ids[0]] == 1                      # only luma's DC band
    assert sum(info_bits(op) for op in ops) < nb + 16
    assert abs(np.mean(x - mu_p) - 0.3) < 0.02


def test_tuqrcc_sends_low_kl_bands_by_rcc_and_decodes_them_exactly():
    """tuqrcc gives each band one of three states by its KL per coefficient: a band with a strong
    residual is coded by uq, bands with a weak one (under tuq's threshold) by rcc, which tuq would
    skip, and bands with none are skipped. The rcc-coded coefficients carry the shift (tuq's sample
    of p there does not), the decoder reproduces x exactly, and a cap on rcc's coefficients sends
    the excess bands back to skipped."""
    from diffcodec.coding import tuq, tuqrcc

    shape = (1, 32, 32)
    D = 32 * 32
    ids, nb = tuq.bands(shape)
    rng = np.random.default_rng(7)
    vq = 0.01
    mu_p = rng.standard_normal(D)
    kl_target = np.zeros(nb)
    kl_target[0], kl_target[nb - 1], kl_target[nb - 2] = 4.0, 0.2, 0.2   # bits per coefficient
    # a shift of s * sigma_q in every coefficient of a band gives s^2 / (2 ln 2) bits each
    shift = np.sqrt(2 * np.log(2) * kl_target[ids] * vq) * rng.choice([-1.0, 1.0], D)
    mu_q = mu_p + tuq.inverse(shift, shape)
    weak = np.isin(ids, [nb - 1, nb - 2])

    def step(coder):
        ctx = StepContext(4, SEED, vq, mu_p, np.full(D, 1.2 * vq), {}, shape)
        ops, x, _ = coder.encode(ctx, mu_q)
        dec_ctx = StepContext(4, SEED, vq, mu_p, np.full(D, 1.2 * vq), {}, shape)
        decoded = type(coder).from_params(b"").decode(dec_ctx, Decoder(encode_layered([ops])[0]))
        dev = tuq.forward(x - mu_p, shape)[weak]
        sent = float(dev @ shift[weak] / (shift[weak] @ shift[weak]))  # ~1 if the shift was sent, ~0 if not
        return ops[0][1], x, decoded, sent

    state, x, decoded, sent = step(tuqrcc.TUQRCCCoder())
    assert np.array_equal(decoded, x)
    assert state[0] == tuqrcc.UQ and state[nb - 1] == state[nb - 2] == tuqrcc.RCC
    assert np.all(state[1:nb - 2] == tuqrcc.SKIP)
    assert sent > 0.5, sent
    assert step(tuq.TUQCoder())[3] < 0.5       # tuq skips these bands: a sample of p
    capped, x_capped, decoded_capped, _ = step(tuqrcc.TUQRCCCoder(max_rcc_dims=int(weak.sum()) - 1))
    assert np.array_equal(decoded_capped, x_capped)
    assert (capped == tuqrcc.RCC).sum() == 1 and capped[0] == tuqrcc.UQ
