"""Training across two simulated Ray nodes (ray.cluster_utils.Cluster, one CPU each)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.dqn.config import DQNConfig
from agents.dqn.train import TrainState, train
from launch.config import load_config


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[str]:
    import ray
    from ray.cluster_utils import Cluster

    from agents.runtime.ray_runtime import worker_env

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, runtime_env={"env_vars": worker_env()})
    yield cluster.address
    ray.shutdown()
    cluster.shutdown()


def test_actors_on_both_nodes(tmp_path: Path, two_nodes: str) -> None:
    import ray

    cfg = load_config(DQNConfig, ["dqn_catch"], [
        "runtime.num_actors=2", f"runtime.ray_address={two_nodes}", "run.total_frames=4000",
        "agent.learning_starts_frames=1000", "run.eval_episodes=0", "run.progress=false", "env.num_envs=4",
        f"run.runs_dir={tmp_path}", "run.name=cluster"])
    nodes: set[str] = set()

    def record(state: TrainState) -> None:
        if not nodes:
            nodes.update(w["node_id"] for w in ray.get([a.where.remote() for a in state.runtime.actors]))

    state = train(cfg, hooks=[record])
    assert len(nodes) == 2, f"actors ran on {nodes}"
    assert state.frames >= 4000 and state.updates > 0
