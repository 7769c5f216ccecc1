"""A real Redis Cluster for the tests and the bench (it needs the dev
extras): six `redis-server --cluster-enabled` processes on free loopback
ports (three masters, one replica each), made into a cluster by
`redis-cli --cluster create`."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import port_for
import trio
from coredis._utils import hash_slot

# A cluster forms in well under a second on loopback; a loaded CI machine
# gets far more, and a hang still fails in bounded time.
FORM_TIMEOUT = 60.0
# Fail over quickly: a master missing for this long is replaced by its replica.
NODE_TIMEOUT_MS = 1000
_POLL = 0.05


def _redis_cli(*args: str, port: int | None = None) -> str:
    command = ["redis-cli", "-h", "127.0.0.1"]
    if port is not None:
        command += ["-p", str(port)]
    done = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=FORM_TIMEOUT, check=False
    )
    return done.stdout + done.stderr


def _wait_for(condition: str, check: object, timeout: float = FORM_TIMEOUT) -> None:
    """Poll `check()` (a cheap redis-cli call) until it is true, or fail."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis cluster: {condition} not reached in {timeout} s")
        time.sleep(_POLL)


# Redis listens for its cluster bus on the node's port + 10000.
_BUS_OFFSET = 10000


def _free_node_port() -> int:
    """A free port whose cluster bus port is free too."""
    while True:
        port = port_for.select_random(ports=set(range(20000, 65536 - _BUS_OFFSET)))
        if port_for.is_available(port + _BUS_OFFSET):
            return port


@dataclass(eq=False)  # a node is itself: hashable by identity
class ClusterNode:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                # A replica takes over however long its master has been gone.
                "--cluster-replica-validity-factor", "0",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_for(f"node {self.port} up", lambda: "PONG" in _redis_cli("ping", port=self.port))

    def kill(self) -> None:
        """SIGKILL the node: no goodbye to the cluster, as a crash would."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None

    def role(self) -> str:
        return _redis_cli("role", port=self.port).split("\n", 1)[0].strip()

    def wait_replicated(self) -> None:
        """Return once every replica of this master has acknowledged what it
        has written so far. Replication is asynchronous: a master killed
        before that takes its last writes with it (README "Redis Cluster")."""
        info = _redis_cli("info", "replication", port=self.port)
        written = int(re.search(r"master_repl_offset:(\d+)", info)[1])  # type: ignore[index]

        def acknowledged() -> bool:
            info = _redis_cli("info", "replication", port=self.port)
            offsets = [int(offset) for offset in re.findall(r"slave\d+:.*,offset=(\d+)", info)]
            return bool(offsets) and min(offsets) >= written

        _wait_for(f"replicas of {self.port} caught up", acknowledged)


@dataclass
class RedisClusterProcesses:
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        """`REDIS_CLUSTER_URL`: every node as a seed."""
        return "redis://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def live(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.process is not None]

    def slot_owners(self, seen_by: ClusterNode | None = None) -> list[tuple[int, int, ClusterNode]]:
        """(first slot, last slot, master) for every slot range, as `seen_by`
        (by default, some live node) sees it."""
        owners = []
        viewer = seen_by or self.live()[0]
        for line in _redis_cli("cluster", "nodes", port=viewer.port).splitlines():
            _node_id, address, flags, *rest = line.split()
            if "master" not in flags or "fail" in flags:
                continue
            port = int(address.split("@", 1)[0].rsplit(":", 1)[1])
            node = next(n for n in self.nodes if n.port == port)
            for ranges in rest[5:]:
                low, _, high = ranges.partition("-")
                if low.isdigit():
                    owners.append((int(low), int(high or low), node))
        return owners

    def master_of(
        self, key: str, owners: list[tuple[int, int, ClusterNode]] | None = None
    ) -> ClusterNode:
        """The master that owns `key`'s slot now (its hash tag decides)."""
        slot = hash_slot(key.encode())
        for low, high, node in owners or self.slot_owners():
            if low <= slot <= high:
                return node
        raise LookupError(f"no live master owns {key!r}")

    def wait_ok(self) -> None:
        """Return once every live node says the cluster is ok."""

        def ok() -> bool:
            return all(
                "cluster_state:ok" in _redis_cli("cluster", "info", port=node.port)
                for node in self.live()
            )

        _wait_for("cluster_state:ok", ok)

    def wait_replicas_synced(self) -> None:
        """Return once every replica has its master's data: a replica that
        never synced cannot take over when its master dies."""

        def synced() -> bool:
            roles = [node.role() for node in self.live()]
            links = [
                _redis_cli("info", "replication", port=node.port)
                for node, role in zip(self.live(), roles, strict=True)
                if role == "slave"
            ]
            return bool(links) and all("master_link_status:up" in link for link in links)

        _wait_for("replicas in sync", synced)

    def wait_failed_over(self, dead: ClusterNode) -> None:
        """Return once every live node sees the slots of the `dead` master
        owned by a live one (its replica, promoted) and the cluster is ok.
        Right after the kill the cluster still says ok: a master is only
        failed, and replaced, after the node timeout."""

        def failed_over() -> bool:
            for node in self.live():
                owners = self.slot_owners(seen_by=node)
                # A failing master is left out: its slots are covered again
                # only once its replica has taken them over.
                if sum(high - low + 1 for low, high, _ in owners) != 16384:
                    return False
                if any(owner is dead for _, _, owner in owners):
                    return False
            return True

        _wait_for(f"failover of {dead.port}", failed_over)
        self.wait_ok()


@contextmanager
def redis_cluster(directory: Path, *, masters: int = 3) -> Iterator[RedisClusterProcesses]:
    """Run a cluster of `masters` masters with one replica each until the block ends."""
    for binary in ("redis-server", "redis-cli"):
        assert shutil.which(binary), f"{binary} is missing: `make test` installs it"
    cluster = RedisClusterProcesses()
    try:
        for index in range(masters * 2):
            node_dir = directory / f"node{index}"
            node_dir.mkdir()
            node = ClusterNode(_free_node_port(), node_dir)
            cluster.nodes.append(node)
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in cluster.nodes]
        out = _redis_cli(
            "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"
        )
        assert "[OK] All 16384 slots covered" in out, out
        cluster.wait_ok()
        cluster.wait_replicas_synced()
        yield cluster
    finally:
        for node in cluster.nodes:
            node.stop()


async def cluster_cli(port: int, *args: str) -> str:
    """redis-cli against one node, from a trio test."""
    done = await trio.run_process(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args], capture_stdout=True
    )
    return done.stdout.decode()


def rooms_on_every_shard(cluster: RedisClusterProcesses, count: int = 3) -> list[str]:
    """`count` room names whose hash tags live on `count` different masters."""
    rooms: dict[int, str] = {}
    owners = cluster.slot_owners()
    for n in range(1000):
        room = f"room{n}"
        rooms.setdefault(cluster.master_of(f"{{{room}}}", owners).port, room)
        if len(rooms) == count:
            return list(rooms.values())
    raise LookupError("no rooms found on every shard")
