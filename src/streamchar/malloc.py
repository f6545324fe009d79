"""Keep freed memory in the process for reuse (glibc's allocator), so a CPU model's activations do not fault
in fresh pages on every pass.

glibc serves a large block (above its mmap threshold, 128 KiB at first, raised to the largest block freed so
far up to 32 MiB) with a fresh `mmap` and unmaps it when freed, and trims the heap's free top back to the
kernel; either way the next pass's activations land on new pages, and touching a new page costs a page fault.
A DiT pass allocates and frees the same few-MB activations layer after layer, so on a CPU this costs a large
share of the pass (2 cores, one `tiny` DiT pass: ~48 ms with glibc's defaults, ~38 ms with the memory kept;
`benchmarks/bench_malloc.py`). PyTorch's CPU tuning guide suggests preloading jemalloc or tcmalloc for the
same reason; this does it with the allocator already loaded: everything below 1 GiB comes from the heap and
the heap is never trimmed, so the process keeps its peak and reuses it (memory stays flat over a stream; it
is not returned to the system until the process ends).

The CLI calls `retain_freed_memory()` once at start; `STREAMCHAR_MALLOC=default` keeps glibc's defaults.
Elsewhere than Linux with glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

from streamchar.errors import StreamCharError

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 30  # blocks this large or larger still get their own mapping
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: the largest, i.e. never trim


def retain_freed_memory() -> bool:
    """Set glibc's thresholds so freed memory stays in the process. Returns whether they were set."""
    mode = os.environ.get("STREAMCHAR_MALLOC", "retain")
    if mode not in ("retain", "default"):
        raise StreamCharError(f"STREAMCHAR_MALLOC={mode!r}: expected 'retain' (the default) or 'default'")
    if mode == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, or no libc.so.6)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
