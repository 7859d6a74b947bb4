"""Rounds of FedAvg with any image, from Python: the per-round time of a
training, cold (a new container every round) or with warm workers.

    python python/examples/rounds.py --image iris-worker:latest --dataset shard --length 4 \\
        --rounds 10 [--warm] -- /iris-worker gradient /workspace/data/shard.csv \\
        --target y --model {model} --lr 0.4 --steps 25

The argv names the model's file as {model}; each site's update is
{"vector": [...], "weight": rows} with `length` numbers, the first
`--model-length` of which (all but the last, by default) are the next
model's. Prints each round's time and the mean of rounds 2 and later.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from iris_client import Network, Training


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--length", type=int, required=True, help="numbers in each update's vector")
    parser.add_argument("--model-length", type=int, help="numbers of the model (default: length - 1)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warm", action="store_true")
    parser.add_argument("--name", default=f"rounds-{int(time.time())}")
    parser.add_argument("argv", nargs="+")
    args = parser.parse_args()
    size = args.model_length or args.length - 1

    def next_model(_model: list[float], outcome) -> list[float]:
        return [v / outcome.weight for v in outcome.vector[:size]]

    training = Training(Network.from_env(), args.name, args.image, args.argv,
                        on=f"dataset:{args.dataset}", rounds=args.rounds, length=args.length,
                        combine=next_model, warm=args.warm,
                        job_options={"memory_mb": 256, "timeout_secs": 120})
    training.run([0.0] * size)
    steady = [r.seconds for r in training.history[1:]] or [r.seconds for r in training.history]
    print(f"mean of rounds 2 to {args.rounds}: {statistics.mean(steady):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
