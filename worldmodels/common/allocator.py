"""glibc's allocator settings for CPU training: keep freed batch-sized blocks in the heap.

Why: every update allocates and frees the same batch-sized tensors (an Atari DQN batch of 32 stacked frames in
float32 is 3.6 MB; its activations and gradients are of the same order). glibc serves a request above its *mmap
threshold* with a fresh ``mmap`` and gives it back with ``munmap`` on free, so every page of every such tensor is
zero-filled and faulted in again at each update; and it returns the heap's free top to the OS whenever that top
exceeds its *trim threshold*, which is refaulted on the next growth. Both cost kernel time, not model time.

- glibc's default adapts the mmap threshold upwards (to the largest block freed so far, at most 32 MiB) and the
  trim threshold with it. Measured, that leaves about 1% of a DQN learner's CPU time in the kernel but 13% of
  the ``video_cpu_ff`` world model's.
- ``MALLOC_MMAP_THRESHOLD_=1000000`` (what this project set before) fixes the threshold at 1 MB, which switches
  that adaptation off and leaves the trim threshold at 128 KiB: every tensor above 1 MB is mmapped at each
  update, 22-35% of the CPU time of Atari DQN and world-model training in the kernel.
- :data:`TUNED` (mmap threshold 32 MiB, glibc's maximum; trim threshold 256 MiB): tensors below 32 MiB are reused
  from the heap, and up to 256 MiB of free heap is kept per process instead of being returned at once.

``reverie bench allocator`` measures the three side by side (work per CPU-second, kernel share, page faults,
peak memory); README's benchmark table has the figures. The values are applied in three places, all from here or
checked against here:

- :func:`tune_allocator` at the start of every ``reverie`` command (glibc reads the variables only at process
  start, so a running process is changed through ``mallopt``);
- the environment of Ray workers (:func:`allocator_env`, through :func:`agents.runtime.ray_runtime.worker_env`);
- the Makefile's exports (for ``make test``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import MutableMapping

#: glibc's ``mallopt`` parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: The settings, as the environment variables glibc reads at process start (values in bytes).
TUNED: dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(256 * 1024 * 1024),
}

_PARAMS = {"MALLOC_MMAP_THRESHOLD_": M_MMAP_THRESHOLD, "MALLOC_TRIM_THRESHOLD_": M_TRIM_THRESHOLD}


def allocator_env(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """:data:`TUNED`, with each variable already set in ``environ`` (default ``os.environ``) kept as set: the
    environment to start other processes with (Ray's workers)."""
    env = os.environ if environ is None else environ
    return {name: env.get(name, value) for name, value in TUNED.items()}


def tune_allocator(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Apply :data:`TUNED` to this process and to the processes it starts.

    A variable the user already set is kept as it is (glibc applied it when this process started): an explicit
    setting always wins. Each one not set is applied now through ``mallopt`` and written into ``environ`` so that
    child processes (Ray's workers, subprocesses) start with it.

    :param environ: the environment to read and extend (default: ``os.environ``).
    :return: the variables this call applied (empty where the user set both, or where the C library is not glibc,
        e.g. macOS: nothing is changed there).
    """
    env = os.environ if environ is None else environ
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name) if libc_name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None:
        return {}
    applied: dict[str, str] = {}
    for name, value in TUNED.items():
        if name in env:
            continue
        # mallopt returns 1 on success; 0 where glibc refuses the value (it never refuses these on 64-bit Linux).
        if mallopt(_PARAMS[name], int(value)) == 1:
            env[name] = value
            applied[name] = value
    return applied
