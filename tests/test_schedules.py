import numpy as np
import pytest

from diffcodec.core.schedules import named_betas, respace_betas, space_timesteps
from diffcodec.errors import UserError


def test_linear_matches_paper_endpoints():
    b = named_betas("linear", 1000)
    assert b.dtype == np.float64 and len(b) == 1000
    assert b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)


def test_cosine_alpha_bar_follows_formula():
    T = 200
    abar = np.cumprod(1 - named_betas("cosine", T))
    f = lambda s: np.cos((s + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    expected = f(np.arange(1, T + 1) / T) / f(0)
    np.testing.assert_allclose(abar[:-5], expected[:-5], rtol=1e-10)  # the end is clipped at 0.999
    assert np.all(np.diff(abar) < 0)


@pytest.mark.parametrize("spec,n", [("10", 10), ("ddim25", 25), ("quad8", 8), ("quad50", 50), ("0,5,99", 3), (None, 100), ("all", 100), ("1", 1)])
def test_respacing_keeps_alpha_bar(spec, n):
    base = named_betas("linear", 100)
    kept = space_timesteps(100, spec)
    assert len(kept) == n and kept == sorted(kept)
    abar_new = np.cumprod(1 - respace_betas(base, kept))
    np.testing.assert_allclose(abar_new, np.cumprod(1 - base)[kept], rtol=1e-12)


def test_even_spacing_includes_both_ends():
    kept = space_timesteps(1000, "100")
    assert kept[0] == 0 and kept[-1] == 999


def test_quad_spacing_is_quadratic_and_strictly_increasing():
    assert space_timesteps(1000, "quad8") == [0, 20, 82, 183, 326, 510, 734, 999]
    kept = space_timesteps(1000, "quad100")  # squares crowd below t = 11: nudged up by one each
    assert len(kept) == 100 and kept[:12] == list(range(11)) + [12] and kept[-1] == 999
    assert all(b > a for a, b in zip(kept, kept[1:]))
    assert space_timesteps(1000, "quad1000") == list(range(1000))


@pytest.mark.parametrize("spec", ["0", "abc", "ddim0", "5,1000", "2000", "quad1001", "quad1"])
def test_bad_specs(spec):
    with pytest.raises(ValueError, match="step spec"):
        space_timesteps(1000, spec)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        named_betas("quadratic", 10)


@pytest.mark.parametrize("r", [6, 9, 25])
def test_geometric_spacing(r):
    """geoR: from T - 1 down to 0, each jump round(R% of t) (at least 1): dense where the KL is."""
    kept = space_timesteps(1000, f"geo{r}")
    assert kept[0] == 0 and kept[-1] == 999 and kept == sorted(set(kept))
    for a, b in zip(kept, kept[1:]):
        assert b - a == max(1, (r * b + 50) // 100)
    assert kept[:50 // r] == list(range(50 // r))   # the last steps are all kept
    capped = space_timesteps(1000, f"geo{r}c20")
    assert capped[0] == 0 and capped[-1] == 999 and max(np.diff(capped)) == min(20, max(np.diff(kept)))
    for bad in ("geo0", "geo100", "geox", "geo9c0", "geo9cx"):
        with pytest.raises(ValueError):
            space_timesteps(1000, bad)


def test_step_list_files(tmp_path):
    """A step file is read as a list: one number is one step (not a count), and trailing commas,
    new lines and spaces are separators."""
    from diffcodec.core.schedules import read_step_list

    f = tmp_path / "steps.txt"
    for text, kept in (("5", [5]), ("0,4,\n", [0, 4]), ("0 7\n99\n", [0, 7, 99])):
        f.write_text(text)
        assert space_timesteps(100, read_step_list(f)) == kept
    for text in ("", ",\n", "0,x"):
        f.write_text(text)
        with pytest.raises(UserError, match="list of steps"):
            read_step_list(f)
