"""Issue 19's goals, each judged on one run's results: MET, MISSED by how
much, or not run.

A goal is the issue's sentence and the checks that decide it: a bound on
one of ours' figures in one scenario, either absolute or as a ratio to
another server's figure in the same scenario (Starlette's). One more goal,
that ours runs with history, presence and metrics at their defaults, is
judged on the settings ours ran with rather than on a figure.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bench.scenarios import Better
from chat_service.config import Config

__all__ = ["GOALS", "Check", "Goal", "judge", "target_of"]

# The settings of the features issue 19 wants on at their defaults; metrics
# have no off switch, so only METRICS_PORT (where they are served) could differ.
FEATURE_PREFIXES = ("HISTORY_", "PRESENCE_", "METRICS_")


@dataclass(frozen=True)
class Check:
    """Ours' figure `key` in `scenario` must be at least (`better` higher) or
    at most `bound`; with `versus`, ours divided by that server's figure."""

    scenario: str
    key: str
    label: str
    unit: str
    better: Better
    bound: float
    versus: str | None = None

    @property
    def target(self) -> str:
        """The bound in words, e.g. `p99 <= 50 ms` or `deliveries/s >= 3x Starlette`."""
        sign = ">=" if self.better == "higher" else "<="
        if self.versus is not None:
            return f"{self.label} {sign} {self.bound:g}x {self.versus.capitalize()}"
        bound = (
            f"{self.bound:g}" if self.unit in ("", "fraction") else _format(self.bound, self.unit)
        )
        return f"{self.label} {sign} {bound}"


@dataclass(frozen=True)
class Goal:
    """One line of the issue's goals: its words and the checks that decide it."""

    text: str
    checks: tuple[Check, ...]


def _deliveries_vs_starlette(scenario: str, bound: float) -> Check:
    return Check(scenario, "deliveries_per_s", "deliveries/s", "x", "higher", bound, "starlette")


def _sustained(scenario: str) -> Check:
    return Check(scenario, "sustained_fraction", "sustained", "fraction", "higher", 0.95)


def _p99(scenario: str, bound: float) -> Check:
    return Check(scenario, "latency_p99_ms", "p99", "ms", "lower", bound)


def _idle(scenario: str) -> Check:
    return Check(scenario, "kib_per_connection", "per connection", "KiB", "lower", 24)


GOALS: tuple[Goal, ...] = (
    Goal(
        "1 room x 500, max speed, unbatched: >= 1.0x Starlette+uvicorn",
        (_deliveries_vs_starlette("room500-max", 1.0),),
    ),
    Goal(
        "1 room x 500, max speed, batched: >= 3x Starlette+uvicorn",
        (_deliveries_vs_starlette("room500-max-batched", 3.0),),
    ),
    Goal(
        "1 room x 500 at 50 msg/s, unbatched: sustained, p99 <= 50 ms",
        (_sustained("room500-50mps"), _p99("room500-50mps", 50)),
    ),
    Goal(
        "50 x 20 at 1 msg/s, unbatched: sustained (>= 0.95 delivered), p99 <= 100 ms",
        (_sustained("rooms50x20"), _p99("rooms50x20", 100)),
    ),
    Goal("50 x 20 at 1 msg/s, batched: p99 <= 50 ms", (_p99("rooms50x20-batched", 50),)),
    Goal(
        "50 x 20 over two instances and Redis sharing one core: sustained in both modes, "
        "p99 <= 250 ms",
        tuple(
            check
            for name in ("redis2x-1core-rooms50x20", "redis2x-1core-rooms50x20-batched")
            for check in (_sustained(name), _p99(name, 250))
        ),
    ),
    Goal("Idle connections: <= 24 KiB each", (_idle("idle5000"),)),
    Goal(
        "Idle connections offering permessage-deflate: <= 24 KiB each",
        (_idle("idle5000-deflate"),),
    ),
    Goal(
        "Connect storm: >= 2,000 new WebSocket clients per second accepted, none cut off",
        (
            Check("storm5000", "clients_per_s", "accepted", "/s", "higher", 2000),
            Check("storm5000", "cut_off", "cut off", "", "lower", 0),
        ),
    ),
)
FEATURES_GOAL = "History, presence and metrics switched on, at their defaults"


def _format(value: float, unit: str) -> str:
    """`value` in `unit`: "x" a ratio, "fraction" a share, "" a count."""
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "fraction":
        return f"{value:.3f}"
    if unit == "":
        return f"{value:g}"
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.1f}"
    return f"{text} {unit}"


def _runs(results: dict[str, Any], scenario: str) -> dict[str, Any] | None:
    for entry in results["scenarios"]:
        if entry["scenario"]["name"] == scenario:
            runs: dict[str, Any] = entry["results"]
            return runs
    return None


def _figure(check: Check, results: dict[str, Any]) -> tuple[float | None, str]:
    """Ours' figure for `check` (a ratio with `versus`) and what it was made of,
    or None and why there is none."""
    runs = _runs(results, check.scenario)
    if runs is None or "ours" not in runs:
        return None, "not run"
    ours = runs["ours"]
    if "error" in ours or "skipped" in ours:
        return None, "failed" if "error" in ours else "skipped"
    value = ours.get(check.key)
    if value is None:
        return None, f"no {check.label}"
    if check.versus is None:
        return value, f"{check.label} {_format(value, check.unit)}"
    other = runs.get(check.versus, {}).get(check.key)
    if not other:
        return None, f"{check.scenario}: no {check.versus} figure"
    ratio = value / other
    return ratio, f"{_format(ratio, 'x')} ({value:,.0f} vs {other:,.0f})"


def _shortfall(check: Check, value: float) -> str | None:
    """None if `value` meets `check`, else by how much it misses."""
    if check.better == "higher":
        if value >= check.bound:
            return None
        if check.unit in ("x", "/s") and value > 0:
            if check.bound / value < 1.1:  # "1.0x" would hide it: say how much is lacking
                return f"{(1 - value / check.bound) * 100:.0f}%"
            return f"{check.bound / value:.1f}x"
        return _format(check.bound - value, check.unit)
    if value <= check.bound:
        return None
    return _format(value - check.bound, check.unit)


def judge_check(check: Check, results: dict[str, Any]) -> dict[str, Any]:
    """One check on `results`: its figure, and MET, "MISSED by X" or "not run"."""
    value, measured = _figure(check, results)
    if value is None:
        return {"value": None, "measured": measured, "verdict": "not run", "short": None}
    short = _shortfall(check, value)
    verdict = "MET" if short is None else f"MISSED by {short}"
    return {"value": value, "measured": measured, "verdict": verdict, "short": short}


def _features(results: dict[str, Any]) -> dict[str, Any]:
    """Whether every run of ours had the features' settings at their defaults."""
    names = [
        spec.metadata["env"]
        for spec in dataclasses.fields(Config)
        if spec.metadata["env"].startswith(FEATURE_PREFIXES)
    ]
    changed = sorted(
        {
            f"{name}={env[name]} in {entry['scenario']['name']}"
            for entry in results["scenarios"]
            if "ours" in entry["results"]
            for env in [results.get("ours_env", {}) | entry["scenario"].get("env", {})]
            for name in names
            if name in env and _parsed(name, env[name]) != _parsed(name, None)
        }
    )
    if not any("ours" in entry["results"] for entry in results["scenarios"]):
        return {"target": "defaults", "measured": "ours not run", "verdict": "not run"}
    measured = "; ".join(changed) if changed else "all at their defaults"
    verdict = f"MISSED by {len(changed)} setting(s)" if changed else "MET"
    return {"target": "defaults", "measured": measured, "verdict": verdict}


def _parsed(name: str, raw: str | None) -> Any:
    config = Config.load({} if raw is None else {name: raw})
    field = next(spec for spec in dataclasses.fields(Config) if spec.metadata["env"] == name)
    return getattr(config, field.name)


def _overall(goal: Goal, judged: list[dict[str, Any]]) -> str:
    """MISSED by what each missed check lacks, else MET if every check ran, else not run."""
    missed = [
        (check, outcome["short"])
        for check, outcome in zip(goal.checks, judged, strict=True)
        if outcome["short"] is not None
    ]
    if missed:
        if len(goal.checks) == 1:
            return f"MISSED by {missed[0][1]}"
        several = len({check.scenario for check in goal.checks}) > 1
        parts = [
            f"{short} ({check.label}{f', {check.scenario}' if several else ''})"
            for check, short in missed
        ]
        return "MISSED by " + ", ".join(parts)
    if all(outcome["verdict"] == "MET" for outcome in judged):
        return "MET"
    return "not run"


def _measured(goal: Goal, judged: list[dict[str, Any]]) -> str:
    """The checks' figures, scenario by scenario; one reason for a scenario without."""
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for check, outcome in zip(goal.checks, judged, strict=True):
        by_scenario.setdefault(check.scenario, []).append(outcome)
    parts = []
    for scenario, outcomes in by_scenario.items():
        missing = [o["measured"] for o in outcomes if o["value"] is None]
        text = missing[0] if missing else ", ".join(o["measured"] for o in outcomes)
        parts.append(f"{scenario}: {text}" if len(by_scenario) > 1 else text)
    return "; ".join(parts)


def judge(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every goal on `results`: its words, target, figures and verdict."""
    verdicts = []
    for goal in GOALS:
        judged = [judge_check(check, results) for check in goal.checks]
        verdicts.append(
            {
                "goal": goal.text,
                "target": ", ".join(dict.fromkeys(check.target for check in goal.checks)),
                "measured": _measured(goal, judged),
                "verdict": _overall(goal, judged),
            }
        )
    verdicts.append({"goal": FEATURES_GOAL} | _features(results))
    return verdicts


def target_of(scenario: str, key: str) -> Check | None:
    """The goal's check on `key` in `scenario`, if a goal has one."""
    for goal in GOALS:
        for check in goal.checks:
            if (check.scenario, check.key) == (scenario, key):
                return check
    return None
