"""Test-wide settings: one torch thread, passive OpenMP waits, Ray without tokens or usage stats."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray rewrites 127.0.0.1 in a cluster address to the host's outward IP, which sandboxes (and CI) may not
# route to; with this flag it keeps loopback, so the simulated two-node cluster stays on 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import torch  # noqa: E402

torch.set_num_threads(1)
