"""The C allocator's part in a training process's host memory. glibc's malloc raises its mmap threshold each time
a block above it is freed (up to 32 MiB); from then on blocks below that size come from the heap, whose freed
space the process keeps as long as anything above it lives. A start builds a model whose weights it then replaces,
reads a checkpoint, and frees gigabytes in such blocks, which the first updates then found fragmented: a resume
peaked 0.3-0.5 GB above a fresh start at full size. So a start runs with the threshold at glibc's own default
(every freed block of 128 KiB or more goes back at once), and training with it at the maximum the default would
reach, where activations reuse the heap: returning them to the system each update cost 14% of a CPU update."""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
START_MMAP_THRESHOLD = 128 * 1024  # glibc's default before any adjustment
TRAINING_MMAP_THRESHOLD = 32 * 1024 * 1024  # the most glibc's dynamic adjustment raises it to on 64-bit


def set_mmap_threshold(size: int) -> bool:
    """Fix glibc's mmap threshold at `size` bytes (which also stops its dynamic adjustment). True where it was set;
    on a C library without glibc's mallopt (macOS, Windows, musl) nothing changes and the answer is False."""
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the process's own C library
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, size) == 1
