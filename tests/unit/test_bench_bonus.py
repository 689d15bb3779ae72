"""``reverie bench throughput --bonus``: the bonus table on hand-made figures, and the CLI's refusal of ``--bonus``
without an actor-critic ``--algo`` (both before anything is measured: no env, no training)."""

from __future__ import annotations

from typing import Any

import pytest

from launch.bench.ac import expand_bonuses, format_ac_table, format_bonus_table
from launch.cli import main


def _result(with_bonuses: bool = True) -> dict[str, dict[str, Any]]:
    row: dict[str, Any] = {
        "steps_per_s": 1000.0, "sync_steps_per_s": 900.0, "sb3_steps_per_s": 800.0, "ratio_vs_sb3": 1.25,
        "sync_ratio_vs_sb3": 1.125, "learner_busy_fraction": 0.5, "game": "pong", "num_envs": 16, "splits": 2,
        "unroll_length": 5, "num_actors": 0, "seconds": 3.0, "cores": 2,
    }
    if with_bonuses:
        row["bonuses"] = {"cts": {"steps_per_s": 650.0, "ratio_vs_none": 0.65, "streams": "one"},
                          "rnd": {"steps_per_s": 900.0, "ratio_vs_none": 0.9, "streams": "two"}}
    return {"a2c": row}


def _row(table: str, *cells: str) -> str:
    """The one line of ``table`` holding every cell of ``cells`` as a whitespace-separated run of words."""
    found = [line for line in table.splitlines() if all(f"  {c}" in f"  {line}  " for c in cells)]
    assert len(found) == 1, f"{cells} in\n{table}"
    return found[0]


def test_bonus_table_ratios_and_goals() -> None:
    table = format_ac_table(_result())
    ours, bonus = table.split("\n\n")
    assert "ours / SB3 [>= 1.3]" in ours and "bonus" not in ours  # the existing table is unchanged above
    assert _row(bonus, "a2c", "none", "1,000.0 steps/s", "1.00x")
    cts = _row(bonus, "a2c", "cts", "one (A3C+)", "650.0 steps/s", "0.65x")
    assert cts.endswith("[>= 0.7] missed")  # 0.65 < 0.7
    rnd = _row(bonus, "a2c", "rnd", "two (RND)", "900.0 steps/s", "0.90x")
    assert rnd.endswith("[>= 0.85] met")
    assert "[>= 0.85]" not in cts and "[>= 0.7]" not in rnd  # each bonus with its own goal


def test_no_bonus_no_second_table() -> None:
    result = _result(with_bonuses=False)
    assert format_bonus_table(result) == ""
    assert "\n\n" not in format_ac_table(result)  # today's output when --bonus is not given


def test_expand_bonuses() -> None:
    assert expand_bonuses(["none", "rnd", "cts", "rnd"]) == ["rnd", "cts"]  # none is the reference, measured anyway
    with pytest.raises(ValueError, match="count"):
        expand_bonuses(["count"])


@pytest.mark.parametrize("argv", [
    ["bench", "throughput", "--bonus", "cts"],  # the default --algo is dqn
    ["bench", "throughput", "--algo", "dqn", "--bonus", "rnd"],
    ["bench", "density", "--bonus", "cts"],
])
def test_cli_refuses_bonus_without_actor_critic_algo(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--bonus" in err and "--algo" in err and err.count("\n") == 1  # one line, no traceback


def test_run_ac_bench_records_bonuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The measured configs (bonus and streams per bonus) and the ratio to the bonus-free rate, with the loop and SB3
    replaced by fixed rates."""
    import launch.bench.ac as ac

    rates = {"none": 1000.0, "cts": 700.0, "rnd": 850.0}
    seen: list[tuple[str, str]] = []

    def fake_ours(cfg: Any, seconds: float) -> dict[str, float]:
        seen.append((str(cfg.exploration.bonus), str(cfg.exploration.streams)))
        return {"steps_per_s": rates[str(cfg.exploration.bonus)], "learner_busy_fraction": 0.5, "seconds": seconds}

    monkeypatch.setattr(ac, "measure_ours", fake_ours)
    monkeypatch.setattr(ac, "measure_sb3", lambda cfg, seconds: None)
    row = ac.run_ac_bench(["a2c"], seconds=0.1, bonuses=["cts", "rnd"])["a2c"]
    assert seen[:3] == [("none", "two"), ("cts", "one"), ("rnd", "two")]  # bonuses right after the bonus-free loop
    assert row["bonuses"] == {"cts": {"steps_per_s": 700.0, "ratio_vs_none": 0.7, "streams": "one"},
                              "rnd": {"steps_per_s": 850.0, "ratio_vs_none": 0.85, "streams": "two"}}
    assert "bonuses" not in ac.run_ac_bench(["a2c"], seconds=0.1)["a2c"]  # no --bonus: today's figures
