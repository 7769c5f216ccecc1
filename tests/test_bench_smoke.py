"""The benchmark at tiny sizes, so that it cannot rot: every scenario runs
against each of its servers (ours, the baseline, Starlette) through the real
load generator and writes its JSON, table and chart. It asserts that the
benchmark works, never how fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import trio

from bench.processes import free_port
from bench.scenarios import SCENARIOS, smoke

REPO = Path(__file__).resolve().parents[1]
# About 60 s on a quiet 2-core machine (some 25 server starts); generous for a busy one.
SMOKE_TIMEOUT = 300


async def test_smoke_run_measures_every_scenario(tmp_path: Path) -> None:
    with trio.fail_after(SMOKE_TIMEOUT):
        run = await trio.run_process(
            [sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path)],
            cwd=REPO,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["smoke"] is True
    assert len(results["scenarios"]) == len(SCENARIOS)
    for entry in results["scenarios"]:
        scenario = entry["scenario"]
        for server in scenario["servers"]:
            outcome = entry["results"][server]
            if "skipped" in outcome:
                # Only the Redis scenario may skip, and only because the build says so.
                assert scenario["redis"], outcome
                assert "Redis fan-out is not built" in outcome["skipped"]
                continue
            name = f"{scenario['name']}/{server}"
            assert outcome["unexpected_closes"] == {}, name
            assert outcome["error_frames"] == 0, name
            if scenario["mode"] == "idle":
                assert outcome["clients"] == scenario["clients_per_room"], name
                assert outcome["kib_per_connection"] > 0, name
            elif scenario["mode"] == "storm":
                assert outcome["subscribed"] == scenario["clients_per_room"], name
                assert outcome["cut_off"] == 0, name
                assert outcome["clients_per_s"] > 0, name
                # The storm is the window: both CPU figures are measured over it.
                assert 0 < outcome["loadgen_cpu"], name
                assert outcome["server_cpu"] >= 0, name
            else:
                assert outcome["deliveries"] > 0, name
                assert outcome["latency_p99_ms"] is not None, name
                assert 0 < outcome["loadgen_cpu"], name
                # Read from /proc in clock ticks (10 ms): a tiny run may show none.
                assert outcome["server_cpu"] >= 0, name

    table = (tmp_path / "results.md").read_text()
    assert "| scenario | metric | ours | baseline | Starlette | ours/baseline |" in table
    # Every goal is judged (smoke sizes meet few of them), none "not run".
    assert "| goal | target | measured (ours) | |" in table
    assert "not run" not in table
    assert "bench: goal " in run.stderr.decode()
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_loadgen_reports_a_server_it_cannot_reach() -> None:
    scenario = smoke(SCENARIOS[0]).loadgen_config([f"ws://127.0.0.1:{free_port()}/api/chat-api/ws"])
    run = subprocess.run(
        ["node", str(REPO / "bench" / "loadgen.js"), json.dumps(scenario)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 1
    event = json.loads(run.stdout.splitlines()[-1])
    assert event["event"] == "error"
    assert "connect failed" in event["message"]
