"""Shipped models (installed as the data package ``diffcodec_models``); see index.json."""
