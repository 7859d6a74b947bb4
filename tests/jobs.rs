//! Jobs across a real network of `iris` processes and the real Docker
//! engine, with the worker image built by docker/build-images.sh.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn the_master_runs_the_worker_on_every_node_against_its_own_private_data() {
    let nodes = data_network(&["alice", "bob", "carol"]).await;
    for node in &nodes[1..] {
        node.set_policy("logs", "share");
    }
    let out = nodes[0].cli(&[
        "job",
        "run",
        "--image",
        "iris-probe:latest",
        "--on",
        "all",
        "--",
        "/iris-worker",
        "stats",
        "/workspace/private/data.csv",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["alice", "bob", "carol"] {
        let line = stdout.lines().find(|l| l.starts_with(name)).expect(&stdout);
        assert!(line.contains("succeeded") && line.contains(" 0 "), "{line}");
    }

    let (_, jobs) = nodes[0].get("/v1/jobs").await.unwrap();
    let id = jobs[0]["id"].as_str().unwrap().to_string();
    for (i, node) in nodes.iter().enumerate() {
        // The result is in that node's outputs...
        let path = node.dir.join(format!("workspace/outputs/{id}/stats.json"));
        let stats: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(stats["rows"], i + 2);
        // ...and the master reads it from the node's logs.
        let (code, logs) = nodes[0]
            .get(&format!("/v1/jobs/{id}/logs?node={}", node.name))
            .await
            .unwrap();
        assert_eq!(code, 200, "{logs}");
        let printed: Value = serde_json::from_str(logs[0]["stdout"].as_str().unwrap()).unwrap();
        assert_eq!(printed, stats, "{}", node.name);
    }
    let (_, job) = nodes[0].get(&format!("/v1/jobs/{id}")).await.unwrap();
    assert_eq!(job["tasks"]["bob"]["outputs"], json!(["stats.json"]));
}

#[tokio::test]
async fn exit_codes_timeouts_and_cancel_are_reported() {
    let nodes = data_network(&["alice", "bob"]).await;
    let out = nodes[0].cli(&[
        "job",
        "run",
        "--image",
        "iris-probe:latest",
        "--on",
        "bob",
        "--",
        "/iris-worker",
        "exit",
        "3",
    ]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("bob") && l.contains("failed") && l.contains(" 3 ")),
        "{stdout}"
    );

    let mut body = job_body("bob", &["/iris-worker", "sleep", "60"]);
    body["timeout_secs"] = json!(1);
    let id = submit(&nodes[0], body).await;
    let job = wait_job(&nodes[0], &id).await;
    assert_eq!(job["tasks"]["bob"]["state"], "timed_out", "{job}");

    let id = submit(&nodes[0], job_body("all", &["/iris-worker", "sleep", "60"])).await;
    wait_for("both tasks to run", DEADLINE, || async {
        let (_, job) = nodes[0].get(&format!("/v1/jobs/{id}")).await.ok()?;
        let running = job["tasks"]
            .as_object()?
            .values()
            .all(|t| t["state"] == "running");
        running.then_some(())
    })
    .await;
    let out = nodes[0].cli(&["job", "cancel", &id]);
    assert!(out.status.success());
    let job = wait_job(&nodes[0], &id).await;
    for task in job["tasks"].as_object().unwrap().values() {
        assert_eq!(task["state"], "cancelled", "{job}");
    }
}

#[tokio::test]
async fn a_slave_cannot_command_another_node() {
    let nodes = data_network(&["alice", "bob", "carol"]).await;
    let id = submit(&nodes[1], job_body("carol", &["/iris-worker", "exit", "0"])).await;
    let job = wait_job(&nodes[1], &id).await;
    let error = job["tasks"]["carol"]["error"].as_str().unwrap_or_default();
    assert_eq!(job["tasks"]["carol"]["state"], "failed");
    assert!(
        error.contains("forbidden: only the master can run jobs on other nodes"),
        "{job}"
    );
    // Carol ran nothing for bob.
    assert!(!nodes[2].dir.join(format!("tasks/{id}")).exists());
    // A slave may still run jobs on itself.
    let id = submit(&nodes[1], job_body("bob", &["/iris-worker", "exit", "0"])).await;
    assert_eq!(wait_job(&nodes[1], &id).await["state"], "succeeded");
}

#[tokio::test]
async fn a_node_that_dies_during_a_job_is_lost_while_the_others_finish() {
    let mut nodes = data_network(&["alice", "bob", "carol"]).await;
    let id = submit(&nodes[0], job_body("all", &["/iris-worker", "sleep", "4"])).await;
    wait_for("carol's task to run", DEADLINE, || async {
        let (_, job) = nodes[0].get(&format!("/v1/jobs/{id}")).await.ok()?;
        let state = &job["tasks"]["carol"]["state"];
        assert!(state == "queued" || state == "running", "{job}");
        (state == "running").then_some(())
    })
    .await;
    nodes[2].kill();
    let job = wait_job(&nodes[0], &id).await;
    assert_eq!(job["tasks"]["carol"]["state"], "lost", "{job}");
    assert_eq!(job["tasks"]["alice"]["state"], "succeeded", "{job}");
    assert_eq!(job["tasks"]["bob"]["state"], "succeeded", "{job}");

    // carol comes back, reports her interrupted task and leaves no container.
    nodes[2].start().await;
    let label = format!("label=iris.job={id}");
    wait_for("carol's container to be removed", DEADLINE, || async {
        let out = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
            .ok()?;
        out.stdout.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn job_records_survive_a_master_restart() {
    let mut nodes = data_network(&["alice", "bob"]).await;
    let id = submit(
        &nodes[0],
        job_body(
            "all",
            &["/iris-worker", "stats", "/workspace/private/data.csv"],
        ),
    )
    .await;
    wait_job(&nodes[0], &id).await;
    nodes[0].terminate().await;
    nodes[0].start().await;
    let (code, job) = nodes[0].get(&format!("/v1/jobs/{id}")).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(job["state"], "succeeded", "{job}");
    let out = nodes[0].cli(&["job", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));

    // At once, before the redial has reconnected anyone: the restored map
    // shows bob alive, so his task must reach him.
    let again = submit(&nodes[0], job_body("all", &["/iris-worker", "exit", "0"])).await;
    let job = wait_job(&nodes[0], &again).await;
    assert_eq!(job["state"], "succeeded", "{job}");
}

#[tokio::test]
async fn an_unreachable_docker_is_reported_and_jobs_fail_with_the_reason() {
    let mut node = TestNode::init("alice");
    node.start_with_env(&[("DOCKER_HOST", "unix:///nonexistent/docker.sock")])
        .await;
    let status = node.status().await;
    assert!(
        status["executor"]
            .as_str()
            .unwrap()
            .starts_with("unavailable"),
        "{status}"
    );
    let id = submit(&node, job_body("alice", &["/iris-worker", "exit", "0"])).await;
    let job = wait_job(&node, &id).await;
    assert_eq!(job["tasks"]["alice"]["state"], "failed");
    assert!(
        job["tasks"]["alice"]["error"]
            .as_str()
            .unwrap()
            .contains("executor: unavailable"),
        "{job}"
    );
}

/// The engine is away while the owner loads an image. Before: the tar was
/// deleted and the owner told 400 "invalid", as if the tar were bad. Now
/// the error names the engine (503) and the tar stays, to load when the
/// engine is back.
#[tokio::test]
async fn an_engine_outage_while_loading_keeps_the_tar_and_names_the_engine() {
    let mut node = TestNode::init("alice");
    node.start_with_env(&[("DOCKER_HOST", "unix:///nonexistent/docker.sock")])
        .await;
    let (code, body) = node
        .post("/v1/images/load", json!({"path": probe_tar()}))
        .await;
    assert_eq!(code, 503, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("engine"), "{body}");
    let kept = node.dir.join("workspace/image/iris-probe.tar");
    assert!(kept.is_file(), "the tar was deleted: {body}");
}

#[tokio::test]
async fn bad_job_requests_are_refused_with_a_reason() {
    let nodes = data_network(&["alice", "bob"]).await;
    // Targets that are not there are not found; the rest is a bad request.
    for (body, needle) in [
        (
            job_body("nobody", &["/iris-worker"]),
            "no node named 'nobody'",
        ),
        (job_body("tag:none", &["/iris-worker"]), "no alive node"),
    ] {
        let (code, answer) = nodes[0].post("/v1/jobs", body.clone()).await;
        assert_eq!(code, 404, "{body} -> {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(needle),
            "{body} -> {answer}"
        );
    }
    for (body, needle) in [
        (job_body("all", &[]), "command is empty"),
        (
            json!({"image": "iris-probe:latest", "argv": ["x"], "network": "host"}),
            "network 'host' is not allowed",
        ),
        (
            json!({"image": "iris-probe:latest", "argv": ["x"], "env": ["NOEQUALS"]}),
            "KEY=VALUE",
        ),
        (
            json!({"image": "iris-probe:latest", "argv": ["x"], "memory_mb": 1}),
            "memory",
        ),
        (
            json!({"image": "iris-probe:latest", "argv": ["x"], "inputs": ["../private"]}),
            "input '../private' must be a relative path",
        ),
        (
            json!({"image": "iris-probe:latest", "argv": ["x"], "inputs": ["/etc"]}),
            "input '/etc' must be a relative path",
        ),
    ] {
        let (code, answer) = nodes[0].post("/v1/jobs", body.clone()).await;
        assert_eq!(code, 400, "{body} -> {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(needle),
            "{body} -> {answer}"
        );
    }
    let (code, _) = nodes[0].get("/v1/jobs/job-nope").await.unwrap();
    assert_eq!(code, 404);
}

#[tokio::test]
async fn a_queued_task_survives_a_restart_of_its_node() {
    let mut nodes = data_network(&["alice", "bob"]).await;
    // bob runs one task at a time.
    nodes[1].terminate().await;
    let config = nodes[1].dir.join("iris.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_concurrent = 2", "max_concurrent = 1");
    std::fs::write(&config, text).unwrap();
    nodes[1].start().await;
    nodes[0].wait_state("bob", "alive").await;

    let first = submit(&nodes[0], job_body("bob", &["/iris-worker", "sleep", "60"])).await;
    let second = submit(&nodes[0], job_body("bob", &["/iris-worker", "exit", "0"])).await;
    wait_for(
        "the first task to run and the second to wait",
        DEADLINE,
        || async {
            let (_, a) = nodes[0].get(&format!("/v1/jobs/{first}")).await.ok()?;
            let (_, b) = nodes[0].get(&format!("/v1/jobs/{second}")).await.ok()?;
            (a["tasks"]["bob"]["state"] == "running" && b["tasks"]["bob"]["state"] == "queued")
                .then_some(())
        },
    )
    .await;

    nodes[1].terminate().await;
    nodes[1].start().await;
    // The running task was interrupted; the queued one runs after the restart.
    let a = wait_job(&nodes[0], &first).await;
    assert_eq!(a["tasks"]["bob"]["state"], "lost", "{a}");
    let b = wait_job(&nodes[0], &second).await;
    assert_eq!(b["tasks"]["bob"]["state"], "succeeded", "{b}");
}

#[tokio::test]
async fn any_runs_on_one_node_and_follow_streams_logs_to_the_end() {
    let nodes = data_network(&["alice", "bob", "carol"]).await;
    // Their owners share logs (withheld by default).
    for node in &nodes[1..] {
        node.set_policy("logs", "share");
    }
    let mut body = job_body(
        "role:slave",
        &["/iris-worker", "stats", "/workspace/private/data.csv"],
    );
    body["any"] = json!(true);
    let id = submit(&nodes[0], body).await;
    let job = wait_job(&nodes[0], &id).await;
    assert_eq!(job["tasks"].as_object().unwrap().len(), 1, "{job}");
    let node = job["tasks"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    assert!(node == "bob" || node == "carol");

    let out = nodes[0].cli(&["job", "logs", &id, "--follow"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("[{node}]   \"rows\"")));
}

/// Federated averaging in miniature: every node computes an update, the
/// master gathers them, and a second job on the master reads them as
/// read-only inputs.
#[tokio::test]
async fn a_job_reads_gathered_outputs_of_an_earlier_job_as_read_only_inputs() {
    let nodes = data_network(&["alice", "bob"]).await;
    let run = |args: &[&str]| {
        let mut all = vec!["job", "run", "--json", "--image", "iris-probe:latest"];
        all.extend_from_slice(args);
        let out = nodes[0].cli(&all);
        let job: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (
            out.status.success(),
            job,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, train, err) = run(&[
        "--on",
        "all",
        "--gather",
        "--",
        "/iris-worker",
        "gradient",
        "/workspace/private/data.csv",
        "--target",
        "y",
        "--weights",
        "0,0",
    ]);
    assert!(ok, "{train} {err}");
    let id = train["id"].as_str().unwrap();
    let gathered: Vec<String> = train["gathered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("/workspace/in/{}", f.as_str().unwrap()))
        .collect();
    assert_eq!(gathered.len(), 2, "{train}");

    // What the master gathered is in its gathered/, which only its own
    // jobs may read.
    let input = format!("gathered/{id}");
    let mut args = vec![
        "--on",
        "alice",
        "--input",
        input.as_str(),
        "--",
        "/iris-worker",
        "average",
    ];
    args.extend(gathered.iter().map(String::as_str));
    let (ok, average, err) = run(&args);
    assert!(ok, "{average} {err}");
    let model_path = nodes[0].dir.join(format!(
        "workspace/outputs/{}/model.json",
        average["id"].as_str().unwrap()
    ));
    let model: Value = serde_json::from_str(&std::fs::read_to_string(model_path).unwrap()).unwrap();
    // alice has 2 rows, bob 3.
    assert_eq!(model["rows"], 5.0, "{model}");
    assert_eq!(model["updates"], 2, "{model}");

    // Inputs are read-only.
    let target = format!("/workspace/in/{input}/planted");
    let (ok, job, _) = run(&[
        "--on",
        "alice",
        "--input",
        &input,
        "--",
        "/iris-worker",
        "touch",
        &target,
    ]);
    assert!(!ok, "{job}");
    assert!(!nodes[0]
        .dir
        .join(format!("workspace/{input}/planted"))
        .exists());

    // A missing input, a link out of public/, another job's outputs (which
    // its container writes) and what bob gathered fail the task with the reason.
    std::os::unix::fs::symlink("../private", nodes[0].dir.join("workspace/public/escape")).unwrap();
    let outputs = format!("outputs/{id}");
    for (on, input, reason) in [
        ("alice", "jobs/nope", "input 'jobs/nope'"),
        ("alice", "escape", "leads out"),
        (
            "alice",
            outputs.as_str(),
            "must be under public/ or gathered/",
        ),
        ("bob", input.as_str(), "must be under public/"),
    ] {
        let (ok, job, _) = run(&[
            "--on",
            on,
            "--input",
            input,
            "--",
            "/iris-worker",
            "exit",
            "0",
        ]);
        assert!(!ok, "{job}");
        let error = job["tasks"][on]["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{input}: {job}");
    }
}

/// A task writes an output whose name is not UTF-8 beside a normal one.
/// Before: the master's gather failed for the whole job (the name, read
/// lossily, named no file). Now the bad name is refused on its own, named
/// in the job's result with its bytes escaped, and the rest is gathered.
#[tokio::test]
async fn an_output_whose_name_is_not_utf8_is_refused_alone_and_the_rest_is_gathered() {
    let nodes = data_network(&["alice", "bob"]).await;
    let out = nodes[0].cli(&[
        "job",
        "run",
        "--json",
        "--image",
        "iris-probe:latest",
        "--on",
        "bob",
        "--gather",
        "--",
        "/iris-worker",
        "unnamed",
        "kept.txt",
    ]);
    let job: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{job} {err}");
    let id = job["id"].as_str().unwrap();
    assert_eq!(
        job["gathered"],
        json!([format!("gathered/{id}/bob/kept.txt")])
    );
    assert_eq!(job["unnamed"], json!(["bob: kept.txt\\xff"]));
    assert_eq!(
        job["tasks"]["bob"]["unnamed_outputs"],
        json!(["kept.txt\\xff"])
    );
    let kept = nodes[0]
        .dir
        .join(format!("workspace/gathered/{id}/bob/kept.txt"));
    assert_eq!(std::fs::read_to_string(kept).unwrap(), "kept");
}
