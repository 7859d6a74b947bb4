"""Federated averaging over rounds, driven from the researcher's side.

Each round is one job, named as a round of the training (a round runs
once on the master: submitted again, it is refused with the job that has
it). The current model travels as a file Iris delivers, never on the
command line: the driver uploads it to the master as
public/<training>/model-<round>.json, which is also the checkpoint, and
the master ships it to the round's sites, where the job reads it at
/workspace/in/<training>/model-<round>.json. The master learns only the
secure sum of the sites' updates (with differential privacy if asked),
and the next model is that sum's weighted mean.

A driver that stops (a lost connection, a restart of the master, or the
researcher's own machine) and runs again resumes from the last checkpoint:
it finds the round that was under way, waits for its job instead of
running it twice, and takes its sum if it was kept.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import httpx

from .models import SumOutcome
from .network import IrisError, Network

# `{model}` in a round's argv is replaced by where the job reads the model.
MODEL = "{model}"
_CHECKPOINT = re.compile(r"model-(\d{6})\.json$")


def fedavg(_model: list[float], outcome: SumOutcome) -> list[float]:
    """The next model: the sites' updates, weighted by their rows."""
    if outcome.weight <= 0:
        raise ValueError("the sum's weight is not positive: no site's rows were in it")
    return [v / outcome.weight for v in outcome.vector]


@dataclass
class RoundResult:
    number: int
    job: str
    sites: list[str]
    dropped: list[str]
    seconds: float


@dataclass
class Training:
    """FedAvg over `rounds` rounds of `image` running `argv` on `on`.

    Each site's job writes `update_file` in its outputs: `{"vector": [...],
    "weight": w}` with `length` numbers (its new model, and its rows as the
    weight). `quorum` and `deadline_secs` let a round end without its
    stragglers; `sum_options` are `Network.secure_sum`'s (range,
    resolution, clip, epsilon, delta); `job_options` the other fields of a
    job (memory_mb, cpus, timeout_secs, env)."""

    network: Network
    name: str
    image: str
    argv: list[str]
    on: str
    rounds: int
    length: int
    update_file: str = "update.json"
    quorum: Optional[int] = None
    deadline_secs: Optional[float] = None
    sum_options: dict = field(default_factory=dict)
    job_options: dict = field(default_factory=dict)
    combine: Callable[[list[float], SumOutcome], list[float]] = fedavg
    # Each site may keep the training's container running from round to
    # round (a warm worker): the program takes each round from the file
    # IRIS_ROUND_FILE names (docs/warm-workers.md).
    warm: bool = False
    # How long the driver keeps trying to reach the master when it is away.
    patience_secs: float = 600.0
    log: Callable[[str], None] = print
    history: list[RoundResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}", self.name):
            raise ValueError(f"training name {self.name!r}: letters, digits, '-', '_' and '.'")
        if MODEL not in " ".join(self.argv):
            raise ValueError(f"the argv must name the model's file as {MODEL}")
        if self.rounds < 1:
            raise ValueError("at least one round")

    # -- checkpoints, on the master

    def checkpoint(self, number: int) -> str:
        """The model entering round `number`, under the master's public/."""
        return f"{self.name}/model-{number:06d}.json"

    def last_checkpoint(self) -> Optional[tuple[int, list[float]]]:
        """The latest model kept on the master, and the round it enters."""
        numbers = [int(m.group(1)) for e in self.network.files()
                   if e["path"].startswith(f"public/{self.name}/")
                   and (m := _CHECKPOINT.search(e["path"]))]
        if not numbers:
            return None
        number = max(numbers)
        kept = json.loads(self.network.read_file(f"public/{self.checkpoint(number)}"))
        return number, kept["model"]

    def _keep(self, number: int, model: list[float], to: Optional[str]) -> None:
        data = json.dumps({"training": self.name, "round": number, "model": model}).encode()
        answers = self.network.upload(data, self.checkpoint(number), to=to)
        for answer in answers:
            if answer.get("error"):
                self.log(f"  {answer.get('node')}: no model for round {number}: {answer['error']}")

    # -- rounds

    def run(self, initial: list[float]) -> list[float]:
        """Trains from `initial` (or the last checkpoint) and returns the
        final model."""
        resumed = self._patiently(self.last_checkpoint)
        if resumed is None:
            number, model = 1, list(initial)
            self._patiently(lambda: self._keep(number, model, None))
        else:
            number, model = resumed
            self.log(f"resuming {self.name} at round {number} from its checkpoint")
        while number <= self.rounds:
            model = self._patiently(lambda: self._round(number, model))
            number += 1
            self._patiently(lambda: self._keep(number, model, None))
        return model

    def _round(self, number: int, model: list[float]) -> list[float]:
        started = time.monotonic()
        job = self._job_of(number)
        if job is None:
            # The model goes to every site of the round, then the job.
            self._keep(number, model, self.on)
            job = self._submit(number)
        view = self.network.job(job)
        while view.state == "running":
            view = self.network.job(job, wait=60)
        if view.state != "succeeded":
            raise IrisError(0, f"round {number} ({job}) failed: " + _tasks(view.tasks))
        outcome = self._sum_of(job)
        took = time.monotonic() - started
        self.history.append(RoundResult(number, job, list(outcome.nodes), list(outcome.dropped), took))
        self.log(f"round {number:3}: {job} from {len(outcome.nodes)} sites"
                 + (f" (without {', '.join(outcome.dropped)})" if outcome.dropped else "")
                 + f"  {took:.2f} s")
        return self.combine(model, outcome)

    def _job_of(self, number: int) -> Optional[str]:
        """The job that is round `number`, if it was submitted."""
        wanted = {"training": self.name, "number": number}
        for view in self.network.jobs():
            if view.request.get("round") == wanted:
                return view.id
        return None

    def _submit(self, number: int) -> str:
        where = f"/workspace/in/{self.checkpoint(number)}"
        argv = [a.replace(MODEL, where) for a in self.argv]
        options: dict[str, Any] = dict(self.job_options)
        options["inputs"] = list(options.get("inputs", [])) + [self.checkpoint(number)]
        options["round"] = {"training": self.name, "number": number}
        if self.warm:
            options["warm"] = True
        if self.quorum is not None:
            options["quorum"] = self.quorum
        if self.deadline_secs is not None:
            options["deadline_secs"] = self.deadline_secs
        try:
            return self.network.submit(self.image, argv, on=self.on, **options).id
        except IrisError as e:
            # Submitted by an attempt whose answer was lost: it is that job.
            job = self._job_of(number) if e.status == 409 else None
            if job is None:
                raise
            return job

    def _sum_of(self, job: str) -> SumOutcome:
        """The round's sum: the one kept with the job, if it was taken."""
        try:
            kept = self.network.read_file(f"gathered/{job}/sum.json")
            return SumOutcome.model_validate_json(kept)
        except IrisError as e:
            if e.status != 404:
                raise
        return self.network.secure_sum(job, self.update_file, self.length, **self.sum_options)

    def _patiently(self, step: Callable[[], Any]) -> Any:
        """Runs `step`, again while the master cannot be reached (it
        restarts, or the connection was lost), for up to patience_secs."""
        until = time.monotonic() + self.patience_secs
        pause = 0.5
        while True:
            try:
                return step()
            except httpx.TransportError as e:
                if time.monotonic() > until:
                    raise
                self.log(f"  the master is away ({type(e).__name__}); trying again")
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
            except IrisError as e:
                if e.status not in (502, 503) or time.monotonic() > until:
                    raise
                self.log(f"  the master is away (HTTP {e.status}: {e.message}); trying again")
                time.sleep(pause)
                pause = min(pause * 2, 5.0)


def _tasks(tasks: dict) -> str:
    return ", ".join(f"{name} {t.state}" + (f" ({t.error})" if t.error else "")
                     for name, t in sorted(tasks.items()))
