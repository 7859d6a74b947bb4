"""A job as the researcher holds it: wait for it, read its tasks and logs,
get what it produced."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Optional

from .models import JobView, SumOutcome, Task, TaskLogs

if TYPE_CHECKING:
    from .network import Network

# One request waits at most this long; `wait()` asks again until its own end.
_WAIT_PER_REQUEST = 60.0


class Job:
    def __init__(self, network: "Network", view: JobView, gather: bool = False,
                 secure_sum: Optional[str] = None, sum_length: Optional[int] = None,
                 sum_options: Optional[dict] = None):
        self._network = network
        self.view = view
        self._gather = gather
        self._secure_sum = secure_sum
        self._sum_length = sum_length
        # range, resolution, clip, epsilon, delta: as `Network.secure_sum` takes them.
        self._sum_options = dict(sum_options or {})
        self._gathered: Optional[dict] = None
        self.sum: Optional[SumOutcome] = None

    @property
    def id(self) -> str:
        return self.view.id

    @property
    def state(self) -> str:
        return self.view.state

    @property
    def tasks(self) -> dict[str, Task]:
        """Each node's task, as last seen."""
        return self.view.tasks

    def refresh(self) -> "Job":
        self.view = self._network.job(self.id)
        return self

    def wait(self, timeout: float = 3600.0) -> "Job":
        """Waits for every task to end, then gathers or sums as `run` was
        asked; raises TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.view.state == "running":
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"job {self.id} still running after {timeout} s")
            self.view = self._network.job(self.id, wait=min(left, _WAIT_PER_REQUEST))
        if self._gather and self._gathered is None:
            self._gathered = self._network.gather(self.id)
        if self._secure_sum and self.sum is None:
            self.sum = self._network.secure_sum(self.id, self._secure_sum, self._sum_length,
                                                **self._sum_options)
        return self

    def logs(self, node: Optional[str] = None) -> list[TaskLogs]:
        """Each task's stdout and stderr, as its node's policy lets them out."""
        return self._network.logs(self.id, node)

    def outputs(self) -> list[str]:
        """The files gathered to the node that asked, under
        workspace/gathered/<job>/<node>/ (gathers them if not done yet)."""
        if self._gathered is None:
            self._gathered = self._network.gather(self.id)
        return self._gathered["files"]
