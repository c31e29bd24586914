"""Large blocks from the C heap: glibc's malloc serves a block above its mmap threshold (at most
32 MB, dynamically) with a fresh mmap and unmaps it when freed, so every full-size activation the
network allocates starts as untouched pages the kernel must fault in and zero, one 4 KB page at a
time. At 768x512 that was a third of a bfloat16 forward pass on the CPU (eval/README.md, "Speed").
Raising the threshold keeps them in the heap, where freed blocks are reused; raising the trim
threshold too keeps the heap from handing its free top back to the kernel after every network
call (only to fault it in again in the next). The price is memory: blocks freed in the middle of
the heap fragment it, and peak memory grows by 10-20% at 768x512, more on larger images."""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # mallopt's parameter numbers (malloc.h)
# Bytes: blocks up to 128 MB come from the heap (32 MB where a glibc refuses more): every
# bfloat16 activation of the network (75 MB at most at 768x512; larger images run tile by tile,
# ``nets.tiling``), but not a large image's whole-image vectors (285 MB in float64 and 143 MB in
# float32 at 12 megapixels), which the fragmented heap would hold on to: a 12 MP encode peaked
# at 6540 MB with a 256 MB threshold (eval/README.md, "Speed"). Earlier, with the network run
# whole at every size, decoding a 1536x1024 file peaked at 3100 MB and took 49 s with a 1 GB
# threshold, 2991 MB and 60 s with 128 MB, 2374 MB and 64 s with 64 MB (at 768x512: 938 and
# 1064 MB, 13.8 and 14.7 s with 1 GB and 64 MB).
MMAP_THRESHOLD = 128 << 20
TRIM_THRESHOLD = 2 ** 31 - 1   # bytes of free heap top kept rather than returned (mallopt takes an int)
_applied = False


def keep_large_blocks() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once; elsewhere a no-op).
    -> whether they are set."""
    global _applied
    if not _applied and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
            mmap = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) or libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
            _applied = bool(mmap and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        except (OSError, AttributeError):   # not glibc (musl, another libc): leave it
            pass
    return _applied
