//! A connection that closes under a request: a node that closes an idle
//! connection just as its peer starts a request on it, a peer that
//! restarts, a cut TCP connection. Before: the request failed with
//! "connection closed" or "unexpected end of file", and the user's
//! command with it. Now the sender sends it again on a new connection, and
//! a request that must not be carried out twice carries an id, so the
//! receiver answers the repeat with the first answer.

mod common;

use common::{rogue::RoguePeer, *};
use iris_behaviours::{
    Accepted, AnswerFrame, Envelope, FileCall, FileEntry, PeerRequest, TaskCall,
    MAX_CONTROL_RESPONSE,
};

/// Alice lists mallory's files; mallory closes the connection the moment
/// the request arrives, unanswered. Alice sends it again on a new
/// connection, and the listing arrives.
#[tokio::test]
async fn a_request_whose_connection_closes_as_it_arrives_is_sent_again() {
    let nodes = network(&["alice"], KEY).await;
    let alice = &nodes[0];
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let master = rogue.network.master;
    let (listing, seen) = tokio::join!(
        alice.get("/v1/files?node=mallory"),
        rogue.cut_the_first_call(master, 2, DEADLINE, |_| {
            AnswerFrame::seal(Ok(Vec::<FileEntry>::new()), MAX_CONTROL_RESPONSE)
        })
    );
    let (code, body) = listing.unwrap();
    assert_eq!(code, 200, "the listing failed with its connection: {body}");
    assert_eq!(body, serde_json::json!([]));
    assert_eq!(seen.len(), 2, "{seen:?}");
    let listing = |e: &Envelope| matches!(e.request, PeerRequest::Files(FileCall::List(_)));
    assert!(seen.iter().all(listing), "{seen:?}");
}

/// The master runs a task on mallory, which cuts the connection under the
/// `RunTask`. The task is sent again with the same id (so a real site
/// would answer with its first answer instead of starting it twice), and
/// the job goes on instead of failing.
#[tokio::test]
async fn a_task_sent_again_carries_the_id_it_was_first_sent_with() {
    let nodes = data_network(&["alice"]).await;
    let alice = &nodes[0];
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let master = rogue.network.master;
    let job = job_body("mallory", &["/iris-worker", "exit", "0"]);
    let ((code, job), seen) = tokio::join!(
        alice.post("/v1/jobs", job),
        rogue.cut_the_first_call(master, 2, DEADLINE, |_| {
            AnswerFrame::seal(Ok(Accepted), MAX_CONTROL_RESPONSE)
        })
    );
    assert_eq!(code, 201, "{job}");
    let task = &job["tasks"]["mallory"];
    assert_ne!(task["state"], "failed", "{job}");
    let ids: Vec<u64> = seen
        .iter()
        .map(|e| {
            assert!(
                matches!(e.request, PeerRequest::Tasks(TaskCall::Run(_))),
                "{e:?}"
            );
            e.once.expect("a task goes out with an id")
        })
        .collect();
    assert_eq!(ids.len(), 2, "{seen:?}");
    assert_eq!(ids[0], ids[1], "the repeat has another id");
}

/// Two real nodes; alice runs a 3-second command in bob's session, and the
/// TCP connection between them is cut (`ss -K`) in the middle of it.
/// Before: the exec failed with the connection. Now alice sends it again
/// with the same id, bob answers the repeat with the first run's output
/// once it ends, and the command ran once.
#[tokio::test]
async fn a_command_whose_connection_is_cut_mid_run_is_answered_once() {
    let nodes = data_network(&["alice", "bob"]).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    bob.set_policy("sessions", "allow");
    let name = format!("cut-{}", iris::store::random_hex(3));
    alice.owner(&[
        "container",
        "create",
        "--on",
        "bob",
        "--image",
        "iris-probe:latest",
        "--name",
        &name,
    ]);

    let dir = alice.dir_str().to_string();
    let exec_name = name.clone();
    let exec = tokio::task::spawn_blocking(move || {
        std::process::Command::new(IRIS)
            .args([
                "container",
                "exec",
                "--on",
                "bob",
                "--name",
                &exec_name,
                "--",
            ])
            .args(["/iris-worker", "tally", "/workspace/out/tally", "3"])
            .env("IRIS_DIR", dir)
            .output()
            .unwrap()
    });
    // The command has started on bob: its line is in the tally.
    let tally = bob.dir.join(format!("workspace/sessions/{name}/tally"));
    wait_for("the command to start on bob", DEADLINE, || async {
        tally.exists().then_some(())
    })
    .await;
    let ports = [p2p_port(alice).await, p2p_port(bob).await];
    let cut = cut_connections(&ports);
    assert!(cut > 0, "no connection between alice and bob to cut");

    let out = exec.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the exec failed with its connection: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        alice.log().contains("sending it again"),
        "the exec was not sent again; was the connection it went on cut?"
    );
    assert!(
        stdout.contains("runs: 1"),
        "the command ran again: {stdout}"
    );
    let runs = std::fs::read_to_string(&tally).unwrap();
    assert_eq!(
        runs.lines().count(),
        1,
        "bob ran it {} times",
        runs.lines().count()
    );

    alice.owner(&["container", "rm", "--on", "bob", "--name", &name]);
}

async fn p2p_port(node: &TestNode) -> u16 {
    node.status().await["p2p_port"].as_u64().unwrap() as u16
}

/// Kills every established TCP connection to or from `ports` (these
/// nodes' own listening ports, so nothing else is touched); returns how
/// many sockets it killed.
fn cut_connections(ports: &[u16]) -> usize {
    let filter: Vec<String> = ports
        .iter()
        .map(|p| format!("sport = :{p} or dport = :{p}"))
        .collect();
    let out = std::process::Command::new("ss")
        .args(["-K", "-t", "-n", "state", "established"])
        .arg(format!("( {} )", filter.join(" or ")))
        .output()
        .expect("ss runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// Bob leaves while his owner keeps asking for the map. Mallory, connected
/// to bob, never acknowledges the goodbye, so the leave takes its whole
/// grace period. Before: requests in that period failed with 503 "the
/// network task has stopped" (schemathesis found it, with a job request).
/// Now each one sees the network, or no network (409, as after a leave).
#[tokio::test]
async fn requests_during_a_leave_see_the_network_or_none() {
    let nodes = network(&["alice", "bob"], KEY).await;
    let bob = &nodes[1];
    let mut rogue = RoguePeer::join(KEY, &nodes[0].bootstrap().await, "mallory").await;
    rogue.connect(&bob.bootstrap().await).await;
    let left = std::sync::atomic::AtomicBool::new(false);
    let leave = async {
        let answer = bob.post("/v1/network/leave", serde_json::json!({})).await;
        left.store(true, std::sync::atomic::Ordering::SeqCst);
        answer
    };
    let ask = async {
        let mut answers = Vec::new();
        while !left.load(std::sync::atomic::Ordering::SeqCst) {
            let (code, body) = bob.get("/v1/nodes").await.unwrap();
            answers.push((code, body));
        }
        answers
    };
    let ((code, body), answers, ()) = tokio::join!(leave, ask, rogue.stay_silent(DEADLINE / 4));
    assert_eq!(code, 200, "{body}");
    assert!(
        answers.len() > 1,
        "the map was asked for only during the leave"
    );
    let no_network = |body: &serde_json::Value| {
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("in no network"))
    };
    for (code, body) in &answers {
        let fine = *code == 200 || (*code == 409 && no_network(body));
        assert!(fine, "asked for the map during a leave: {code} {body}");
    }
    let (code, body) = bob.get("/v1/nodes").await.unwrap();
    assert!(
        code == 409 && no_network(&body),
        "after the leave: {code} {body}"
    );
}
