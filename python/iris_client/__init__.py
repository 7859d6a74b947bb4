"""iris_client: a Python client of an Iris node.

    from iris_client import Network

    net = Network.from_dir("./a")
    for holder in net.datasets(tag="cardio"):
        print(holder.node, holder.card.name, holder.card.rows)
    job = net.run("iris-worker:latest", ["/iris-worker", "stats", "/workspace/data/part1.csv"],
                  on="dataset:heart", gather=True).wait()
    print(job.state, job.outputs())
"""

from .job import Job
from .models import (
    Column,
    DatasetCard,
    DatasetHolder,
    Event,
    JobView,
    NodeView,
    Status,
    SumOutcome,
    Task,
    TaskLogs,
)
from .network import ROUTES, IrisError, Network
from .training import Training, fedavg

__all__ = [
    "Column",
    "DatasetCard",
    "DatasetHolder",
    "Event",
    "IrisError",
    "Job",
    "JobView",
    "Network",
    "NodeView",
    "ROUTES",
    "Status",
    "SumOutcome",
    "Task",
    "TaskLogs",
    "Training",
    "fedavg",
]
