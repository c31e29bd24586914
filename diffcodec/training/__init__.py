"""Training and the model store: configs, the training loop, checkpoints and exported models,
and the named store that loads them (models/index.json)."""
