"""Bytes, files and pixels: atomic writes, checksums, image files, data sets, and the one place
that converts between uint8 pixels and the model's [-1, 1] range. Imports no torch at module level."""
