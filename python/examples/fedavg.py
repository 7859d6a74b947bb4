"""Federated averaging from Python, on the testnet's dataset `shard`.

    testnet/testnet.sh up
    eval "$(testnet/testnet.sh env)"
    python python/examples/fedavg.py --rounds 10

Each round, every site that holds `shard` takes a few gradient steps on its
own rows from the current weights and writes its update; the master learns
only the secure sum of the updates (their weighted mean, once divided), never
one site's. A dry run on the dataset's mock sample goes first, so that a
mistake in the command costs no site anything.
"""

from __future__ import annotations

import argparse
import sys
import time

from iris_client import Network

WORKER = "iris-worker:latest"


def gradient(data: str, weights: list[float], lr: float, steps: int) -> list[str]:
    csv = ",".join(f"{w:.12g}" for w in weights)
    return ["/iris-worker", "gradient", data, "--target", "y", "--weights", csv,
            "--lr", str(lr), "--steps", str(steps)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="a node directory (default: IRIS_URL and IRIS_TOKEN_FILE)")
    parser.add_argument("--dataset", default="shard")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--lr", type=float, default=0.4)
    args = parser.parse_args()
    net = Network.from_dir(args.dir) if args.dir else Network.from_env()
    limits = {"memory_mb": 64, "timeout_secs": 60}

    holders = net.datasets()
    sites = [h for h in holders if h.card.name == args.dataset]
    print(f"dataset {args.dataset!r}: {len(sites)} sites")
    for h in sites:
        print(f"  {h.node:8} ~{h.card.rows} rows  columns {', '.join(h.card.columns)}")
    if not sites:
        print("no node holds it: is the testnet up?", file=sys.stderr)
        return 1

    on = f"dataset:{args.dataset}"
    dry = net.run(WORKER, gradient("/workspace/data/mock.csv", [0, 0, 0], args.lr, 1),
                  on=on, dry_run=True, **limits).wait()
    print(f"dry run on the mock sample: {dry.state}")
    if dry.state != "succeeded":
        for log in dry.logs():
            print(log.stderr, file=sys.stderr)
        return 1

    weights = [0.0, 0.0, 0.0]
    first_loss = None
    for round_ in range(1, args.rounds + 1):
        started = time.monotonic()
        job = net.run(WORKER, gradient("/workspace/data/shard.csv", weights, args.lr, args.steps),
                      on=on, secure_sum="update.json", sum_length=len(weights) + 1,
                      **limits).wait()
        if job.state != "succeeded" or job.sum is None:
            print(f"round {round_} failed: {job.view}", file=sys.stderr)
            return 1
        # The vector is the sum of rows * (weights..., loss); the weight the sum of rows.
        total = job.sum.weight
        weights = [v / total for v in job.sum.vector[:-1]]
        loss = job.sum.vector[-1] / total
        first_loss = loss if first_loss is None else first_loss
        shown = ", ".join(f"{w:.3f}" for w in weights)
        took = time.monotonic() - started
        print(f"round {round_:2}: loss {loss:.6f}  weights ({shown})  from {len(job.sum.nodes)} sites  {took:.2f} s")
    if loss >= first_loss and args.rounds > 1:
        print("the loss did not go down", file=sys.stderr)
        return 1
    print("done: the model is the sites' weighted average; no site's update left its node alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
