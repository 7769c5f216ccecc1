"""The publish API on several instances sharing one real redis-server."""

from __future__ import annotations

from pytest_redis.executor import RedisExecutor

from ..conftest import StartServer
from ..helpers import connect
from ..redis_helpers import start_instances, tcp_url
from ..test_publish import API_KEY, post


async def test_backend_messages_reach_both_instances_in_order(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    a, b = await start_instances(start_server, tcp_url(redis_server), 2, publish_api_key=API_KEY)
    async with connect(a.url("ops")) as on_a, connect(b.url("ops")) as on_b:
        answers = []
        for n in range(5):
            status, _, answer = await post((a, b)[n % 2], "ops", {"body": f"step {n}"})
            assert status == 201
            answers.append((answer["seq"], f"step {n}"))
        assert [seq for seq, _ in answers] == [1, 2, 3, 4, 5]
        for reader in (on_a, on_b):
            chats = [await reader.receive_type("chat") for _ in answers]
            assert [(c["seq"], c["body"]) for c in chats] == answers
