"""Federated logistic regression on breast-cancer data, from Python.

    testnet/testnet.sh train        (declares the data on every site first)

Every site that holds the dataset `cancer` (its share of scikit-learn's
breast-cancer patients) runs iris-python's /iris/cancer.py. First the
federated mean and spread of each feature, by one secure sum (sums of
squares near 10⁹, so the sum declares a wide range); then rounds of
FedAvg driven by iris_client.Training: the model reaches the sites as a
file Iris delivers, the master learns only the secure sum of the sites'
updates, and a driver that stops and runs again resumes from the master's
last checkpoint. Writes the final model and the scaling as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from iris_client import IrisError, Network, Training

IMAGE = "iris-python:latest"
FEATURES = 30
LIMITS = {"memory_mb": 512, "timeout_secs": 300}


def scaling_of(net: Network, name: str, on: str) -> dict:
    """Each feature's federated mean and standard deviation, kept on the
    master as public/<name>/scaling.json (and read back on a resume)."""
    kept = f"{name}/scaling.json"
    try:
        return json.loads(net.read_file(f"public/{kept}"))
    except IrisError as e:
        if e.status != 404:
            raise
    job = net.run(IMAGE, ["/iris/cancer.py", "stats", "/workspace/data/cancer.csv",
                          "/workspace/out/stats.json"],
                  on=on, secure_sum="stats.json", sum_length=2 * FEATURES,
                  sum_range=1e10, sum_resolution=1e-3, **LIMITS).wait()
    if job.state != "succeeded" or job.sum is None:
        raise SystemExit(f"the statistics job {job.id} failed: {job.view.tasks}")
    rows = job.sum.weight
    mean = [v / rows for v in job.sum.vector[:FEATURES]]
    squares = [v / rows for v in job.sum.vector[FEATURES:]]
    sd = [math.sqrt(max(s - m * m, 1e-12)) for m, s in zip(mean, squares)]
    scaling = {"mean": mean, "sd": sd, "rows": rows, "sites": job.sum.nodes}
    net.upload(json.dumps(scaling).encode(), kept)
    return scaling


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="cancer-lr", help="the training's name (resumes it if it ran)")
    parser.add_argument("--dataset", default="cancer")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quorum", type=int)
    parser.add_argument("--deadline", type=float, help="seconds a round may take")
    parser.add_argument("--out", help="write {model, scaling} here as JSON")
    parser.add_argument("--warm", action="store_true",
                        help="each site keeps its container from round to round")
    args = parser.parse_args()

    net = Network.from_env()
    on = f"dataset:{args.dataset}"
    scaling = scaling_of(net, args.name, on)
    print(f"{args.dataset}: {scaling['rows']:.0f} rows over {', '.join(scaling['sites'])}")
    net.upload(json.dumps(scaling).encode(), f"{args.name}/scaling.json", to=on)

    argv = ["/iris/cancer.py", "round", "/workspace/data/cancer.csv",
            f"/workspace/in/{args.name}/scaling.json", "{model}", "/workspace/out/update.json",
            "--epochs", str(args.epochs), "--rows-in-all", str(scaling["rows"])]
    training = Training(
        net, args.name, IMAGE, argv, on=on, rounds=args.rounds, length=FEATURES + 1,
        quorum=args.quorum, deadline_secs=args.deadline, warm=args.warm,
        job_options={**LIMITS, "inputs": [f"{args.name}/scaling.json"]},
    )
    model = training.run([0.0] * (FEATURES + 1))
    seconds = [r.seconds for r in training.history]
    if seconds:
        print(f"{len(seconds)} rounds, {sum(seconds) / len(seconds):.2f} s a round on average")
    if len(seconds) > 1:
        steady = seconds[1:]
        print(f"mean of rounds 2 to {len(seconds)}: {sum(steady) / len(steady):.3f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"model": model, "scaling": scaling}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
