"""README's shell blocks, run as written: the quick start's main job and the quick "More to try"
commands in CI; the slow block under `-m slow`. Commands run with bash in a scratch folder holding
a copy of the shipped example images at the paths README uses."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def run_block(block: str, cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DIFFCODEC_MODELS"}
    cli = f"{sys.executable} -m diffcodec"
    for line in block.strip().splitlines():
        cmd = re.sub(r"(^|&& |\| )diffcodec ", lambda m: f"{m.group(1)}{cli} ", line.split("  #")[0].strip())
        r = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{line}\n{r.stdout}\n{r.stderr}"
        assert "Traceback" not in r.stderr


@pytest.fixture
def scratch(tmp_path):
    for name in ("fmnist", "photo"):
        (tmp_path / "models" / name).mkdir(parents=True)
        shutil.copy(ROOT / "models" / name / "example.png", tmp_path / "models" / name / "example.png")
    return tmp_path


def test_readme_blocks_are_where_this_test_expects_them():
    blocks = shell_blocks()
    assert blocks[0].splitlines()[1].startswith("pip install torch==")
    assert "diffcodec info example.dfc" in blocks[1]
    assert "models/photo/example.png" in blocks[2]


def test_quick_start_and_quick_commands(scratch):
    main_job = shell_blocks()[0].strip().splitlines()[2]
    assert main_job.startswith("diffcodec encode models/fmnist/example.png")
    run_block(main_job, scratch)
    assert (scratch / "example-decoded.png").exists()
    run_block(shell_blocks()[1], scratch)
    for out in ("coarse.png", "cut.png", "q90.dfc", "p.dfc", "uq.dfc"):
        assert (scratch / out).stat().st_size > 0


@pytest.mark.slow
def test_slow_commands(scratch):
    """The minutes-long block (needs /usr/share/datasets/fashion-mnist)."""
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Fashion-MNIST is not installed")
    run_block(shell_blocks()[2], scratch)
