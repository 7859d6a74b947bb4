"""Real nodes for the client's tests: `iris` processes on loopback ports
they pick themselves, as the Rust tests start them, and the real Docker
engine with the worker image (scripts/test.sh builds both)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from iris_client import Network

REPO = Path(__file__).resolve().parents[2]
IRIS = os.environ.get("IRIS_BIN", str(REPO / "target" / "debug" / "iris"))
WORKER_TAR = REPO / "docker" / ".build" / "iris-worker.tar"
WORKER = "iris-worker:latest"
KEY = "python-test-network-key-0123"
DEADLINE = 60.0


def wait_for(what, check, deadline=DEADLINE):
    """Polls `check` until it returns something true; fails after `deadline`."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline} s waiting for {what}")
        time.sleep(0.1)


class Node:
    """One `iris` node: its directory, its process, its client."""

    def __init__(self, root: Path, name: str):
        self.name = name
        self.dir = root / name
        subprocess.run(
            [IRIS, "init", "--dir", str(self.dir), "--name", name, "--p2p-port", "0",
             "--p2p-listen", "127.0.0.1", "--api-port", "0"],
            check=True, capture_output=True,
        )
        self.proc = None
        self.net = None

    def start(self):
        log = open(self.dir / "node.log", "ab")
        self.proc = subprocess.Popen([IRIS, "run", "--dir", str(self.dir)], stdout=log, stderr=log,
                                     start_new_session=True)
        port_file = self.dir / "api.port"
        wait_for(f"{self.name}'s API port", lambda: port_file.exists() and port_file.read_text().strip())
        self.net = Network.from_dir(self.dir)

        def answers():
            try:
                return self.net.status()
            except Exception:
                return None

        wait_for(f"{self.name}'s API", answers)
        return self

    def stop(self):
        if self.net:
            self.net.close()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def shard(self, rows: int, offset: int):
        """A private shard of y = 3 x1 - 2 x2 + 1, declared as dataset `shard`."""
        directory = self.dir / "workspace" / "private" / "shard"
        directory.mkdir(parents=True, exist_ok=True)
        lines = ["x1,x2,y"]
        for i in range(rows):
            x1, x2 = (i % 7) / 7 + offset / 10, (i % 5) / 5
            lines.append(f"{x1:.4f},{x2:.4f},{3 * x1 - 2 * x2 + 1:.4f}")
        (directory / "shard.csv").write_text("\n".join(lines) + "\n")


def start_network(root: Path, names: list[str]) -> list[Node]:
    nodes = [Node(root, name).start() for name in names]
    nodes[0].net.create_network("lab", KEY)
    for before, node in zip(nodes, nodes[1:]):
        node.net.join(KEY, before.net.status().addrs[0])
    for node in nodes:
        wait_for(f"{node.name} to see every node alive",
                 lambda node=node: sum(n.state == "alive" for n in node.net.nodes()) == len(nodes))
    return nodes


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """alice (master), bob and carol: each holds the dataset `shard` and
    has the worker image, which bob's and carol's owners approved."""
    nodes = start_network(tmp_path_factory.mktemp("lab"), ["alice", "bob", "carol"])
    try:
        for i, node in enumerate(nodes):
            node.net.load_image(str(WORKER_TAR))
            node.shard(40 + 20 * i, i)
            node.net.add_dataset("shard", "private/shard", tags=["regression"],
                                 description="y = 3 x1 - 2 x2 + 1", rows_bucket=10, mock_rows=10)
        for node in nodes[1:]:
            node.net.allow_image(WORKER, match="any")
        # bob and carol take part in secure sums with each other: two sites
        # besides the master's own node, so each accepts sums over two.
        nodes[1].net.recognise_site("carol")
        nodes[2].net.recognise_site("bob")
        for node in nodes[1:]:
            node.net.set_policy("min_aggregate", "2")
            # The lab checks sums exactly, so its owners allow them without noise.
            node.net.set_policy("noise_free_sums", "allow")
        wait_for("every card at alice", lambda: len(nodes[0].net.datasets()) == 3)
        yield {node.name: node for node in nodes}
    finally:
        for node in nodes:
            node.stop()
