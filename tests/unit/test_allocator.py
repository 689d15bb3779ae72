"""The allocator settings: what tune_allocator applies, that they agree everywhere, and that a freed block is reused."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from worldmodels.common.allocator import TUNED, allocator_env, tune_allocator

ROOT = Path(__file__).resolve().parents[2]

# Free one 4 MiB block, allocate another; print how many more bytes glibc then holds in mmapped blocks
# (mallinfo2's hblkhd): 4 MiB where the block is a fresh mapping, 0 where it was reused from the heap.
MAPPED = """
import ctypes, sys
import numpy as np
if sys.argv[1] == "call":
    from worldmodels.common.allocator import tune_allocator
    tune_allocator()

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
np.ones(1 << 20, np.float32)  # 4 MiB, freed at once
before = mallinfo2().hblkhd  # blocks mapped earlier (at import) and still alive
block = np.ones(1 << 20, np.float32)
print(mallinfo2().hblkhd - before)
"""


def _mapped_bytes(env_vars: dict[str, str], mode: str = "env") -> int:
    env = {k: v for k, v in os.environ.items() if k not in TUNED}
    env.update(env_vars)
    out = subprocess.run([sys.executable, "-c", MAPPED, mode], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


def test_tune_applies_what_is_unset_and_keeps_what_the_user_set() -> None:
    env: dict[str, str] = {}
    assert tune_allocator(env) == TUNED
    assert env == TUNED
    user = {"MALLOC_MMAP_THRESHOLD_": "4096"}
    assert tune_allocator(user) == {"MALLOC_TRIM_THRESHOLD_": TUNED["MALLOC_TRIM_THRESHOLD_"]}
    assert user["MALLOC_MMAP_THRESHOLD_"] == "4096"
    assert allocator_env({"MALLOC_TRIM_THRESHOLD_": "1"}) == {**TUNED, "MALLOC_TRIM_THRESHOLD_": "1"}


def test_the_makefile_and_ray_workers_use_the_same_values() -> None:
    from agents.runtime.ray_runtime import worker_env

    makefile = (ROOT / "Makefile").read_text()
    for name, value in TUNED.items():
        assert re.search(rf"^export {name} \?= {value}$", makefile, re.M), name
    assert {k: worker_env()[k] for k in TUNED} == allocator_env()
    assert int(TUNED["MALLOC_MMAP_THRESHOLD_"]) == 32 * 1024 * 1024  # glibc's largest on 64-bit: more is refused


def test_tuned_settings_keep_a_freed_batch_sized_block() -> None:
    # 1 MB threshold: the second 4 MiB block is a fresh mapping (page faults on every touch), like every batch.
    assert _mapped_bytes({"MALLOC_MMAP_THRESHOLD_": "1000000"}) >= 4 << 20
    # Tuned, through the environment or through mallopt in a running process: it comes from the heap.
    assert _mapped_bytes(TUNED) == 0
    assert _mapped_bytes({}, mode="call") == 0


def test_allocator_bench_on_minatar() -> None:
    from launch.bench.allocator import SETTINGS, format_allocator_table, run_allocator_bench

    result = run_allocator_bench(seconds=0.3, rounds=1, workloads=["minatar_train"])
    figures = result["workloads"]["minatar_train"]
    assert set(figures) == set(SETTINGS)
    for f in figures.values():
        assert f["per_cpu_s"] > 0 and f["per_s"] > 0 and 0 <= f["sys_share"] < 1 and f["max_rss_mb"] > 50
    ratios = result["ratios"]["minatar_train"]
    assert ratios["tuned_over_1mb"] == pytest.approx(figures["tuned"]["per_cpu_s"]
                                                     / figures["1 MB threshold"]["per_cpu_s"])
    table = format_allocator_table(result)
    assert table.count("| minatar_train (agent steps) |") == 3 and "tuned / 1 MB threshold" in table
    json.dumps(result)  # what --json prints
    with pytest.raises(ValueError, match="unknown workload"):
        run_allocator_bench(workloads=["nope"])
    with pytest.raises(ValueError, match="--rounds >= 1"):
        run_allocator_bench(rounds=0)
