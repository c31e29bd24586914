"""The .dfc container: the file format, bytes only (no torch)."""
