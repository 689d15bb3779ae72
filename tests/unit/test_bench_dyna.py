"""``reverie bench dyna``: the arithmetic of its rates, ratios and Atari 100k projection on hand-made counts, its
tables, one tiny real measurement of DQN and Dyna side by side (counts, not speed), and the CLI's refusals."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from launch.bench.dyna import (
    format_atari_table,
    format_minatar_table,
    minatar_configs,
    project_hours,
    run_minatar_bench,
    summarise,
)
from launch.cli import main

torch.set_num_threads(1)

RAW = {
    "dqn": {"elapsed": 10.0, "frames": 2000.0, "steps": 2000.0, "updates": 2000.0, "imagined": 0.0, "busy": 8.0},
    "dyna_mbpo": {"elapsed": 20.0, "frames": 500.0, "steps": 500.0, "updates": 500.0, "imagined": 8000.0,
                  "busy": 19.0},
}


def test_rates_and_ratios_by_hand() -> None:
    rows = summarise(RAW)
    dqn, dyna = rows["dqn"], rows["dyna_mbpo"]
    assert dqn["real_frames_per_s"] == 200.0 and dqn["updates_per_s"] == 200.0 and dqn["imagined_per_s"] == 0.0
    assert dqn["learner_busy_fraction"] == 0.8 and dqn["real_frames_ratio"] == 1.0 and dqn["updates_ratio"] == 1.0
    assert dyna["real_frames_per_s"] == 25.0 and dyna["imagined_per_s"] == 400.0 and dyna["updates_per_s"] == 25.0
    assert dyna["learner_busy_fraction"] == 0.95 and dyna["imagined_per_real_frame"] == 16.0
    assert dyna["real_frames_ratio"] == 0.125 and dyna["updates_ratio"] == 0.125


def _minatar_result() -> dict[str, Any]:
    return {"env": "minatar/breakout", "mode": "local", "seconds": 10.0, "cores": 2, "rows": summarise(RAW),
            "settings": {"rollout_k": 2, "rollouts_per_update": 8, "imagined_ratio": 1.0,
                         "q_updates_per_learner_update": 1, "model_updates_per_learner_update": 1,
                         "model_batch_size": 64, "batch_size": 32, "update_period": 1}}


def test_minatar_table_shows_each_run_with_its_ratios() -> None:
    table = format_minatar_table(_minatar_result())
    lines = table.splitlines()
    assert lines[0].startswith("reverie bench dyna: minatar/breakout, local mode, 2 cores")
    assert "32 real (+ 32 imagined for Dyna)" in table and "8 x 2 imagined transitions" in table
    dqn = next(line for line in lines if line.strip().startswith("dqn "))
    dyna = next(line for line in lines if line.strip().startswith("dyna_mbpo "))
    assert dqn.split() == ["dqn", "200.0", "1.00x", "0.0", "0.00", "200.0", "1.00x", "80%"]
    assert dyna.split() == ["dyna_mbpo", "25.0", "0.12x", "400.0", "16.00", "25.0", "0.12x", "95%"]


RATES = {"real_steps_per_s": 100.0, "real_frames_per_s": 400.0, "model_updates_per_s": 10.0,
         "model_frames_per_s": 640.0, "imagined_per_s": 160.0, "imagined_frames_per_s": 640.0,
         "dqn_updates_per_s": 50.0, "mixed_updates_per_s": 25.0}
PLAN = {"learning_starts_steps": 10_000.0, "update_period": 1.0, "model_updates_per_learner_update": 1.0,
        "model_update_every": 2.0, "imagined_per_update": 16.0, "imagined_games": 8.0,
        "q_updates_per_learner_update": 1.0, "model_batch_size": 64.0, "batch_size": 32.0, "mixed_batch_size": 64.0}


def test_the_atari_100k_projection_by_hand() -> None:
    p = project_hours(RATES, PLAN)
    # 90k updates after 10k learning starts; acting 100k / 100 = 1000 s; the model every 2nd update: 45k / 10 =
    # 4500 s; imagination 90k x 16 / 160 = 9000 s; mixed DQN 90k / 25 = 3600 s; DQN alone 90k / 50 = 1800 s.
    assert p["updates"] == 90_000 and p["acting_s"] == 1000.0 and p["model_s"] == 4500.0
    assert p["imagination_s"] == 9000.0 and p["dqn_s"] == 3600.0
    assert p["dyna_hours"] == pytest.approx(18_100 / 3600) and p["dqn_hours"] == pytest.approx(2800 / 3600)
    assert p["dyna_over_dqn"] == pytest.approx(18_100 / 2800)
    assert project_hours(RATES, PLAN, steps=5000)["updates"] == 0.0  # all before learning starts
    table = format_atari_table({"env": "Pong", "video_preset": "video_cpu_ff", "seconds": 5.0, "cores": 2,
                                "threads": 1, "rates": RATES, "plan": PLAN, "projection": p, "steps": 100_000})
    assert "100.0 steps/s = 400.0 frames/s" in table and "10.00 updates/s = 640.0 frames/s" in table
    assert "ImaginedEnv, 8 games" in table and "160.0 transitions/s = 640.0 frames/s" in table
    assert "acting 0.28 h + world model 1.25 h + imagination 2.50 h + DQN 1.00 h = Dyna 5.03 h" in table
    assert "model-free DQN at the same schedule: 0.78 h; Dyna / DQN = 6.46x" in table


def test_the_runs_share_dqns_settings_and_differ_in_imagination() -> None:
    cfgs = minatar_configs("minatar/space_invaders", "ray")
    assert list(cfgs) == ["dqn", "dyna_mbpo", "dyna_simple"]
    assert all(c.env.game == "minatar/space_invaders" and c.runtime.num_actors == 2 for c in cfgs.values())
    for key in ("batch_size", "update_period", "lr", "optimizer", "target_update_frames", "learning_starts_frames"):
        assert len({getattr(c.agent, key) for c in cfgs.values()}) == 1, key
    assert cfgs["dyna_mbpo"].dyna.scheme == "mbpo" and cfgs["dyna_simple"].dyna.scheme == "simple"
    assert cfgs["dyna_mbpo"].dyna.model_warmup_transitions == 0
    with pytest.raises(ValueError, match="minatar/<game>"):
        minatar_configs("Pong")


def test_a_tiny_measurement_counts_what_each_run_did() -> None:
    tiny = ["network.hidden=16", "agent.batch_size=8", "agent.learning_starts_frames=64", "replay.capacity=2048",
            "env.num_envs=2"]
    result = run_minatar_bench(seconds=0.3, extra=tiny)
    raw, rows = result["raw"], result["rows"]
    assert set(rows) == {"dqn", "dyna_mbpo", "dyna_simple"}
    assert raw["dqn"]["imagined"] == 0 and rows["dqn"]["real_frames_ratio"] == 1.0
    for name in ("dyna_mbpo", "dyna_simple"):
        r = raw[name]
        assert r["updates"] > 0 and r["frames"] > 0 and r["elapsed"] >= 0.3
        # Every Dyna update after warm-up 0 imagines: at most 8 rollouts x k = 2 transitions each (mbpo drops
        # steps after an imagined game over; simple drops autoreset steps).
        assert 0 < r["imagined"] <= 16 * (r["updates"] + 1)
        assert 0 < r["busy"] <= r["elapsed"]
        assert rows[name]["real_frames_ratio"] == pytest.approx(
            (r["frames"] / r["elapsed"]) / (raw["dqn"]["frames"] / raw["dqn"]["elapsed"]))
    assert "dyna_simple" in format_minatar_table(result)


@pytest.mark.parametrize(("argv", "match"), [
    (["bench", "dyna", "--env", "Pong", "--mode", "ray"], "--mode ray: the Atari costs"),
    (["bench", "vae", "--env", "minatar/breakout"], "--env and --mode apply to `reverie bench dyna` only"),
    (["bench", "throughput", "--mode", "ray"], "--env and --mode apply to `reverie bench dyna` only"),
])
def test_the_cli_refuses_options_that_do_not_apply(argv: list[str], match: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2  # before anything is measured: no env, no training
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
