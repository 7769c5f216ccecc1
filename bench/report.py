"""The benchmark's results as a person reads them: results.json, a Markdown
table (results.md) and a chart (results.png), all in the output folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import goals
from bench.scenarios import Scenario

__all__ = ["goal_lines", "one_line", "rows", "write"]

# Above this share of its core the load generator may itself have been the
# bottleneck, and the row says so.
LOADGEN_SATURATED = 0.8
# Below this share of its core a server at full load either waited (e.g. a
# coalescing window) or was denied CPU by other processes on a busy machine;
# its CPU per delivery holds either way.
SERVER_STARVED = 0.9


def _format(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "":
        return f"{value:.3f}"
    if abs(value) >= 1000:
        return f"{value:,.0f} {unit}"
    return f"{value:.1f} {unit}"


def one_line(scenario: Scenario, outcome: dict[str, Any]) -> str:
    """A progress line for one run: its headline figures or why there are none."""
    if "error" in outcome:
        return f"FAILED: {outcome['error']}"
    if "skipped" in outcome:
        return f"skipped: {outcome['skipped']}"
    figures = [f"{m.label} {_format(outcome.get(m.key), m.unit)}" for m in scenario.metrics]
    figures.append(f"server CPU {outcome.get('server_cpu', 0):.0%}")
    figures.append(f"loadgen CPU {outcome.get('loadgen_cpu', 0):.0%}")
    return ", ".join(figures)


def _ratio(ours: float | None, other: float | None) -> float | None:
    return ours / other if ours is not None and other else None


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per scenario metric: ours, the baseline, Starlette, ours' ratio
    to each, and the issue's target for it, if a goal has one, with its verdict."""
    table = []
    for entry in results["scenarios"]:
        scenario = entry["scenario"]
        ours = entry["results"].get("ours", {})
        baseline = entry["results"].get("baseline", {})
        starlette = entry["results"].get("starlette", {})
        for metric in scenario["metrics"]:
            key = metric["key"]
            ours_value = ours.get(key)
            base_value = baseline.get(key)
            ratio = _ratio(ours_value, base_value)
            note = ours.get("skipped") or ours.get("error") or ""
            if "stand_in" in baseline:
                note = note or f"baseline: one instance, no Redis ({baseline['stand_in']})"
            check = goals.target_of(scenario["name"], key)
            judged = goals.judge_check(check, results) if check is not None else None
            for who, run in (("ours", ours), ("baseline", baseline), ("starlette", starlette)):
                if run.get("loadgen_cpu", 0) > LOADGEN_SATURATED and "stand_in" not in run:
                    note += f" loadgen near saturation in {who}'s run."
                if scenario["mode"] == "fanout" and run.get("server_cpu", 1) < SERVER_STARVED:
                    note += f" {who}: server used {run['server_cpu']:.0%} of its core."
                if run.get("expired_in_flight") and "stand_in" not in run:
                    note += f" {who}: {run['expired_in_flight']} messages never reached everyone."
                closes = run.get("unexpected_closes")
                if closes and "stand_in" not in run:
                    note += f" {who}: clients closed {closes}."
            table.append(
                {
                    "scenario": scenario["name"],
                    "title": scenario["title"],
                    "metric": metric["label"],
                    "unit": metric["unit"],
                    "ours": ours_value,
                    "baseline": base_value,
                    "starlette": starlette.get(key),
                    "ratio": ratio,
                    "ratio_starlette": _ratio(ours_value, starlette.get(key)),
                    "target": "" if check is None else check.target,
                    # Where the bound is absolute, for the chart's line.
                    "target_value": None if check is None or check.versus else check.bound,
                    "verdict": "skipped"
                    if "skipped" in ours
                    else ("" if judged is None else judged["verdict"]),
                    "server_cpu": tuple(
                        run.get("server_cpu") for run in (ours, baseline, starlette)
                    ),
                    "loadgen_cpu": tuple(
                        run.get("loadgen_cpu") for run in (ours, baseline, starlette)
                    ),
                    "note": note.strip(),
                    "baseline_stand_in": baseline.get("stand_in"),
                }
            )
    return table


def _percents(values: tuple[float | None, ...]) -> str:
    return " / ".join("-" if v is None else f"{v:.0%}" for v in values)


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def markdown(results: dict[str, Any]) -> str:
    """The results table, the machine they came from, and the profile if one was taken."""
    machine = results["machine"]
    lines = [
        f"Benchmark of {results['started']}{' (smoke sizes)' if results['smoke'] else ''}: "
        f"{machine['cpu']}, {machine['cores']} cores, server on core {machine['server_core']}, "
        f"load generator (Node {machine['node']}) on core {machine['loadgen_core']}"
        f"{'' if machine['pinned'] else ' (not pinned)'}; Python {machine['python']}; "
        f"load average {machine['loadavg_at_start'][0]:.2f} at start, "
        f"{machine['loadavg_at_end'][0]:.2f} at end; {results['seconds']} s in all.",
    ]
    if results["note"]:
        lines.append(f"Note: {results['note']}")
    lines += [
        "",
        "Issue 19's goals:",
        "",
        "| goal | target | measured (ours) | |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {goal['goal']} | {goal['target']} | {goal['measured']} | {goal['verdict']} |"
        for goal in goals.judge(results)
    ]
    lines += [
        "",
        "| scenario | metric | ours | baseline | Starlette | ours/baseline | ours/Starlette "
        "| target | | server CPU ours / base / Starlette | loadgen CPU ours / base / Starlette "
        "| note |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|---|",
    ]
    for row in rows(results):
        unit = row["unit"]
        lines.append(
            f"| {row['title']} | {row['metric']} | {_format(row['ours'], unit)} | "
            f"{_format(row['baseline'], unit)} | {_format(row['starlette'], unit)} | "
            f"{_times(row['ratio'])} | {_times(row['ratio_starlette'])} | {row['target']} | "
            f"{row['verdict']} | {_percents(row['server_cpu'])} | "
            f"{_percents(row['loadgen_cpu'])} | {row['note']} |"
        )
    profile = results.get("profile")
    if profile:
        lines += ["", _profile_markdown(profile)]
    return "\n".join(lines) + "\n"


def _profile_markdown(profile: dict[str, Any]) -> str:
    if "error" in profile or not profile.get("samples"):
        return f"Profile: not taken ({profile.get('error', 'no samples')})."
    run = profile["run"]
    out = [
        f"Profile of ours, {profile['scenario']} (py-spy, {profile['samples']} "
        f"samples; {run.get('deliveries_per_s', 0):,.0f} deliveries/s, "
        f"{run.get('cpu_us_per_delivery', 0):.1f} µs server CPU per delivery while profiled):",
        "",
        "| what the server was doing | share of samples | µs per delivery |",
        "|---|---:|---:|",
    ]
    # A layer's share of the samples times the CPU per delivery: its cost per frame.
    per_delivery = run.get("cpu_us_per_delivery", 0) / 100
    out += [
        f"| {name} | {share}% | {share * per_delivery:.1f} |" for name, share in profile["by_path"]
    ]
    out += [
        "",
        "| layer of the innermost frame (self time) | share of samples | µs per delivery |",
        "|---|---:|---:|",
    ]
    out += [
        f"| {name} | {share}% | {share * per_delivery:.1f} |"
        for name, share in profile["self_by_layer"]
    ]
    for title, key in (("self time", "top_self"), ("inclusive time", "top_inclusive")):
        out += ["", f"| top functions by {title} | share |", "|---|---:|"]
        out += [f"| `{name}` | {share}% |" for name, share in profile[key]]
    return "\n".join(out)


def chart(results: dict[str, Any], path: Path) -> None:
    """One panel per kind of figure, ours beside the baseline and Starlette, targets as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {
        "deliveries/s": ("Max fan-out (higher is better)", "deliveries/s"),
        "p99 latency": ("p99 latency (lower is better; log scale)", "ms"),
        "sustained (delivered/offered)": ("Sustained share of offered load", "fraction"),
        "KiB per connection": ("Memory per idle connection (lower is better)", "KiB"),
        "clients/s accepted": ("Connect storm (higher is better)", "clients/s"),
    }
    table = rows(results)
    figure, axes = plt.subplots(2, 3, figsize=(20, 10))
    axes.flat[-1].set_visible(False)
    for axis, (metric, (title, ylabel)) in zip(axes.flat, panels.items(), strict=False):
        selected = [row for row in table if row["metric"] == metric]
        labels = [row["scenario"] for row in selected]
        positions = range(len(selected))
        ours = [row["ours"] or 0 for row in selected]
        base = [row["baseline"] or 0 for row in selected]
        star = [row["starlette"] or 0 for row in selected]
        width = 0.27
        axis.bar([p - width for p in positions], ours, width, label="ours", color="#1f77b4")
        bars = axis.bar(positions, base, width, label="baseline", color="#aaa")
        axis.bar([p + width for p in positions], star, width, label="Starlette", color="#ff7f0e")
        for bar, row in zip(bars, selected, strict=True):
            if row["baseline_stand_in"]:
                bar.set_hatch("//")  # a stand-in: the baseline has no Redis fan-out
        for p, row in zip(positions, selected, strict=True):
            text = "" if row["ratio_starlette"] is None else f"{row['ratio_starlette']:.2f}x S."
            if row["verdict"]:  # MET or MISSED: the table says by how much
                text += f"\n{row['verdict'].split()[0]}"
            top = max(ours[p], base[p], star[p])
            axis.annotate(text, (p, top), ha="center", va="bottom", fontsize=8)
            if row["target_value"] is not None:
                axis.hlines(
                    row["target_value"], p - 0.45, p + 0.45, colors="red", linestyles="dashed"
                )
        if metric == "p99 latency":
            axis.set_yscale("log")
        axis.set_title(title)
        axis.set_ylabel(ylabel)
        axis.set_xticks(list(positions), labels, rotation=15, fontsize=8)
        axis.margins(y=0.2)
        axis.legend(fontsize=8)
    figure.suptitle(
        f"chat_service vs bare Quart-Trio baseline and Starlette+uvicorn, {results['started']}"
        f"{' (smoke sizes)' if results['smoke'] else ''}; red dashes: issue 19's bounds; "
        "ratios are ours / Starlette (S.)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def goal_lines(results: dict[str, Any]) -> list[str]:
    """Each goal in one line for the progress output: its words, figures and verdict."""
    return [
        f"{goal['verdict']}: {goal['goal']}: {goal['measured']}" for goal in goals.judge(results)
    ]


def write(results: dict[str, Any], out: Path) -> None:
    """results.json, results.md and results.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    chart(results, out / "results.png")
