//! The data owner's policy on real nodes and the real engine: bob's owner
//! approves or denies what alice, the master, asks bob to run, and decides
//! what of it goes back to her. Every setting, each as alice would see it.

mod common;

use common::*;
use serde_json::{json, Value};

const STATS: [&str; 3] = ["/iris-worker", "stats", "/workspace/private/data.csv"];

/// bob's task of job `id`, as alice sees it, once `check` holds for it.
async fn bobs_task(
    alice: &TestNode,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, DEADLINE, || async {
        let (_, job) = alice.get(&format!("/v1/jobs/{id}")).await.ok()?;
        let task = job["tasks"]["bob"].clone();
        check(&task).then_some(task)
    })
    .await
}

/// alice asks bob for a file of job `id`'s outputs by name: the status and
/// the answer.
async fn get_output(alice: &TestNode, id: &str, file: &str) -> (u16, Value) {
    let path = format!("outputs/{id}/{file}");
    alice
        .post("/v1/files/get", json!({"from": "bob", "path": path}))
        .await
}

async fn awaiting(alice: &TestNode, id: &str) {
    bobs_task(alice, id, "bob's task to await approval", |t| {
        t["state"] == "awaiting_approval"
    })
    .await;
}

fn approvals(bob: &TestNode) -> Vec<Value> {
    serde_json::from_str(&bob.owner(&["approvals", "--json"])).unwrap()
}

#[tokio::test]
async fn an_unapproved_image_waits_for_bobs_owner_who_approves_denies_or_approves_it_for_good() {
    let nodes = unapproved_data_network(&["alice", "bob"]).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    let (sink, mut events) = tokio::sync::mpsc::unbounded_channel();
    alice.forward_events(sink.clone()).await;
    bob.forward_events(sink).await;

    // Waits, visible on both sides, with what bob's owner needs to judge it.
    let first = submit(alice, job_body("bob", &STATS)).await;
    awaiting(alice, &first).await;
    let mut told = Vec::new();
    wait_for("both sides to announce the wait", DEADLINE, || {
        while let Ok((node, event)) = events.try_recv() {
            if event["job"] == first.as_str() {
                told.push(format!("{node} {}", event["type"].as_str().unwrap_or("")));
            }
        }
        let both = told.contains(&"bob approval_requested".to_string())
            && told.contains(&"alice awaiting_approval".to_string());
        async move { both.then_some(()) }
    })
    .await;
    let pending = approvals(bob);
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["id"], first.as_str());
    assert_eq!(pending[0]["requester_name"], "alice");
    assert_eq!(pending[0]["argv"], json!(STATS));
    assert!(pending[0]["image_id"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(
        !bob.dir.join(format!("workspace/outputs/{first}")).exists(),
        "it ran before approval"
    );
    bob.owner(&["approvals", "approve", &first]);
    assert_eq!(wait_job(alice, &first).await["state"], "succeeded");

    // Approved once is not approved for good: the next one waits again.
    let second = submit(alice, job_body("bob", &STATS)).await;
    awaiting(alice, &second).await;
    bob.owner(&["approvals", "deny", &second, "--reason", "not this code"]);
    let job = wait_job(alice, &second).await;
    assert_eq!(job["tasks"]["bob"]["state"], "failed");
    assert_eq!(job["tasks"]["bob"]["error"], "denied by bob: not this code");
    assert!(!bob.dir.join(format!("workspace/outputs/{second}")).exists());

    // --always approves the digest: later jobs run at once.
    let third = submit(alice, job_body("bob", &STATS)).await;
    awaiting(alice, &third).await;
    bob.owner(&["approvals", "approve", &third, "--always"]);
    assert_eq!(wait_job(alice, &third).await["state"], "succeeded");
    let fourth = submit(alice, job_body("bob", &STATS)).await;
    assert_eq!(wait_job(alice, &fourth).await["state"], "succeeded");
    let policy: Value = serde_json::from_str(&bob.owner(&["policy", "--json"])).unwrap();
    assert_eq!(policy["approved"][0]["name"], "iris-probe:latest");
    assert_eq!(policy["approved"][0]["command"]["match"], "exact");
    // What the owner approved is that command, not the image: the same
    // image's copy of private/ waits for the owner like any new request.
    let copy = [
        "/iris-worker",
        "copy",
        "/workspace/private/data.csv",
        "p.csv",
    ];
    let sneaked = submit(alice, job_body("bob", &copy)).await;
    awaiting(alice, &sneaked).await;
    bob.owner(&["approvals", "deny", &sneaked, "--reason", "raw rows"]);
    let job = wait_job(alice, &sneaked).await;
    assert_eq!(job["tasks"]["bob"]["state"], "failed", "{job}");
    // A prefix approves a named entrypoint with any arguments, and no other.
    bob.approve_command("/iris-worker stats");
    let other_file = ["/iris-worker", "stats", "/workspace/private/other.csv"];
    let id = submit(alice, job_body("bob", &other_file)).await;
    assert_ne!(
        wait_job(alice, &id).await["tasks"]["bob"]["state"],
        "awaiting_approval"
    );
    let sneaked = submit(alice, job_body("bob", &copy)).await;
    awaiting(alice, &sneaked).await;
    bob.owner(&["approvals", "deny", &sneaked]);

    // Revoked: it waits again; alice gives up on it.
    bob.owner(&["policy", "revoke-image", "iris-probe:latest"]);
    let fifth = submit(alice, job_body("bob", &STATS)).await;
    awaiting(alice, &fifth).await;
    let (code, _) = alice
        .post(&format!("/v1/jobs/{fifth}/cancel"), json!({}))
        .await;
    assert_eq!(code, 200);
    let job = wait_job(alice, &fifth).await;
    assert_eq!(job["tasks"]["bob"]["state"], "cancelled", "{job}");
    assert!(approvals(bob).is_empty());

    // A node's own owner runs on their own node with no approval.
    let own = submit(bob, job_body("bob", &STATS)).await;
    assert_eq!(wait_job(bob, &own).await["state"], "succeeded");

    // Every decision is in bob's audit log, with who made it.
    let out = bob.cli(&["audit", "--json"]);
    let entries: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let decisions: Vec<(String, String, String)> = entries
        .iter()
        .filter(|e| e["event"]["type"] == "decision")
        .map(|e| {
            let field = |k: &str| e["event"][k].as_str().unwrap_or_default().to_string();
            (field("subject"), field("verdict"), field("by"))
        })
        .collect();
    let expect =
        |job: &str, verdict: &str, by: &str| (job.to_string(), verdict.to_string(), by.to_string());
    for wanted in [
        expect(&first, "awaiting_approval", "policy"),
        expect(&first, "approved", "owner"),
        expect(&second, "denied", "owner"),
        expect(&third, "approved", "owner"),
        expect(&fourth, "approved", "policy"),
    ] {
        assert!(
            decisions.contains(&wanted),
            "{wanted:?} not in {decisions:?}"
        );
    }
    assert!(bob.cli(&["audit", "verify"]).status.success());
}

#[tokio::test]
async fn job_run_waits_for_an_approval_until_its_timeout_and_then_gives_up() {
    let nodes = unapproved_data_network(&["alice", "bob"]).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    let mut args = vec![
        "job",
        "run",
        "--image",
        "iris-probe:latest",
        "--on",
        "bob",
        "--timeout",
        "3s",
        "--",
    ];
    args.extend(STATS);
    let out = alice.cli(&args);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(
        said.contains("bob: awaiting approval by bob's owner"),
        "{said}"
    );
    // Whichever side's clock runs out first says so.
    assert!(
        said.contains("not approved within --timeout by the owner of bob")
            || said.contains("not approved by bob's owner within the job's timeout (3 s)"),
        "{said}"
    );
    // bob's side gives up too, by the task's own timeout.
    wait_for("bob to drop the request", DEADLINE, || async {
        approvals(bob).is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn release_review_holds_outputs_until_bobs_owner_releases_them_and_aggregate_lets_none_out() {
    let nodes = data_network(&["alice", "bob"]).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    bob.set_policy("release", "review");

    let id = submit(alice, job_body("bob", &STATS)).await;
    let job = wait_job(alice, &id).await;
    let task = &job["tasks"]["bob"];
    assert_eq!(task["state"], "succeeded");
    assert_eq!(task["outputs"], json!([]), "the names are held too");
    assert!(
        task["held"]
            .as_str()
            .unwrap()
            .contains("held for review by bob's owner"),
        "{task}"
    );
    let (code, gathered) = alice
        .post(&format!("/v1/jobs/{id}/gather"), json!({}))
        .await;
    assert_eq!(code, 200, "{gathered}");
    assert_eq!(gathered["files"], json!([]));
    assert!(
        gathered["held"][0].as_str().unwrap().starts_with("bob: "),
        "{gathered}"
    );
    // Asking for the file by name is refused as well.
    let (code, body) = get_output(alice, &id, "stats.json").await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("held for review"),
        "{body}"
    );

    // bob's owner looks, and releases: alice gathers them after the job ended.
    let pending: Vec<Value> = serde_json::from_str(&bob.owner(&["releases", "--json"])).unwrap();
    assert_eq!(pending[0]["job_id"], id.as_str());
    assert_eq!(pending[0]["files"], json!(["stats.json"]));
    bob.owner(&["releases", "approve", &id]);
    bobs_task(alice, &id, "the release to reach alice", |t| {
        t["outputs"] == json!(["stats.json"]) && t["held"].is_null()
    })
    .await;
    let out = alice.owner(&["job", "gather", &id]);
    assert!(
        out.contains(&format!("gathered gathered/{id}/bob/stats.json")),
        "{out}"
    );
    let stats: Value = serde_json::from_slice(
        &std::fs::read(
            alice
                .dir
                .join(format!("workspace/gathered/{id}/bob/stats.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(stats["rows"], 3);

    // Denied: alice reads the reason and gets nothing.
    let denied = submit(alice, job_body("bob", &STATS)).await;
    wait_job(alice, &denied).await;
    bob.owner(&["releases", "deny", &denied, "--reason", "too fine-grained"]);
    let task = bobs_task(alice, &denied, "the denial to reach alice", |t| {
        t["held"]
            .as_str()
            .is_some_and(|h| h.contains("too fine-grained"))
    })
    .await;
    assert_eq!(task["outputs"], json!([]));

    // Aggregate: nothing leaves but through a secure sum.
    bob.set_policy("release", "aggregate");
    let summed = submit(alice, job_body("bob", &STATS)).await;
    let job = wait_job(alice, &summed).await;
    assert!(
        job["tasks"]["bob"]["held"]
            .as_str()
            .unwrap()
            .contains("secure aggregation"),
        "{job}"
    );
    let (code, body) = get_output(alice, &summed, "stats.json").await;
    assert_eq!(code, 403, "{body}");
    // Tightening the policy stops what was released under the old one.
    let (code, body) = get_output(alice, &id, "stats.json").await;
    assert_eq!(code, 403, "{body}");
}

#[tokio::test]
async fn logs_are_withheld_unless_shared_and_then_capped() {
    let nodes = data_network(&["alice", "bob"]).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    let private = std::fs::read_to_string(bob.dir.join("workspace/private/data.csv")).unwrap();
    let id = submit(
        alice,
        job_body(
            "bob",
            &["/iris-worker", "cat", "/workspace/private/data.csv"],
        ),
    )
    .await;
    assert_eq!(wait_job(alice, &id).await["state"], "succeeded");

    let (code, logs) = alice
        .get(&format!("/v1/jobs/{id}/logs?node=bob"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{logs}");
    assert_eq!(logs[0]["stdout"], "");
    assert_eq!(
        logs[0]["withheld"],
        "withheld by bob's policy (logs = withhold)"
    );
    let out = alice.cli(&["job", "logs", &id]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("[bob] logs withheld by bob's policy"),
        "{said}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("x,y"));
    // The owner reads them on the node itself.
    let kept = std::fs::read_to_string(bob.dir.join(format!("tasks/{id}/stdout.log"))).unwrap();
    assert_eq!(kept, private);

    bob.set_policy("logs", "share");
    bob.set_policy("max_shared_log_bytes", "6");
    let (_, logs) = alice
        .get(&format!("/v1/jobs/{id}/logs?node=bob"))
        .await
        .unwrap();
    assert_eq!(logs[0]["stdout"], &private[..6]);
    assert!(logs[0]["withheld"].is_null());
    let (_, more) = alice
        .get(&format!("/v1/jobs/{id}/logs?node=bob&stdout_offset=6"))
        .await
        .unwrap();
    assert_eq!(more[0]["stdout"], "", "the cap counts what already left");
}

/// A name is a message: a task whose only output's name is not UTF-8
/// must not send that name (here, a secret) past a release held for
/// review. Before: the report carried it at once, review or not (the
/// check held back only the UTF-8 names), and bob's owner never saw the
/// task among the releases to decide.
#[tokio::test]
async fn an_output_name_that_is_not_utf8_waits_for_the_release_too() {
    let nodes = data_network(&["alice", "bob"]).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    bob.set_policy("release", "review");
    let secret = ["/iris-worker", "unnamed", "patient-42-hiv-positive", "only"];
    let id = submit(alice, job_body("bob", &secret)).await;
    let job = wait_job(alice, &id).await;
    let task = &job["tasks"]["bob"];
    assert_eq!(task["state"], "succeeded", "{task}");
    assert!(
        !task.to_string().contains("patient-42"),
        "the name left before the release: {task}"
    );
    assert!(task["held"].as_str().is_some(), "{task}");

    let pending: Vec<Value> = serde_json::from_str(&bob.owner(&["releases", "--json"])).unwrap();
    assert_eq!(pending.len(), 1, "bob's owner is not asked: {pending:?}");
    assert_eq!(
        pending[0]["unnamed"],
        json!(["patient-42-hiv-positive\\xff"])
    );
    bob.owner(&["releases", "approve", &id]);
    bobs_task(alice, &id, "the release to reach alice", |t| {
        t["unnamed_outputs"] == json!(["patient-42-hiv-positive\\xff"]) && t["held"].is_null()
    })
    .await;
}

/// `logs = share` shares logs only as far as the release lets outputs
/// out: under `aggregate` never (the job could print its data), under
/// `review` only once bob's owner released the task's outputs.
#[tokio::test]
async fn shared_logs_follow_the_release_mode() {
    let nodes = data_network(&["alice", "bob"]).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    bob.set_policy("logs", "share");
    let leak = ["/iris-worker", "cat", "/workspace/private/data.csv"];
    let logs_of = |id: String| async move {
        let (code, logs) = alice
            .get(&format!("/v1/jobs/{id}/logs?node=bob"))
            .await
            .unwrap();
        assert_eq!(code, 200, "{logs}");
        logs[0].clone()
    };

    // The same job, and what alice reads of its logs, under each mode.
    let mut id = String::new();
    for (release, withheld) in [
        ("aggregate", "release = aggregate"),
        ("review", "held for review"),
    ] {
        bob.set_policy("release", release);
        id = submit(alice, job_body("bob", &leak)).await;
        assert_eq!(wait_job(alice, &id).await["state"], "succeeded");
        let logs = logs_of(id.clone()).await;
        assert_eq!(logs["stdout"], "", "{logs}");
        let said = logs["withheld"].as_str().unwrap_or_default();
        assert!(said.contains(withheld), "{logs}");
    }
    bob.owner(&["releases", "approve", &id]);
    let logs = logs_of(id.clone()).await;
    assert!(
        logs["stdout"].as_str().unwrap().starts_with("x,y"),
        "{logs}"
    );
}

/// A master who tries, under `release = review`: its job's exit code, its
/// error and its exact time are what it could encode the data in. While
/// the outputs are held, bob tells only whether the task succeeded, and
/// its times in classes (the start to the second, the end at a power of
/// two seconds after it).
#[tokio::test]
async fn a_held_task_tells_the_master_only_whether_it_succeeded() {
    let nodes = data_network(&["alice", "bob"]).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    bob.set_policy("release", "review");
    let id = submit(alice, job_body("bob", &["/iris-worker", "exit", "77"])).await;
    let job = wait_job(alice, &id).await;
    let task = &job["tasks"]["bob"];
    assert_eq!(task["state"], "failed", "{job}");
    assert!(task["exit_code"].is_null(), "{job}");
    assert!(!task["error"].to_string().contains("77"), "{job}");
    // bob's owner sees it all.
    let audit: Value = serde_json::from_str(&bob.owner(&["audit", "--json"])).unwrap();
    let ended = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["type"] == "task_ended" && e["event"]["job_id"] == id.as_str())
        .expect("a task_ended entry");
    assert_eq!(ended["event"]["exit_code"], 77);

    let id = submit(alice, job_body("bob", &["/iris-worker", "sleep", "1.3"])).await;
    let job = wait_job(alice, &id).await;
    let task = &job["tasks"]["bob"];
    assert_eq!(task["state"], "succeeded", "{job}");
    let (started, finished) = (
        task["started_ms"].as_u64().unwrap(),
        task["finished_ms"].as_u64().unwrap(),
    );
    assert_eq!(started % 1000, 0, "{job}");
    assert!([2000, 4000].contains(&(finished - started)), "{job}");
    assert!(
        task["held"].as_str().unwrap().contains("held for review"),
        "{job}"
    );

    // Each task tells a few bits: bob's owner caps how many an hour.
    bob.set_policy("max_tasks_per_hour", "2");
    let id = submit(alice, job_body("bob", &["/iris-worker", "exit", "0"])).await;
    let job = wait_job(alice, &id).await;
    let error = job["tasks"]["bob"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("at most 2 tasks an hour"), "{job}");
}

#[tokio::test]
async fn sessions_and_networks_are_refused_unless_bobs_owner_allows_them() {
    let nodes = data_network(&["alice", "bob"]).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    let create = json!({"name": "probe", "image": "iris-probe:latest", "on": "bob",
                        "argv": ["/iris-worker", "sleep", "inf"]});
    let (_, answers) = alice.post("/v1/containers", create.clone()).await;
    let error = answers[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("sessions = deny"), "{answers}");

    let mut body = job_body("bob", &["/iris-worker", "netifs"]);
    body["network"] = json!("bridge");
    let id = submit(alice, body.clone()).await;
    let job = wait_job(alice, &id).await;
    let error = job["tasks"]["bob"]["error"].as_str().unwrap();
    assert!(error.contains("network = deny"), "{job}");

    // Allowed by bob's owner: the session runs, and its output comes back.
    bob.set_policy("sessions", "allow");
    let (_, answers) = alice.post("/v1/containers", create).await;
    assert_eq!(answers[0]["ok"], true, "{answers}");
    let exec = json!({"on": "bob", "argv": ["/iris-worker", "exit", "0"]});
    let (_, answers) = alice.post("/v1/containers/probe/exec", exec.clone()).await;
    assert_eq!(answers[0]["ok"], true, "{answers}");
    // Under review, an exec would bypass it: refused before it runs.
    bob.set_policy("release", "review");
    let (_, answers) = alice.post("/v1/containers/probe/exec", exec).await;
    assert!(
        answers[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("release = review"),
        "{answers}"
    );
    let (_, answers) = alice
        .post("/v1/containers/probe/rm", json!({"on": "bob"}))
        .await;
    assert_eq!(answers[0]["ok"], true, "{answers}");

    bob.set_policy("network", "allow");
    let id = submit(alice, body).await;
    assert_eq!(wait_job(alice, &id).await["state"], "succeeded");
}

#[tokio::test]
async fn pending_approvals_and_held_releases_survive_a_restart_of_bob() {
    let mut nodes = unapproved_data_network(&["alice", "bob"]).await;
    nodes[1].set_policy("release", "review");
    let waiting = submit(&nodes[0], job_body("bob", &STATS)).await;
    awaiting(&nodes[0], &waiting).await;

    nodes[1].terminate().await;
    nodes[1].start().await;
    nodes[0].wait_state("bob", "alive").await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    let pending = approvals(bob);
    assert_eq!(pending.len(), 1, "{pending:?}");
    bob.owner(&["approvals", "approve", &waiting]);
    let job = wait_job(alice, &waiting).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(job["tasks"]["bob"]["held"].is_string(), "{job}");

    nodes[1].terminate().await;
    nodes[1].start().await;
    let pending: Vec<Value> =
        serde_json::from_str(&nodes[1].owner(&["releases", "--json"])).unwrap();
    assert_eq!(pending[0]["job_id"], waiting.as_str());
    // The setting made through the API was written to iris.toml, and read
    // back from it at the start.
    let toml = std::fs::read_to_string(nodes[1].dir.join("iris.toml")).unwrap();
    assert!(toml.contains("\nrelease = \"review\"\n"), "{toml}");
    let policy: Value = serde_json::from_str(&nodes[1].owner(&["policy", "--json"])).unwrap();
    assert_eq!(policy["release"], "review");
}
