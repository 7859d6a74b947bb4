#!/usr/bin/env python3
"""Logistic regression on scikit-learn's breast-cancer data (569 patients,
30 features), federated: the job each site runs, and the researcher's
tools around it. Runs in iris-python (numpy and scikit-learn from Debian).

  cancer.py split OUT N            the data, shuffled, as N uneven site
                                   files (site-1.csv ...), the pooled
                                   training rows (train.csv) and a held-out
                                   test set (test.csv); for the testnet
  cancer.py stats DATA OUT         a site's update for the federated mean
                                   and spread of each feature
  cancer.py round DATA SCALING MODEL OUT [--epochs E] [--lr R]
                                   a site's round of training from MODEL
  cancer.py check DIR RESULT       the federated model's test accuracy
                                   against a central fit on the pooled rows
                                   (RESULT: {"model": [...], "scaling": {...}})

Every file a site writes is {"vector": [...], "weight": rows}: the master
learns only the secure sum of the sites' files, and divides by the weight.

Run as a warm worker (IRIS_ROUND_FILE set, docs/warm-workers.md), it
serves round after round in one process: Python starts and numpy is
imported once, each round's argv comes in the round file, its files go to the
round's own directory, and its exit code to <that directory>.done.
"""

import argparse
import json
import sys

import numpy as np

FEATURES = 30
# A test set of this many patients is held out of every site's data.
TEST_ROWS = 114
SEED = 20261204


def read(path):
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return data[:, :FEATURES], data[:, FEATURES]


def write_csv(path, x, y):
    header = ",".join([f"x{i}" for i in range(FEATURES)] + ["y"])
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header=header,
               comments="", fmt="%.10g")


def write_update(path, vector, weight):
    with open(path, "w") as f:
        json.dump({"vector": [float(v) for v in vector], "weight": float(weight)}, f)


def scaled(x, scaling_path):
    with open(scaling_path) as f:
        scaling = json.load(f)
    # A result file holds its scaling beside the model.
    scaling = scaling.get("scaling", scaling)
    return (x - np.array(scaling["mean"])) / np.array(scaling["sd"])


def model_of(path):
    with open(path) as f:
        model = np.array(json.load(f)["model"], dtype=float)
    if model.shape != (FEATURES + 1,):
        sys.exit(f"the model holds {model.size} numbers, not {FEATURES + 1}")
    return model[:FEATURES], model[FEATURES]


def split(args):
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(SEED).permutation(len(y))
    test, train = order[:TEST_ROWS], order[TEST_ROWS:]
    write_csv(f"{args.out}/test.csv", x[test], y[test])
    write_csv(f"{args.out}/train.csv", x[train], y[train])
    # Uneven shares, as real sites have: the first site the most rows.
    shares = np.arange(args.sites, 0, -1, dtype=float) + 1
    cuts = np.cumsum(shares / shares.sum() * len(train)).astype(int)[:-1]
    for i, rows in enumerate(np.split(train, cuts), start=1):
        write_csv(f"{args.out}/site-{i}.csv", x[rows], y[rows])


def stats(args):
    x, _ = read(args.data)
    # Weighted by the rows, the sum over sites is Σx and Σx² per feature.
    write_update(args.out, np.concatenate([x.mean(0), (x ** 2).mean(0)]), len(x))


def train_round(args):
    x, y = read(args.data)
    x = scaled(x, args.scaling)
    w, b = model_of(args.model)
    for _ in range(args.epochs):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        # The logistic loss's gradient, with scikit-learn's default L2
        # penalty (C = 1) shared out by rows.
        w = w - args.lr * (x.T @ (p - y) / len(y) + w / args.rows_in_all)
        b = b - args.lr * float(np.mean(p - y))
    write_update(args.out, np.append(w, b), len(y))


def check(args):
    from sklearn.linear_model import LogisticRegression

    train_x, train_y = read(f"{args.dir}/train.csv")
    test_x, test_y = read(f"{args.dir}/test.csv")
    w, b = model_of(args.result)
    federated = float(np.mean(((scaled(test_x, args.result) @ w + b) > 0) == test_y))
    mean, sd = train_x.mean(0), train_x.std(0)
    central = LogisticRegression(max_iter=10_000).fit((train_x - mean) / sd, train_y)
    central_accuracy = float(central.score((test_x - mean) / sd, test_y))
    print(json.dumps({"federated": federated, "central": central_accuracy,
                      "test_rows": len(test_y)}))


def serve_rounds(round_file):
    """Runs each round the node hands over, one after another; never
    returns (the node stops the container)."""
    import os
    import time
    import traceback

    parser = parser_of()
    last = None
    while True:
        try:
            with open(round_file) as f:
                round_ = json.load(f)
        except (OSError, ValueError):
            round_ = {}
        job = round_.get("job")
        if not job or job == last:
            time.sleep(0.01)
            continue
        last, out = job, round_["out"]
        code = 0
        try:
            args = parser.parse_args(round_["argv"][1:])
            # What the argv names in /workspace/out goes to the round's own.
            if getattr(args, "out", None):
                args.out = os.path.join(out, os.path.basename(args.out))
            args.run(args)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Exception:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        with open(out + ".done", "w") as f:
            f.write(f"{code}\n")


def parser_of():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("split")
    p.add_argument("out")
    p.add_argument("sites", type=int)
    p.set_defaults(run=split)
    p = commands.add_parser("stats")
    p.add_argument("data")
    p.add_argument("out")
    p.set_defaults(run=stats)
    p = commands.add_parser("round")
    for name in ("data", "scaling", "model", "out"):
        p.add_argument(name)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.5)
    # The rows over every site, for the penalty's share (an estimate will do).
    p.add_argument("--rows-in-all", type=float, default=455.0)
    p.set_defaults(run=train_round)
    p = commands.add_parser("check")
    for name in ("dir", "result"):
        p.add_argument(name)
    p.set_defaults(run=check)
    return parser


def main():
    import os

    round_file = os.environ.get("IRIS_ROUND_FILE")
    if round_file:
        serve_rounds(round_file)
    args = parser_of().parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
