"""The client against real nodes: every public function is called at least
once (test_every_public_function_is_exercised checks that these files do)."""

from __future__ import annotations

import inspect
import json
import queue
import re
import threading
from pathlib import Path

import pytest

import iris_client
from iris_client import IrisError, Job, Network, Training
from conftest import KEY, WORKER, WORKER_TAR, start_network, wait_for

STATS = ["/iris-worker", "stats", "/workspace/data/shard.csv"]
# The same, for a job that reads the whole private area (not a dataset).
PRIVATE_STATS = ["/iris-worker", "stats", "/workspace/private/shard/shard.csv"]
GRADIENT = ["/iris-worker", "gradient", "/workspace/data/shard.csv", "--target", "y",
            "--weights", "0,0,0", "--lr", "0.1", "--steps", "1"]
BROWSER_ROUTES = {("get", "/"), ("get", "/ui/{file}"), ("get", "/login"),
                  ("post", "/v1/session"), ("post", "/v1/session/logout")}


def test_the_client_has_every_route_of_the_openapi_document(lab):
    document = lab["alice"].net.openapi()
    served = {(method, path) for path, item in document["paths"].items() for method in item}
    assert served - BROWSER_ROUTES == set(iris_client.ROUTES), "the client and the API differ"
    for name in iris_client.ROUTES.values():
        assert callable(getattr(Network, name)), name


def test_every_public_function_is_exercised():
    here = Path(__file__).parent
    source = (here / "test_client.py").read_text() + (here / "conftest.py").read_text()
    for cls in (Network, Job):
        for name, _ in inspect.getmembers(cls, predicate=lambda m: inspect.isfunction(m) or isinstance(m, property)):
            if name.startswith("_"):
                continue
            assert re.search(rf"\.{name}\b", source), f"{cls.__name__}.{name} is never called here"


def test_the_network_its_datasets_and_the_node(lab):
    net = lab["alice"].net
    assert net.status().name == "alice"
    assert net.network()["name"] == "lab"
    names = sorted(n.name for n in net.nodes() if n.state == "alive")
    assert names == ["alice", "bob", "carol"]
    holders = net.datasets(tag="regression")
    assert sorted(h.node for h in holders) == ["alice", "bob", "carol"]
    card = next(h.card for h in holders if h.node == "bob")
    assert card.columns == ["x1", "x2", "y"] and card.rows == 60 and card.mock
    assert net.datasets(tag="absent") == []
    assert WORKER in str(net.images())
    assert any(f["path"].endswith("mock.csv") for f in net.files(node="bob"))
    assert 'iris_nodes{state="alive"} 3' in net.metrics()
    assert net.audit(last=5)["verified"] is True
    assert net.policy()["images"] == "approve"
    assert net.login_link().startswith(net.url + "/login?code=")


def test_a_job_on_a_dataset_runs_waits_gathers_and_logs(lab):
    net = lab["alice"].net
    job = net.run(WORKER, STATS, on="dataset:shard", gather=True).wait()
    assert job.state == "succeeded", job.view
    assert sorted(job.tasks) == ["alice", "bob", "carol"]
    assert all(t.exit_code == 0 and t.seconds is not None for t in job.tasks.values())
    assert sorted(Path(f).name for f in job.outputs()) == ["stats.json"] * 3
    assert len(net.gather(job.id)["files"]) == 3
    own = [log for log in job.logs("alice")]
    assert '"rows"' in own[0].stdout
    assert job.id in [j.id for j in net.jobs()]
    assert net.job(job.id).state == "succeeded"
    assert job.refresh().state == "succeeded"

    dry = net.run(WORKER, ["/iris-worker", "stats", "/workspace/data/mock.csv"],
                  on="dataset:shard", dry_run=True).wait()
    assert dry.state == "succeeded" and list(dry.tasks) == ["alice"]

    with pytest.raises(IrisError) as refused:
        net.submit(WORKER, STATS, on="dataset:nowhere")
    assert refused.value.status == 404 and "dataset:nowhere" in refused.value.message

    # A quorum and a deadline: every site answers in time here.
    quick = net.run(WORKER, STATS, on="dataset:shard", quorum=2, deadline_secs=120).wait()
    assert quick.state == "succeeded", quick.view
    assert quick.view.request["quorum"] == 2
    with pytest.raises(IrisError) as refused:
        net.submit(WORKER, STATS, on="dataset:shard", quorum=4)
    assert refused.value.status == 409 and "3 target(s)" in refused.value.message


def test_a_secure_sum_over_the_sites(lab):
    net = lab["alice"].net
    with pytest.raises(ValueError, match="at least 2"):
        net.run(WORKER, GRADIENT, on="dataset:shard", secure_sum="update.json", sum_length=4, quorum=1)
    job = net.run(WORKER, GRADIENT, on="dataset:shard", secure_sum="update.json", sum_length=4).wait()
    assert job.state == "succeeded", job.view
    assert sorted(job.sum.nodes) == ["alice", "bob", "carol"]
    assert job.sum.weight > 0 and len(job.sum.vector) == 4
    again = net.secure_sum(job.id, "update.json", 4)
    assert again.weight == job.sum.weight
    # With differential privacy each site clips and adds noise of its own,
    # and the sum spends each site's budget for the dataset.
    bob = lab["bob"].net
    bob.set_budget("shard", 5.0)
    spent = lambda: {b["dataset"]: b for b in bob.budgets()}["shard"]["spent_epsilon"]
    before = spent()
    noisy = net.secure_sum(job.id, "update.json", 4, clip=100.0, epsilon=0.5)
    assert noisy.privacy is not None and noisy.privacy.noise_sd > 0, noisy
    assert noisy.vector != job.sum.vector
    assert spent() > before
    with pytest.raises(ValueError, match="both clip"):
        net.secure_sum(job.id, "update.json", 4, clip=1.0)
    # bob's owner forgets carol: bob takes part no more, and no sum is left.
    assert bob.forget_site("carol")["recognised"] == []
    try:
        with pytest.raises(IrisError, match="recognises"):
            net.secure_sum(job.id, "update.json", 4)
    finally:
        assert [s["name"] for s in bob.recognise_site("carol")["recognised"]] == ["carol"]


def test_a_training_runs_each_round_once_and_resumes_from_its_checkpoint(lab):
    net = lab["alice"].net
    # The worker's update is (weights, loss) by rows; the next model is the
    # weights' weighted mean.
    argv = ["/iris-worker", "gradient", "/workspace/data/shard.csv", "--target", "y",
            "--model", "{model}", "--lr", "0.4", "--steps", "5"]
    next_model = lambda _model, outcome: [v / outcome.weight for v in outcome.vector[:-1]]
    said: list[str] = []
    training = Training(net, "lab-lr", WORKER, argv, on="dataset:shard", rounds=2, length=4,
                        combine=next_model, log=said.append)
    model = training.run([0.0, 0.0, 0.0])
    assert [r.number for r in training.history] == [1, 2], said
    assert all(sorted(r.sites) == ["alice", "bob", "carol"] for r in training.history)
    rounds = {j.request["round"]["number"]: j for j in net.jobs() if (j.request.get("round") or {}).get("training") == "lab-lr"}
    assert sorted(rounds) == [1, 2]
    # The model went as a file, never on the command line.
    assert not any("0," in a for a in rounds[2].request["argv"]), rounds[2].request["argv"]
    assert rounds[2].request["inputs"] == ["lab-lr/model-000002.json"]

    # A round runs once: submitted again, it is refused with its job.
    with pytest.raises(IrisError, match=rounds[1].id) as refused:
        net.submit(WORKER, argv, on="dataset:shard", round={"training": "lab-lr", "number": 1})
    assert refused.value.status == 409

    # The checkpoint on the master is the model entering round 3; a driver
    # that asks for 3 rounds resumes there and runs one more.
    kept = json.loads(net.read_file("public/lab-lr/model-000003.json"))
    assert kept["model"] == pytest.approx(model)
    again = Training(net, "lab-lr", WORKER, argv, on="dataset:shard", rounds=3, length=4,
                     combine=next_model, log=said.append)
    again.run([9.0, 9.0, 9.0])
    assert [r.number for r in again.history] == [3]
    assert any("resuming lab-lr at round 3" in line for line in said), said

    # An upload reaches the nodes named; a dataset is never read out.
    assert net.upload(b"x" * 10, "lab-lr/note.txt", to="bob")[0]["ok"]
    assert lab["bob"].net.read_file("public/lab-lr/note.txt") == b"x" * 10
    with pytest.raises(IrisError) as refused:
        net.read_file("private/shard/shard.csv")
    assert refused.value.status == 400
    with pytest.raises(IrisError) as refused:
        net.read_file("public/lab-lr/absent.json")
    assert refused.value.status == 404


def test_events_arrive_as_an_iterator(lab, monkeypatch):
    monkeypatch.setenv("IRIS_URL", lab["alice"].net.url)
    monkeypatch.setenv("IRIS_TOKEN_FILE", str(lab["alice"].dir / "api.token"))
    net = Network.from_env()
    seen = queue.Queue()

    def listen():
        for event in net.events():
            seen.put(event)
            if event.type == "job_finished":
                return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    wait_for("the stream to open", lambda: listener.is_alive())
    job = lab["alice"].net.run(WORKER, STATS, on="alice").wait()

    def finished():
        while not seen.empty():
            event = seen.get()
            if event.type == "job_finished" and event.model_extra.get("job") == job.id:
                return True
        return False

    wait_for("job_finished on the stream", finished)
    net.close()


def test_the_owner_approves_denies_and_releases(lab):
    alice, bob = lab["alice"].net, lab["bob"].net
    bob.revoke_image(WORKER)
    try:
        first = alice.submit(WORKER, STATS, on="dataset:shard", any=False)
        wait_for("bob's approval request", lambda: any(a["id"] == first.id for a in bob.approvals()))
        bob.approve(first.id)
        second = alice.submit(WORKER, PRIVATE_STATS, on="bob")
        wait_for("the second request", lambda: any(a["id"] == second.id for a in bob.approvals()))
        bob.deny(second.id, reason="not this code")
        assert alice.job(second.id, wait=30).tasks["bob"].error == "denied by bob: not this code"
        bob.allow_image(WORKER, ["/iris-worker", "stats"], dataset="shard")
        approved = bob.policy()["approved"][0]
        assert approved["dataset"] == "shard"
        assert approved["command"] == {"match": "prefix", "argv": ["/iris-worker", "stats"]}
    finally:
        bob.allow_image(WORKER, match="any")

    bob.set_policy("release", "review")
    try:
        held = alice.run(WORKER, PRIVATE_STATS, on="bob").wait()
        wait_for("the held outputs", lambda: any(r["job_id"] == held.id for r in bob.releases()))
        assert bob.release(held.id)["decision"] == "released"
        kept = alice.run(WORKER, PRIVATE_STATS, on="bob").wait()
        wait_for("the held outputs", lambda: any(r["job_id"] == kept.id for r in bob.releases()))
        assert bob.withhold(kept.id, reason="too small")["decision"] == "denied"
    finally:
        bob.set_policy("release", "auto")


def test_containers_files_images_and_cancel(lab, tmp_path):
    alice, bob = lab["alice"].net, lab["bob"].net
    bob.set_policy("sessions", "allow")
    try:
        made = alice.create_containers("trainer", WORKER, on="bob", argv=["/iris-worker", "sleep", "60"])
        assert made[0]["ok"], made
        ran = alice.exec_containers("trainer", ["/iris-worker", "sleep", "0"], on="bob")
        assert ran[0]["exit_code"] == 0, ran
        assert alice.remove_containers("trainer", on="bob")[0]["ok"]
    finally:
        bob.set_policy("sessions", "deny")

    source = tmp_path / "model.bin"
    source.write_bytes(b"weights" * 1000)
    assert alice.put_file(str(source), as_path="public/models/model.bin", to="bob")[0]["ok"]
    got = alice.get_file("bob", "public/models/model.bin")
    assert got["bytes"] == 7000
    pushed = alice.push_image(str(WORKER_TAR), to="bob")
    assert pushed[0]["ok"], pushed

    slow = alice.submit(WORKER, ["/iris-worker", "sleep", "30"], on="alice")
    assert alice.cancel(slow.id).id == slow.id
    assert alice.job(slow.id, wait=30).tasks["alice"].state == "cancelled"


def test_a_node_declares_and_withdraws_and_members_come_and_go(tmp_path):
    nodes = start_network(tmp_path, ["dora", "eve", "finn"])
    dora, eve, finn = (node.net for node in nodes)
    try:
        nodes[1].shard(30, 0)
        card = eve.add_dataset("shard", "private/shard", tags=["t"], rows_bucket=7)
        assert card.rows == 28 and card.rows_bucket == 7
        assert [c.name for c in eve.reload_datasets()] == ["shard"]
        wait_for("eve's card at dora", lambda: len(dora.datasets()) == 1)
        assert eve.remove_dataset("shard") == []
        wait_for("eve's card gone at dora", lambda: dora.datasets() == [])

        assert finn.leave()["left"] == "lab"
        assert dora.remove_node("finn")["removed"] == "finn"
        with pytest.raises(IrisError):
            finn.join(KEY, dora.status().addrs[0])
    finally:
        for node in nodes:
            node.stop()
