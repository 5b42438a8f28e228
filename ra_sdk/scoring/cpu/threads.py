"""The CPU score's worker threads: per-image work split over a small pool (numpy and
OpenCV release the GIL), only for batches large enough to pay for it, so that one image
(``Screener.screen_one``) is scored in the calling thread and starts nothing."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: below this many pixels (batch x H x W) a batch is scored in the calling thread
MIN_PIXELS = 200_000


def default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@functools.lru_cache(maxsize=4)
def pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="ra-sdk-cpu")


@functools.lru_cache(maxsize=1)
def side_pool() -> ThreadPoolExecutor:
    """The pool for host-side score steps that run beside the networks (``Scorer``):
    one on this repository's 2-core CPU (measured), half the score threads on larger ones,
    so that the host steps of consecutive chunks need not wait for each other there
    (unmeasured). Steps wait only on steps submitted before them, which a FIFO pool has
    started already: any number of workers is free of deadlock (tested with 3)."""
    return ThreadPoolExecutor(max_workers=max(1, default_threads() // 2), thread_name_prefix="ra-sdk-side")


def map_images(fn: Callable[[slice], np.ndarray], batch: int, pixels: int, *, threads: int | None = None, chunk: int | None = None) -> np.ndarray:
    """``fn`` over slices of the batch, concatenated in order. ``fn`` must treat images
    independently: each image's result is then the same bits however the batch is cut
    (tests/test_scoring.py checks that). ``chunk``: images per call, in the calling thread
    too (default: one slice per thread); small chunks keep each call's arrays in cache."""
    n = min(threads or default_threads(), batch)
    inline = n <= 1 or pixels < MIN_PIXELS
    step = chunk or (batch if inline else -(-batch // n))
    slices = [slice(i, min(i + step, batch)) for i in range(0, batch, step)]
    if len(slices) == 1:
        return fn(slices[0])
    return np.concatenate(list(map(fn, slices) if inline else pool(n).map(fn, slices)))
