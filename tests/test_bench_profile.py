"""The benchmark's profile summary reads py-spy's raw format as py-spy writes it."""

from __future__ import annotations

from pathlib import Path

from bench.profile_summary import summarize

SITE = "/work/.venv/lib/python3.11/site-packages"
REPO = "/work/repo"
SEND_STACK = ";".join(
    [
        "_run_module_as_main (<frozen runpy>:198)",
        f"unrolled_run ({SITE}/trio/_core/_run.py:2713)",
        f"Connection._send_loop ({REPO}/chat_service/realtime/connection.py:120)",
        f"TCPServer.protocol_send ({SITE}/hypercorn/trio/tcp_server.py:88)",
        f"SocketStream.send_all ({SITE}/trio/_highlevel_socket.py:123)",
    ]
)
OURS_STACK = ";".join(
    [
        f"unrolled_run ({SITE}/trio/_core/_run.py:2713)",
        f"Handler._on_frame ({REPO}/chat_service/realtime/handler.py:160)",
        f"Hub.deliver ({REPO}/chat_service/realtime/hub.py:101)",
    ]
)
SCHEDULER_STACK = f"unrolled_run ({SITE}/trio/_core/_run.py:2713)"


def test_summary_splits_samples_by_path_layer_and_function(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(f"{SEND_STACK} 6\n{OURS_STACK} 3\n{SCHEDULER_STACK} 1\n")

    summary = summarize(raw)

    assert summary["samples"] == 10
    assert dict(summary["by_path"]) == {
        "send path (sender task -> Quart -> Hypercorn -> socket)": 60.0,
        "receive path (socket -> Hypercorn -> Quart -> handler -> fan-out)": 30.0,
        "trio scheduler (run loop, epoll)": 10.0,
    }
    assert dict(summary["self_by_layer"]) == {"trio": 70.0, "ours (chat_service)": 30.0}
    assert summary["top_self"][0] == ("SocketStream.send_all (trio/_highlevel_socket.py)", 60.0)
    inclusive = dict(summary["top_inclusive"])
    assert inclusive["Connection._send_loop (chat_service/realtime/connection.py)"] == 60.0
    # Frames every stack passes through say nothing and are left out.
    assert not any("unrolled_run" in name or "runpy" in name for name in inclusive)


def test_an_empty_profile_has_no_shares(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text("")
    assert summarize(raw) == {"samples": 0}
