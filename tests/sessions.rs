//! Long-lived containers (sessions) across real `iris` processes and the
//! real Docker engine.

mod common;

use common::*;
use serde_json::json;

/// The processes running in the session container `name` of the node with
/// `peer_id`, as the engine lists them.
fn session_processes(name: &str, peer_id: &str) -> Vec<String> {
    let ids = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=iris.session={name}"),
            "--filter",
            &format!("label=iris.node={peer_id}"),
        ])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&ids.stdout).trim().to_string();
    assert!(!id.is_empty(), "no running session container {name}");
    let top = std::process::Command::new("docker")
        .args(["top", &id, "-o", "pid,args"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&top.stdout)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn long_lived_containers_are_created_used_and_removed_on_every_node() {
    let nodes = data_network(&["alice", "bob"]).await;
    // bob's owner lets the master run sessions (refused by default).
    nodes[1].set_policy("sessions", "allow");
    let name = format!("trainer-{}", iris::store::random_hex(3));
    let out = nodes[0].cli(&[
        "container",
        "create",
        "--on",
        "all",
        "--image",
        "iris-probe:latest",
        "--name",
        &name,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = nodes[0].cli(&[
        "container",
        "exec",
        "--on",
        "all",
        "--name",
        &name,
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
    assert!(stdout.contains("[alice]   \"rows\": 2"), "{stdout}");
    assert!(stdout.contains("[bob]   \"rows\": 3"), "{stdout}");
    assert!(nodes[1]
        .dir
        .join(format!("workspace/sessions/{name}/stats.json"))
        .exists());

    // The same sandbox as a job: private data stays read-only.
    let out = nodes[0].cli(&[
        "container",
        "exec",
        "--on",
        "bob",
        "--name",
        &name,
        "--",
        "/iris-worker",
        "touch",
        "/workspace/private/x",
    ]);
    assert!(!out.status.success());
    // What bob's owner approves is commands, in sessions too: with only
    // `/iris-worker stats ...` approved, a `cat` of private/ is refused.
    nodes[1].owner(&["policy", "revoke-image", "iris-probe:latest"]);
    nodes[1].approve_command("/iris-worker stats");
    let exec_on_bob = |argv: &[&str]| {
        let mut args = vec!["container", "exec", "--on", "bob", "--name", &name, "--"];
        args.extend_from_slice(argv);
        nodes[0].cli(&args)
    };
    let out = exec_on_bob(&["/iris-worker", "cat", "/workspace/private/data.csv"]);
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("not approved"),
        "{said}"
    );
    assert!(!said.contains("x,y"), "{said}");
    let out = exec_on_bob(&["/iris-worker", "stats", "/workspace/private/data.csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A slave cannot use another node's container.
    let (code, answers) = nodes[1]
        .post(
            &format!("/v1/containers/{name}/exec"),
            json!({"on": "alice", "argv": ["/iris-worker", "exit", "0"]}),
        )
        .await;
    assert_eq!(code, 200);
    assert!(
        answers[0]["error"].as_str().unwrap().contains("forbidden"),
        "{answers}"
    );

    let out = nodes[0].cli(&["container", "rm", "--on", "all", "--name", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let left = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=iris.session={name}"),
        ])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "session containers left behind");
}

#[tokio::test]
async fn an_exec_that_times_out_leaves_no_process_behind() {
    let nodes = data_network(&["alice"]).await;
    let name = format!("idle-{}", iris::store::random_hex(3));
    let out = nodes[0].cli(&[
        "container",
        "create",
        "--image",
        "iris-probe:latest",
        "--name",
        &name,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer_id = nodes[0].peer_id().await;
    assert_eq!(session_processes(&name, &peer_id).len(), 1);

    let out = nodes[0].cli(&[
        "container",
        "exec",
        "--name",
        &name,
        "--timeout",
        "2s",
        "--",
        "/iris-worker",
        "sleep",
        "300",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("did not finish within"), "{stdout}");
    // The timed-out command is gone; the session itself still runs.
    wait_for("the timed-out command to end", DEADLINE, || async {
        let processes = session_processes(&name, &peer_id);
        eprintln!("{processes:?}");
        (processes.len() == 1 && !processes[0].contains("300")).then_some(())
    })
    .await;
    let out = nodes[0].cli(&[
        "container",
        "exec",
        "--name",
        &name,
        "--",
        "/iris-worker",
        "exit",
        "0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = nodes[0].cli(&["container", "rm", "--name", &name]);
    assert!(out.status.success());
}
