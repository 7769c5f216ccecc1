"""The benchmark: every scenario against chat_service, the bare-stack
baseline and Starlette + uvicorn + broadcaster in one run, results as JSON,
a Markdown table and a PNG chart.

    python -m bench.run [--smoke] [--out DIR] [--only NAME ...] [--profile]

Each server runs as its own process pinned to one core, the Node load
generator (bench/loadgen.js) on the other, and every figure of ours comes
with the baseline's and Starlette's from the same run. `--smoke` runs every scenario at tiny
sizes: it shows the benchmark works, not how fast anything is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench import processes, report
from bench.processes import BENCH_DIR, Cores, Server
from bench.profile_summary import summarize
from bench.scenarios import BASELINE_STAND_IN, SCENARIOS, Scenario, smoke
from chat_service.devtools.redis_cluster import redis_cluster

# Logged by chat_service when REDIS_URL is set on a build without Redis fan-out.
REDIS_NOT_BUILT = "Redis fan-out is not built"
# Our server's settings in every scenario; everything else, history,
# presence and metrics included, at its default, as users run it (issue 19).
# No per-connection INFO log lines (the others log nothing per connection
# either), no rate limit (the max-speed publisher sends hundreds of messages
# a second, far past the default 10/s: the load is the point, not a client
# to police), and a short drain, since the load generator has gone when a
# server is stopped.
OURS_ENV = {
    "LOG_LEVEL": "WARNING",
    "RATE_LIMIT_PER_SECOND": "0",
    "SHUTDOWN_GRACE_SECONDS": "2",
}
# Beyond the scenario's own durations, how long the load generator may take
# before it is killed (connecting, start-up, shutting down).
LOADGEN_SLACK = 60.0
# The scenario --profile profiles by default: the per-frame cost at its purest.
PROFILED = "room500-max"
# py-spy's sampling rate (Hz) for the profile: fine enough for a 10 s window,
# light enough not to slow the server it samples.
PROFILE_RATE = 250


def run_loadgen(
    scenario: Scenario,
    servers: list[Server],
    cores: Cores,
    log: Path,
    profile_to: Path | None = None,
    *,
    ready_frame: str = "welcome",
) -> dict[str, Any]:
    """Drive `servers` with `scenario`; the load generator's result plus the
    servers' CPU over the window (and their RSS, for idle connections).
    `ready_frame` tells a storm's client it is in the room."""
    urls = [server.ws_url() for server in servers]
    config = json.dumps(scenario.loadgen_config(urls, ready_frame))
    pids = [server.pid for server in servers]
    measured: dict[str, Any] = {}
    with log.open("wb") as stderr:
        loadgen = subprocess.Popen(
            [*cores.loadgen_prefix(), "node", str(BENCH_DIR / "loadgen.js"), config],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert loadgen.stdout is not None
    assert loadgen.stdin is not None
    watchdog = threading.Timer(
        scenario.warmup + scenario.duration + scenario.drain + LOADGEN_SLACK, loadgen.kill
    )
    watchdog.start()
    rss_before = sum(processes.rss_kib(pid) for pid in pids)
    profiler: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] | None = None
    try:
        for line in loadgen.stdout:
            event = json.loads(line)
            kind = event["event"]
            if kind == "ready" and scenario.mode == "idle":
                rss = sum(processes.rss_kib(pid) for pid in pids)
                measured["rss_kib_before"] = rss_before
                measured["rss_kib"] = rss
                measured["kib_per_connection"] = (rss - rss_before) / event["clients"]
                loadgen.stdin.close()
            elif kind == "measure_start":
                cpu_start = sum(processes.cpu_seconds(pid) for pid in pids)
                started = time.monotonic()
                if profile_to is not None:
                    profiler = _start_profiler(pids[0], scenario.duration, profile_to, cores)
            elif kind == "measure_end":
                elapsed = time.monotonic() - started
                cpu = sum(processes.cpu_seconds(pid) for pid in pids) - cpu_start
                measured["server_cpu"] = cpu / elapsed
            elif kind == "result":
                result = event
            elif kind == "error":
                raise RuntimeError(f"load generator: {event['message']}")
    finally:
        watchdog.cancel()
        if loadgen.poll() is None:
            loadgen.kill()
        loadgen.wait()
        if profiler is not None:
            profiler.wait(timeout=scenario.duration + LOADGEN_SLACK)
    if result is None:
        raise RuntimeError(f"load generator exited {loadgen.returncode} without a result")
    figures = _flatten(result) | measured
    if figures.get("deliveries_per_s") and "server_cpu" in figures:
        figures["cpu_us_per_delivery"] = figures["server_cpu"] * 1e6 / figures["deliveries_per_s"]
    return figures


def _flatten(result: dict[str, Any]) -> dict[str, Any]:
    latency = result.pop("latency_ms", None) or {}
    result.pop("event")
    for key in ("p50", "p99", "max"):
        if key in latency:
            result[f"latency_{key}_ms"] = latency[key]
    return result


def _py_spy() -> str | None:
    """py-spy from this interpreter's environment, else from PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _start_profiler(pid: int, duration: float, out: Path, cores: Cores) -> subprocess.Popen[bytes]:
    command = [
        *cores.loadgen_prefix(),
        _py_spy() or "py-spy",
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(PROFILE_RATE),
        "--duration",
        str(max(1, int(duration))),
        "--format",
        "raw",
        "--nonblocking",
        "--full-filenames",
        "--output",
        str(out),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_scenario(
    scenario: Scenario,
    server: str,
    cores: Cores,
    logs: Path,
    profile_to: Path | None = None,
    *,
    before: Path | None = None,
    variants: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """One scenario against one server kind ("ours", "baseline", "starlette",
    "before": ours from the source tree `before`, or a name of `variants`:
    ours with those settings too), from start to stop."""
    tag = f"{scenario.name}.{server}"
    variants = variants or {}
    # chat_service says `subscribed` once the room is joined; the others say
    # `welcome` once subscribed.
    ready_frame = "welcome"
    if server in ("ours", "before") or server in variants:
        command = processes.ours_command(before if server == "before" else None)
        env = OURS_ENV | scenario.env | variants.get(server, {})
        ready_frame = "subscribed"
    elif server == "starlette":
        command = processes.starlette_command()
        env = {}
    else:
        command = processes.baseline_command()
        env = {}
    with ExitStack() as stack:
        if scenario.redis:
            url = stack.enter_context(
                processes.start_redis(
                    logs / f"{tag}.redis.log", cores, on_server_core=scenario.redis_on_server_core
                )
            )
            env = env | {"REDIS_URL": url}
        if scenario.redis_cluster:
            folder = logs / f"{tag}.cluster"
            folder.mkdir(parents=True, exist_ok=True)
            cluster = stack.enter_context(redis_cluster(folder))
            env = env | {"REDIS_CLUSTER_URL": cluster.url}
        servers = [
            stack.enter_context(
                processes.start_server(command, env, logs / f"{tag}.{i}.log", cores)
            )
            for i in range(scenario.instances)
        ]
        if scenario.redis and any(REDIS_NOT_BUILT in s.log_text() for s in servers):
            return {
                "skipped": "chat_service reports that Redis fan-out is not built "
                "(REDIS_URL set, instances serve alone): nothing to measure yet"
            }
        return run_loadgen(
            scenario,
            servers,
            cores,
            logs / f"{tag}.loadgen.log",
            profile_to,
            ready_frame=ready_frame,
        )


def machine_info(cores: Cores) -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "pinned": cores.pinned,
        "server_core": cores.server,
        "loadgen_core": cores.loadgen,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node.stdout.strip(),
        "loadavg_at_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if any scenario failed (0 if all ran or skipped)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: does it work at all")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--only", nargs="*", help="run only these scenarios")
    parser.add_argument("--duration", type=float, help="measurement window per run, seconds")
    parser.add_argument(
        "--profile",
        nargs="?",
        const=PROFILED,
        metavar="SCENARIO",
        help=f"also profile ours with py-spy in SCENARIO (default {PROFILED})",
    )
    parser.add_argument("--note", default="", help="a remark stored with the results")
    parser.add_argument(
        "--before",
        type=Path,
        metavar="SOURCE_TREE",
        help="also run chat_service from this source tree (e.g. a `git worktree` of main) "
        "as server `before`, next to ours, in every scenario ours runs in",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        type=_variant,
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="also run ours with these settings as server NAME, next to ours, in every "
        "scenario ours runs in (e.g. history-off:HISTORY_TTL=0); may be repeated",
    )
    args = parser.parse_args(argv)
    variants: dict[str, dict[str, str]] = dict(args.variant)

    if shutil.which("node") is None:
        print("bench: node is not installed (the load generator needs Node.js)", file=sys.stderr)
        return 2
    if not (BENCH_DIR / "node_modules" / "ws").is_dir():
        print("bench: run `npm ci` in bench/ first (make bench does)", file=sys.stderr)
        return 2
    processes.raise_fd_limit()
    cores = Cores()
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only]
    if args.smoke:
        scenarios = [smoke(s) for s in scenarios]
    if args.duration:
        scenarios = [replace(s, duration=args.duration) for s in scenarios]
    if args.before:
        scenarios = [replace(s, servers=("before", *s.servers)) for s in scenarios]
    for name in variants:
        scenarios = [
            replace(s, servers=(*s.servers, name)) if "ours" in s.servers else s for s in scenarios
        ]
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    started = time.time()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "smoke": args.smoke,
        "note": args.note,
        "machine": machine_info(cores),
        "ours_env": OURS_ENV,
        "scenarios": [],
    }
    failed = False
    for scenario in scenarios:
        entry: dict[str, Any] = {
            "scenario": asdict(scenario) | {"title": scenario.title},
            "results": {},
        }
        for server in scenario.servers:
            print(f"bench: {scenario.name} / {server} ...", file=sys.stderr, flush=True)
            try:
                outcome = run_scenario(
                    scenario, server, cores, logs, before=args.before, variants=variants
                )
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                failed = True
                outcome = {"error": str(exc)}
            print(f"bench:   {report.one_line(scenario, outcome)}", file=sys.stderr, flush=True)
            entry["results"][server] = outcome
        results["scenarios"].append(entry)
    _add_stand_ins(results)
    if args.profile:
        results["profile"] = _profile(args.profile, scenarios, cores, args.out)
    results["seconds"] = round(time.time() - started, 1)
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    report.write(results, args.out)
    for line in report.goal_lines(results):
        print(f"bench: goal {line}", file=sys.stderr)
    print(f"bench: results in {args.out} ({results['seconds']} s)", file=sys.stderr)
    return 1 if failed else 0


def _variant(text: str) -> tuple[str, dict[str, str]]:
    """`NAME:KEY=VALUE,KEY=VALUE` as (NAME, {KEY: VALUE})."""
    name, _, settings = text.partition(":")
    pairs = [pair.partition("=") for pair in settings.split(",") if pair]
    if not name or name in ("ours", "baseline", "starlette", "before") or not pairs:
        raise argparse.ArgumentTypeError("expected NAME:KEY=VALUE[,KEY=VALUE]")
    if any(not key or not sep for key, sep, _ in pairs):
        raise argparse.ArgumentTypeError("each setting is KEY=VALUE")
    return name, {key: value for key, _, value in pairs}


def _add_stand_ins(results: dict[str, Any]) -> None:
    by_name = {entry["scenario"]["name"]: entry for entry in results["scenarios"]}
    for name, stand_in in BASELINE_STAND_IN.items():
        if name in by_name and stand_in in by_name:
            baseline = by_name[stand_in]["results"].get("baseline")
            if baseline is not None:
                by_name[name]["results"]["baseline"] = baseline | {"stand_in": stand_in}


def _profile(name: str, scenarios: list[Scenario], cores: Cores, out: Path) -> dict[str, Any]:
    """Profile ours under scenario `name` with py-spy; a summary of where the time goes."""
    scenario = next((s for s in scenarios if s.name == name), None)
    if scenario is None:
        return {"error": f"{name} was not run"}
    if _py_spy() is None:
        return {"error": "py-spy is not installed (pip install '.[bench]')"}
    raw = out / f"profile-{name}.txt"
    raw.unlink(missing_ok=True)
    print(f"bench: profile of ours in {name} ...", file=sys.stderr, flush=True)
    try:
        run_result = run_scenario(scenario, "ours", cores, out / "logs", profile_to=raw)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc)}
    if not raw.exists():
        return {"error": "py-spy wrote no profile (is ptrace allowed here?)"}
    return {"scenario": scenario.title, "raw": raw.name, "run": run_result, **summarize(raw)}


if __name__ == "__main__":
    sys.exit(main())
