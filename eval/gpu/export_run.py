"""Export a GPU run's EMA weights as a model directory: the checkpoint's config with the [data]
section of the config the shipped model keeps (its native tile and validation photos, not the
run's crops and folder).

    python3 eval/gpu/export_run.py RUN/last.pt OUT_DIR configs/photo.toml
"""
import sys

from diffcodec.training.checkpoint import export_model, load_checkpoint
from diffcodec.training.config import load_config

checkpoint, out_dir, data_config = sys.argv[1:4]
state = load_checkpoint(checkpoint)
config = dict(state["config"], data=load_config(data_config).to_dict()["data"])
export_model(state["ema"], config, out_dir, {"train_steps": state["step"]})
print("step", state["step"])
