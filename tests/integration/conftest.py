"""A Ray instance shared by the tests of one module, bound to loopback (start-up costs ~5 s here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    import ray

    from agents.runtime.ray_runtime import init_ray

    if ray.is_initialized():
        ray.shutdown()
    init_ray(None, num_cpus=2)
    yield
    ray.shutdown()
