"""A node's REST API from Python: one method per route (ROUTES lists
them; the tests check the list against the node's /v1/openapi.json)."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Iterator, Optional

import httpx

from .job import Job
from .models import (
    DatasetCard,
    DatasetHolder,
    Event,
    JobView,
    NodeView,
    Status,
    SumOutcome,
    TaskLogs,
)

# Every route of the API this client calls, as (method, path) -> method name.
# The dashboard's own routes (the page, its files, the browser's login and
# logout) are for browsers and not here.
ROUTES = {
    ("get", "/v1/status"): "status",
    ("get", "/v1/network"): "network",
    ("post", "/v1/network"): "create_network",
    ("post", "/v1/network/join"): "join",
    ("post", "/v1/network/leave"): "leave",
    ("post", "/v1/network/remove"): "remove_node",
    ("get", "/v1/nodes"): "nodes",
    ("get", "/v1/events"): "events",
    ("get", "/v1/images"): "images",
    ("post", "/v1/images/load"): "load_image",
    ("post", "/v1/images/push"): "push_image",
    ("get", "/v1/jobs"): "jobs",
    ("post", "/v1/jobs"): "submit",
    ("get", "/v1/jobs/{id}"): "job",
    ("post", "/v1/jobs/{id}/cancel"): "cancel",
    ("get", "/v1/jobs/{id}/logs"): "logs",
    ("post", "/v1/jobs/{id}/gather"): "gather",
    ("post", "/v1/jobs/{id}/secure-sum"): "secure_sum",
    ("get", "/v1/files"): "files",
    ("post", "/v1/files/get"): "get_file",
    ("post", "/v1/files/put"): "put_file",
    ("post", "/v1/files/upload"): "upload",
    ("get", "/v1/files/content"): "read_file",
    ("post", "/v1/containers"): "create_containers",
    ("post", "/v1/containers/{name}/exec"): "exec_containers",
    ("post", "/v1/containers/{name}/rm"): "remove_containers",
    ("get", "/v1/policy"): "policy",
    ("post", "/v1/policy"): "set_policy",
    ("post", "/v1/policy/images"): "allow_image",
    ("post", "/v1/policy/images/revoke"): "revoke_image",
    ("post", "/v1/policy/sites"): "recognise_site",
    ("post", "/v1/policy/sites/forget"): "forget_site",
    ("get", "/v1/policy/budgets"): "budgets",
    ("post", "/v1/policy/budgets"): "set_budget",
    ("get", "/v1/approvals"): "approvals",
    ("post", "/v1/approvals/{id}/approve"): "approve",
    ("post", "/v1/approvals/{id}/deny"): "deny",
    ("get", "/v1/releases"): "releases",
    ("post", "/v1/releases/{job}/approve"): "release",
    ("post", "/v1/releases/{job}/deny"): "withhold",
    ("get", "/v1/audit"): "audit",
    ("get", "/v1/datasets"): "datasets",
    ("post", "/v1/datasets"): "add_dataset",
    ("post", "/v1/datasets/reload"): "reload_datasets",
    ("post", "/v1/datasets/{name}/rm"): "remove_dataset",
    ("get", "/metrics"): "metrics",
    ("get", "/v1/openapi.json"): "openapi",
    ("post", "/v1/login-links"): "login_link",
}


class IrisError(Exception):
    """The node refused or failed: its status code and its words."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message


class Network:
    """The network as one node sees it, through that node's API."""

    def __init__(self, url: str, token: str, timeout: float = 120.0):
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    @classmethod
    def from_dir(cls, directory: str | Path) -> "Network":
        """The node whose directory this is (`iris init --dir`): its address
        from iris.toml (or api.port, for a port picked at start), its token
        from api.token, as the CLI finds them."""
        directory = Path(directory)
        config = tomllib.loads((directory / "iris.toml").read_text())
        api = config.get("api", {})
        host = api.get("bind", "127.0.0.1")
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        port = api.get("port", 8000)
        if port == 0:
            port = int((directory / "api.port").read_text().strip())
        token = (directory / "api.token").read_text().strip()
        if ":" in host:
            host = f"[{host}]"
        return cls(f"http://{host}:{port}", token)

    @classmethod
    def from_env(cls) -> "Network":
        """The node at IRIS_URL, with the token in IRIS_TOKEN or in the file
        IRIS_TOKEN_FILE (what `testnet/testnet.sh env` prints)."""
        url = os.environ.get("IRIS_URL")
        if not url:
            raise IrisError(0, "IRIS_URL is not set: eval \"$(testnet/testnet.sh env)\", or use Network.from_dir")
        token = os.environ.get("IRIS_TOKEN")
        if token is None:
            token_file = os.environ.get("IRIS_TOKEN_FILE")
            if not token_file:
                raise IrisError(0, "set IRIS_TOKEN or IRIS_TOKEN_FILE beside IRIS_URL")
            token = Path(token_file).read_text().strip()
        return cls(url, token)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Network":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # -- plumbing

    def _call(self, method: str, path: str, body: Any = None, params: Optional[dict] = None,
              content: Optional[bytes] = None, raw: bool = False) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        if content is not None:
            headers = {"content-type": "application/octet-stream"}
            response = self._http.request(method, path, content=content, params=params, headers=headers)
        else:
            response = self._http.request(method, path, json=body, params=params)
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise IrisError(response.status_code, message)
        if raw:
            return response.content
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    # -- the network

    def status(self) -> Status:
        return Status.model_validate(self._call("GET", "/v1/status"))

    def network(self) -> dict:
        return self._call("GET", "/v1/network")

    def create_network(self, name: str, key: str, mode: str = "master_slave") -> dict:
        return self._call("POST", "/v1/network", {"name": name, "key": key, "mode": mode})

    def join(self, key: str, bootstrap: str) -> dict:
        """Joins through `bootstrap`: a ticket or a member's address."""
        return self._call("POST", "/v1/network/join", {"key": key, "bootstrap": bootstrap})

    def leave(self) -> dict:
        return self._call("POST", "/v1/network/leave")

    def remove_node(self, name: str) -> dict:
        return self._call("POST", "/v1/network/remove", {"name": name})

    def nodes(self) -> list[NodeView]:
        return [NodeView.model_validate(n) for n in self._call("GET", "/v1/nodes")]

    def events(self) -> Iterator[Event]:
        """The node's events as they happen, until the node stops or the
        caller stops iterating."""
        with self._http.stream("GET", "/v1/events", timeout=None) as response:
            if response.status_code >= 400:
                raise IrisError(response.status_code, response.read().decode())
            for line in response.iter_lines():
                if line.startswith("data:"):
                    yield Event.model_validate(json.loads(line[5:]))

    # -- images and files

    def images(self) -> dict:
        return self._call("GET", "/v1/images")

    def load_image(self, path: str, force: bool = False) -> dict:
        return self._call("POST", "/v1/images/load", {"path": path, "force": force})

    def push_image(self, path: str, to: str = "all") -> list[dict]:
        return self._call("POST", "/v1/images/push", {"path": path, "to": to})

    def files(self, node: Optional[str] = None) -> list[dict]:
        return self._call("GET", "/v1/files", params={"node": node})

    def get_file(self, from_node: str, path: str, to: Optional[str] = None, dest: Optional[str] = None) -> dict:
        body = {"from": from_node, "path": path, "to": to, "dest": dest}
        return self._call("POST", "/v1/files/get", body)

    def put_file(self, source: str, as_path: Optional[str] = None, to: str = "all") -> list[dict]:
        return self._call("POST", "/v1/files/put", {"source": source, "as": as_path, "to": to})

    def upload(self, data: bytes, as_path: str, to: Optional[str] = None) -> list[dict]:
        """Keeps `data` as public/`as_path` on this node (at most 64 MiB),
        and has every node of `to` (as a job's `on` names them) pull it to
        the same place: a model for a job's `inputs`, sent from wherever
        this client runs. One answer per other node."""
        params = {"as": as_path, "to": to}
        return self._call("POST", "/v1/files/upload", content=data, params=params)

    def read_file(self, path: str) -> bytes:
        """The bytes of a file of this node's own workspace, under public/
        or gathered/ (at most 64 MiB)."""
        return self._call("GET", "/v1/files/content", params={"path": path}, raw=True)

    # -- jobs

    def run(
        self,
        image: str,
        cmd: list[str],
        on: str = "all",
        gather: bool = False,
        secure_sum: Optional[str] = None,
        sum_length: Optional[int] = None,
        sum_range: Optional[float] = None,
        sum_resolution: Optional[float] = None,
        clip: Optional[float] = None,
        epsilon: Optional[float] = None,
        delta: Optional[float] = None,
        **options: Any,
    ) -> Job:
        """Submits a job; the Job's `wait()` waits for it, then gathers its
        outputs (`gather=True`) or takes the secure sum of one file of each
        task's (`secure_sum="update.json"`, whose vector holds `sum_length`
        numbers, each weight·entry and the weight within ±`sum_range`, kept
        to `sum_resolution`, with differential privacy at `clip` and
        `epsilon`; see `secure_sum`). Options are the other fields of a job
        request: env, network, memory_mb, cpus, timeout_secs, inputs, any,
        dry_run, and `quorum` (how many tasks must succeed; default all) with
        `deadline_secs` (when the job ends: tasks still going are cancelled
        and shown as "late", and the job succeeded if its quorum did), and
        `round` ({"training": name, "number": n}: a round of a training runs
        once; `Training` drives rounds)."""
        if secure_sum is not None and sum_length is None:
            raise ValueError("secure_sum needs sum_length: how many numbers each update's vector holds")
        if secure_sum is not None and options.get("quorum") is not None and options["quorum"] < 2:
            raise ValueError("a quorum with secure_sum is at least 2: a sum over one site is that site's vector")
        sum_options = _sum_options(sum_range, sum_resolution, clip, epsilon, delta)
        if secure_sum is None and sum_options:
            raise ValueError("sum_range, sum_resolution, clip, epsilon and delta go with secure_sum")
        view = self.submit(image, cmd, on=on, **options)
        return Job(self, view, gather=gather, secure_sum=secure_sum, sum_length=sum_length,
                   sum_options=sum_options)

    def submit(self, image: str, cmd: list[str], on: str = "all", **options: Any) -> JobView:
        request = {"image": image, "argv": list(cmd), "on": on, **options}
        return JobView.model_validate(self._call("POST", "/v1/jobs", request))

    def jobs(self) -> list[JobView]:
        return [JobView.model_validate(j) for j in self._call("GET", "/v1/jobs")]

    def job(self, job_id: str, wait: Optional[float] = None) -> JobView:
        """The job; with `wait`, once it has ended or that many seconds passed."""
        return JobView.model_validate(self._call("GET", f"/v1/jobs/{job_id}", params={"wait": wait}))

    def cancel(self, job_id: str) -> JobView:
        return JobView.model_validate(self._call("POST", f"/v1/jobs/{job_id}/cancel"))

    def logs(self, job_id: str, node: Optional[str] = None) -> list[TaskLogs]:
        answer = self._call("GET", f"/v1/jobs/{job_id}/logs", params={"node": node})
        return [TaskLogs.model_validate(t) for t in answer]

    def gather(self, job_id: str) -> dict:
        return self._call("POST", f"/v1/jobs/{job_id}/gather")

    def secure_sum(self, job_id: str, file: str, length: int, range: Optional[float] = None,
                   resolution: Optional[float] = None, clip: Optional[float] = None,
                   epsilon: Optional[float] = None, delta: Optional[float] = None) -> SumOutcome:
        """The secure sum of each task's `file`, whose vector holds `length`
        numbers: the master names the length, and a site only says whether
        its update fits. `range` bounds every number summed (each
        weight·entry and the weight; 1e6 if not given) and `resolution` is
        the finest step kept (2**-32 if not given): sums of squares of real
        columns need a wider range. Sites clip what lies beyond the range;
        the outcome's `clipped` counts it over all sites.

        With `clip` and `epsilon` (at `delta`, 1e-6 if not given), each
        site's node clips its vector (the weighted entries and the weight)
        to that L2 norm and adds noise, so that the sum costs each site's
        dataset `epsilon`; the outcome's `privacy.noise_sd` is the noise in
        each number of the sum. Sites take part in noise-free sums only
        where their owners allow them."""
        body: dict[str, Any] = {"file": file, "length": length}
        body.update(_sum_options(range, resolution, clip, epsilon, delta))
        return SumOutcome.model_validate(self._call("POST", f"/v1/jobs/{job_id}/secure-sum", body))

    # -- long-lived containers

    def create_containers(self, name: str, image: str, on: str = "all", argv: Optional[list[str]] = None, **options: Any) -> list[dict]:
        body = {"name": name, "image": image, "on": on, "argv": argv or [], **options}
        return self._call("POST", "/v1/containers", body)

    def exec_containers(self, name: str, argv: list[str], on: str = "all") -> list[dict]:
        return self._call("POST", f"/v1/containers/{name}/exec", {"argv": argv, "on": on})

    def remove_containers(self, name: str, on: str = "all") -> list[dict]:
        return self._call("POST", f"/v1/containers/{name}/rm", {"on": on})

    # -- the data owner's

    def policy(self) -> dict:
        return self._call("GET", "/v1/policy")

    def set_policy(self, key: str, value: str) -> dict:
        return self._call("POST", "/v1/policy", {"key": key, "value": value})

    def allow_image(self, image: str, argv: Optional[list[str]] = None, match: str = "prefix",
                    dataset: Optional[str] = None) -> dict:
        """Approves `image`, pinned to its digest, with what may run from it:
        commands that start with `argv` (match="prefix"), exactly `argv`
        (match="exact"), or every command in the image (match="any", no argv)."""
        if match == "any":
            if argv:
                raise ValueError('match="any" approves every command: give no argv')
            command: dict = {"match": "any"}
        else:
            if not argv:
                raise ValueError(f'match="{match}" needs argv: the command approved')
            command = {"match": match, "argv": list(argv)}
        body = {"image": image, "dataset": dataset, "command": command}
        return self._call("POST", "/v1/policy/images", body)

    def revoke_image(self, image: str) -> dict:
        return self._call("POST", "/v1/policy/images/revoke", {"image": image})

    def recognise_site(self, node: str) -> dict:
        """Recognises the member `node` as a co-participant of secure sums,
        pinned to the identity it has now: this node takes part in a sum
        only when `min_aggregate` of its sites (itself included, the
        master's own node never) are recognised."""
        return self._call("POST", "/v1/policy/sites", {"node": node})

    def forget_site(self, node: str) -> dict:
        """Recognises a site no more, by its name or peer id."""
        return self._call("POST", "/v1/policy/sites/forget", {"node": node})

    def budgets(self) -> list[dict]:
        """This node's privacy budgets: each dataset's (and `private/`'s)
        epsilon and delta, what its noisy secure sums spent and what is
        left, as epsilon."""
        return self._call("GET", "/v1/policy/budgets")

    def set_budget(self, dataset: str, epsilon: float, delta: Optional[float] = None) -> dict:
        """Gives `dataset` (or "private/") a privacy budget of its own."""
        body: dict[str, Any] = {"dataset": dataset, "epsilon": epsilon}
        if delta is not None:
            body["delta"] = delta
        return self._call("POST", "/v1/policy/budgets", body)

    def approvals(self) -> list[dict]:
        return self._call("GET", "/v1/approvals")

    def approve(self, job_id: str, always: bool = False) -> dict:
        return self._call("POST", f"/v1/approvals/{job_id}/approve", {"always": always})

    def deny(self, job_id: str, reason: Optional[str] = None) -> dict:
        return self._call("POST", f"/v1/approvals/{job_id}/deny", {"reason": reason})

    def releases(self) -> list[dict]:
        return self._call("GET", "/v1/releases")

    def release(self, job_id: str) -> dict:
        return self._call("POST", f"/v1/releases/{job_id}/approve")

    def withhold(self, job_id: str, reason: Optional[str] = None) -> dict:
        return self._call("POST", f"/v1/releases/{job_id}/deny", {"reason": reason})

    def audit(self, last: Optional[int] = None) -> dict:
        return self._call("GET", "/v1/audit", params={"last": last})

    # -- datasets

    def datasets(self, tag: Optional[str] = None) -> list[DatasetHolder]:
        """Every dataset of the network, with the node that holds it."""
        answer = self._call("GET", "/v1/datasets", params={"tag": tag})
        return [DatasetHolder.model_validate(h) for h in answer]

    def add_dataset(self, name: str, path: str, tags: Optional[list[str]] = None, **card: Any) -> DatasetCard:
        """Declares a dataset of this node (its owner's act): description,
        licence, contact, rows_bucket, mock_rows, replace."""
        body = {"name": name, "path": path, "tags": tags or [], **card}
        return DatasetCard.model_validate(self._call("POST", "/v1/datasets", body))

    def reload_datasets(self) -> list[DatasetCard]:
        return [DatasetCard.model_validate(c) for c in self._call("POST", "/v1/datasets/reload")]

    def remove_dataset(self, name: str) -> list[DatasetCard]:
        return [DatasetCard.model_validate(c) for c in self._call("POST", f"/v1/datasets/{name}/rm")]

    # -- about the node

    def metrics(self) -> str:
        """Prometheus text (docs/metrics.md)."""
        return self._call("GET", "/metrics")

    def openapi(self) -> dict:
        return self._call("GET", "/v1/openapi.json")

    def login_link(self) -> str:
        """A one-time URL that logs a browser in to the dashboard."""
        return self.url + self._call("POST", "/v1/login-links")["path"]


def _sum_options(range: Optional[float], resolution: Optional[float], clip: Optional[float],
                 epsilon: Optional[float], delta: Optional[float]) -> dict[str, float]:
    """The optional fields of a secure-sum request, checked for what goes
    together: differential privacy needs both a clip and an epsilon."""
    if (clip is None) != (epsilon is None):
        raise ValueError("differential privacy needs both clip (an L2 bound on each site's vector) and epsilon")
    if delta is not None and epsilon is None:
        raise ValueError("delta goes with epsilon and clip")
    named = {"range": range, "resolution": resolution, "clip": clip, "epsilon": epsilon, "delta": delta}
    return {key: value for key, value in named.items() if value is not None}
