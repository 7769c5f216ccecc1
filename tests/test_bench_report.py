"""The benchmark's table: ratios to the baseline and verdicts against the targets."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from bench.report import rows
from bench.scenarios import SCENARIOS

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


def _results(name: str, **runs: dict[str, Any]) -> dict[str, Any]:
    scenario = BY_NAME[name]
    entry = {"scenario": asdict(scenario) | {"title": scenario.title}, "results": runs}
    return {"scenarios": [entry]}


def test_a_ratio_target_is_judged_on_ours_over_baseline() -> None:
    met, _cpu = rows(
        _results(
            "room500-max",
            ours={"deliveries_per_s": 9000.0, "cpu_us_per_delivery": 100.0},
            baseline={"deliveries_per_s": 10000.0, "cpu_us_per_delivery": 90.0},
        )
    )
    assert met["ratio"] == 0.9
    assert met["verdict"] == "met"
    missed = rows(
        _results(
            "room500-max", ours={"deliveries_per_s": 8000.0}, baseline={"deliveries_per_s": 1e4}
        )
    )[0]
    assert missed["verdict"] == "MISSED"


def test_an_upper_bound_is_met_at_or_below_it() -> None:
    p50, p99 = rows(
        _results(
            "room500-5mps",
            ours={"latency_p50_ms": 20.0, "latency_p99_ms": 150.0},
            baseline={"latency_p50_ms": 40.0, "latency_p99_ms": 200.0},
        )
    )
    assert p50["verdict"] == ""  # no target for p50
    assert p99["verdict"] == "met"
    assert p99["ratio"] == 0.75


def test_a_skipped_scenario_says_why_and_claims_nothing() -> None:
    reason = "chat_service reports that Redis fan-out is not built"
    sustained, p99 = rows(
        _results(
            "redis2x-rooms50x20-batched",
            ours={"skipped": reason},
            baseline={"sustained_fraction": 1.0, "stand_in": "rooms50x20-batched"},
        )
    )
    assert sustained["verdict"] == p99["verdict"] == "skipped"
    assert sustained["ratio"] is None
    assert reason in sustained["note"]
