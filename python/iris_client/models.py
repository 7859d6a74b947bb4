"""The API's main types, as pydantic models (docs/api.md, /v1/openapi.json).

Unknown fields are kept, so a newer node's answers still load here."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Status(_Model):
    name: str
    peer_id: str
    addrs: list[str]
    p2p_port: int
    api_port: int
    tags: list[str] = []
    network: Optional[dict] = None
    role: Optional[str] = None
    executor: str


class Column(_Model):
    name: str
    type: str


class DatasetCard(_Model):
    name: str
    description: str = ""
    tags: list[str] = []
    schema_: list[Column] = Field(default=[], alias="schema")
    licence: str = ""
    contact: str = ""
    rows: int
    rows_bucket: int
    mock: Optional[str] = None

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.schema_]


class DatasetHolder(_Model):
    node: str
    peer_id: str
    state: str
    card: DatasetCard


class NodeView(_Model):
    name: str
    peer_id: str
    role: str
    state: str
    addrs: list[str]
    tags: list[str] = []
    is_self: bool = Field(alias="self")
    connected: bool
    # Reached only through a relay (sites behind NAT), and whether it is one.
    relayed: bool = False
    relay: bool = False
    datasets: list[DatasetCard] = []


class Task(_Model):
    node: str
    peer_id: str
    state: str
    exit_code: Optional[int] = None
    started_ms: Optional[int] = None
    finished_ms: Optional[int] = None
    outputs: list[str] = []
    error: Optional[str] = None
    held: Optional[str] = None
    unnamed_outputs: list[str] = []

    @property
    def seconds(self) -> Optional[float]:
        if self.started_ms is None or self.finished_ms is None:
            return None
        return (self.finished_ms - self.started_ms) / 1000


class JobView(_Model):
    id: str
    state: str
    request: dict
    created_ms: int
    tasks: dict[str, Task]


class TaskLogs(_Model):
    node: str
    state: str
    stdout: str
    stderr: str
    stdout_offset: int
    stderr_offset: int
    withheld: Optional[str] = None


class SumPrivacy(_Model):
    """The differential privacy of a secure sum: each site's clip, what the
    sum cost each site's dataset, and the noise in each number of it."""

    clip: float
    epsilon: float
    delta: float
    noise_sd: float


class SumOutcome(_Model):
    vector: list[float]
    weight: float
    clipped: int = 0
    privacy: Optional[SumPrivacy] = None
    nodes: list[str]
    dropped: list[str]
    session: str
    path: str = ""


class Event(_Model):
    """One event of the stream: `type` names it, the rest depends on it."""

    at_ms: int
    type: str
