//! Attacks by a member that has the network key and misbehaves: a rogue
//! peer (tests/common/rogue.rs) against real `iris` processes. Each test is
//! an attack that worked on the code before its defence. These are the
//! attacks on data (files, jobs, images); those on membership are in
//! tests/adversarial_membership.rs.

mod common;

use std::time::{Duration, Instant};

use common::{
    rogue::{version_on_disk, RoguePeer},
    *,
};
use iris_behaviours::{AnswerFrame, DescribeFile, FileManifest, ListFiles, Refusal, RefusalKind};

/// A member asks for the manifests of many large files at once. Each one is
/// a whole-file hash: unbounded, they take every core and as many threads.
/// The node must serve a few at a time, refuse the rest as busy, and keep
/// answering its own user.
#[tokio::test]
async fn a_flood_of_manifest_requests_is_refused_as_busy_and_the_node_stays_responsive() {
    let nodes = network(&["alice"], KEY).await;
    let alice = &nodes[0];
    let public = alice.dir.join("workspace/public/flood");
    std::fs::create_dir_all(&public).unwrap();
    let data = vec![7u8; 8 << 20];
    for i in 0..64 {
        std::fs::write(public.join(format!("f{i}.bin")), &data).unwrap();
    }
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let master = rogue.network.master;
    let flood: Vec<DescribeFile> = (0..64)
        .map(|i| DescribeFile {
            path: format!("public/flood/f{i}.bin"),
        })
        .collect();
    let answering = tokio::spawn(async move { rogue.calls(master, flood).await });
    // Meanwhile the node's own user is answered promptly.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    alice.status().await;
    let status_took = started.elapsed();
    let answers = answering.await.unwrap();
    let busy = answers
        .iter()
        .filter(|a| {
            matches!(
                a,
                Ok(Err(Refusal {
                    kind: RefusalKind::Busy,
                    ..
                }))
            )
        })
        .count();
    let served = answers.iter().filter(|a| matches!(a, Ok(Ok(_)))).count();
    assert!(busy > 0, "no request of the flood was refused as busy");
    assert!(served > 0, "nothing was served");
    assert_eq!(busy + served, 64, "{answers:?}");
    assert!(
        status_took < Duration::from_secs(5),
        "the status took {status_took:?} during the flood"
    );
}

/// A member that stays connected and alive but never answers: before, the
/// master's `job run` waited for its acknowledgement for a day. Now a plain
/// request gets 30 s, and the task fails with the reason.
#[tokio::test]
async fn a_member_that_never_answers_fails_its_task_within_a_minute() {
    let nodes = data_network(&["alice"]).await;
    let alice = &nodes[0];
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let silent = tokio::spawn(async move {
        rogue.stay_silent(Duration::from_secs(90)).await;
    });
    let started = Instant::now();
    let (code, job) = alice
        .post(
            "/v1/jobs",
            serde_json::json!({"image": "iris-probe:latest", "on": "mallory", "argv": ["/iris-worker", "exit", "0"]}),
        )
        .await;
    assert_eq!(code, 201, "{job}");
    let task = &job["tasks"]["mallory"];
    assert_eq!(task["state"], "failed", "{job}");
    assert!(
        task["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no answer within 30 s"),
        "{job}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    silent.abort();
}

/// A member answers a call with far more than the call's answer can
/// hold: here, mallory refuses a task with a 6 MiB reason. Before: any
/// answer could be 8 MiB; the master read it whole and kept the reason as
/// the task's error, in its job record and in every answer about the job.
/// Now each call has a bound of its own (8 KiB for a task's
/// acknowledgement), checked on the frame's length before its body is
/// read, and the task fails saying so.
#[tokio::test]
async fn an_answer_larger_than_its_call_allows_is_refused_unread() {
    let nodes = data_network(&["alice"]).await;
    let alice = &nodes[0];
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let master = rogue.network.master;
    let huge = Refusal {
        kind: RefusalKind::Failed,
        reason: "x".repeat(6 << 20),
    };
    let job = job_body("mallory", &["/iris-worker", "exit", "0"]);
    let ((code, job), seen) = tokio::join!(
        alice.post("/v1/jobs", job),
        rogue.answer_calls(master, 1, DEADLINE, |_, _| {
            Some(AnswerFrame::refused(huge.clone()))
        })
    );
    let shown: String = job.to_string().chars().take(600).collect();
    assert_eq!(code, 201, "{shown}");
    assert_eq!(seen.len(), 1, "mallory was asked nothing");
    let task = &job["tasks"]["mallory"];
    assert_eq!(task["state"], "failed", "{shown}");
    let error = task["error"].as_str().unwrap_or_default();
    assert!(
        error.len() < 4096,
        "the task's error is {} bytes",
        error.len()
    );
    assert!(error.contains("exceeds the limit"), "{error}");
}

/// Is this answer a refusal (of any kind)?
fn refused(answer: &Result<Result<FileManifest, Refusal>, String>) -> bool {
    matches!(answer, Ok(Err(_)))
}

/// A member reads another site's results. Before: carol asked alice for
/// `public/jobs/<job>/bob/...`, which alice had gathered, and got bob's
/// result; she could also ask bob for his job outputs directly. Now a job's
/// outputs are served only to the node that submitted the job, and what a
/// node gathered is served to no one.
#[tokio::test]
async fn a_member_cannot_read_another_sites_job_outputs_or_what_the_master_gathered() {
    let nodes = data_network(&["alice", "bob"]).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    let (id, gathered) = stats_on_bob_gathered(alice).await;
    assert_eq!(gathered["files"].as_array().unwrap().len(), 1, "{gathered}");

    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let alice_peer = rogue.network.master;
    let bob_peer = rogue.connect(&bob.bootstrap().await).await;
    // Every place the result is or was kept, on both nodes.
    let paths = [
        format!("public/jobs/{id}/bob/stats.json"),
        format!("public/jobs/{id}/stats.json"),
        format!("gathered/{id}/bob/stats.json"),
        format!("outputs/{id}/stats.json"),
    ];
    let mut chunks_asked = 0;
    for (peer, node, dir) in [
        (alice_peer, "alice", &alice.dir),
        (bob_peer, "bob", &bob.dir),
    ] {
        for path in &paths {
            let manifest = rogue.call(peer, DescribeFile { path: path.clone() }).await;
            assert!(
                refused(&manifest),
                "{node} served {path} to mallory: {manifest:?}"
            );
            // The chunk stream, asked for the file as it is on disk: only
            // who asks may make it refuse.
            let Some(version) = version_on_disk(&dir.join("workspace").join(path)) else {
                continue;
            };
            chunks_asked += 1;
            let chunk = rogue.chunk(peer, path, version, 0).await;
            assert!(chunk.is_err(), "{node} served a chunk of {path}: {chunk:?}");
        }
        let Ok(Ok(entries)) = rogue.call(peer, ListFiles).await else {
            panic!("{node} did not list its files");
        };
        assert!(
            entries.iter().all(|e| !e.path.contains(&id)),
            "{node} lists the job's files to mallory: {entries:?}"
        );
    }
    assert!(chunks_asked >= 2, "the result was on neither node's disk");
}

/// A job's container plants links in its outputs before the master
/// gathers them. Before: on alice, where the master's own task wrote into
/// the directory the gather fills, `bob/.r.txt.partial` and `alice/r.txt`
/// as links made the gather overwrite a file in alice's node directory and
/// create another. Now gathered files go where no container writes, and
/// nothing is opened through a link.
#[tokio::test]
async fn links_planted_in_job_outputs_make_the_gather_write_nothing_outside_the_workspace() {
    let nodes = data_network(&["alice", "bob"]).await;
    let alice = &nodes[0];
    let victim = alice.dir.join("victim");
    let created = alice.dir.join("created");
    std::fs::write(&victim, "precious\n").unwrap();
    let plant = [
        "/iris-worker".to_string(),
        "plant".into(),
        "r.txt".into(),
        format!("bob/.r.txt.partial={}", victim.display()),
        format!("bob/.r.txt.partial.json={}", victim.display()),
        format!("alice/r.txt={}", created.display()),
        format!("leak.txt={}", alice.dir.join("identity.key").display()),
    ];
    let argv: Vec<&str> = plant.iter().map(String::as_str).collect();
    let id = submit(alice, job_body("all", &argv)).await;
    let job = wait_job(alice, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let (code, gathered) = alice
        .post(&format!("/v1/jobs/{id}/gather"), serde_json::json!({}))
        .await;
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "the gather wrote through a planted link ({code}: {gathered})"
    );
    assert!(
        !created.exists(),
        "the gather created a file outside the workspace ({code}: {gathered})"
    );
    // The honest results arrived, and the link to the identity was not
    // taken for an output.
    assert_eq!(code, 200, "{gathered}");
    let mut files: Vec<&str> = gathered["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            format!("gathered/{id}/alice/r.txt"),
            format!("gathered/{id}/bob/r.txt")
        ],
        "{gathered}"
    );
    for node in ["alice", "bob"] {
        let got = std::fs::read_to_string(
            alice
                .dir
                .join(format!("workspace/gathered/{id}/{node}/r.txt")),
        )
        .unwrap();
        assert_eq!(got, "an honest result\n");
    }
}

/// Runs the docker CLI; true when it succeeded.
fn docker(args: &[&str], stdin: Option<&str>) -> bool {
    use std::io::Write;
    let mut child = std::process::Command::new("docker")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait().unwrap().success()
}

/// The id the engine's tag names.
fn image_id(tag: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", tag])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The master ships a tar tagged like an image the node already has, but
/// holding another image. Before: the node loaded it and the tag meant the
/// shipped image from then on, for every job that named it. Now the load
/// is refused with the reason, the tar is not kept, and only the node's
/// owner can load it, with `--force`.
#[tokio::test]
async fn a_shipped_tar_cannot_retag_an_image_the_node_has() {
    let nodes = network(&["alice", "bob"], KEY).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    // This test's own tag and images (the nodes share one engine).
    let tag = format!("iris-retag-{}:latest", iris::store::random_hex(4));
    let other = format!("{tag}-other");
    let dockerfile = "FROM iris-probe:latest\nLABEL iris.test=retag\n";
    assert!(docker(
        &["build", "-q", "-t", &other, "-"],
        Some(dockerfile)
    ));
    assert!(docker(&["tag", &other, &tag], None));
    let tar = alice.dir.join("retag.tar");
    assert!(docker(&["save", &tag, "-o", tar.to_str().unwrap()], None));
    // Here the tag names the worker; the tar says it names the other image.
    assert!(docker(&["tag", "iris-probe:latest", &tag], None));
    let meant = image_id(&tag);

    let out = alice.cli(&["images", "push", tar.to_str().unwrap(), "--to", "bob"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let retagged = image_id(&tag) != meant;
    let kept = bob.dir.join("workspace/image/retag.tar").exists();
    let out = bob.cli(&["images", "load", "--force", tar.to_str().unwrap()]);
    let forced = out.status.success() && image_id(&tag) == image_id(&other);
    let _ = docker(&["rmi", &tag, &other], None);

    assert!(!retagged, "the shipped tar retagged {tag}: {said}");
    assert!(said.contains("name another image"), "{said}");
    assert!(!kept, "bob kept the refused tar");
    assert!(forced, "the owner could not load it with --force: {out:?}");
}

/// The master pushes a file to a member that never answers. Before: a
/// fetch was answered only when the whole transfer was done, so the push
/// waited a day. Now the target acknowledges at once and is followed with
/// short status requests: a silent one fails the push within a minute.
#[tokio::test]
async fn a_push_to_a_member_that_never_answers_fails_within_a_minute() {
    let nodes = network(&["alice"], KEY).await;
    let alice = &nodes[0];
    let source = alice.dir.join("model.bin");
    std::fs::write(&source, vec![1u8; 1 << 20]).unwrap();
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let silent = tokio::spawn(async move {
        rogue.stay_silent(Duration::from_secs(90)).await;
    });
    let started = Instant::now();
    let (code, answers) = alice
        .post(
            "/v1/files/put",
            serde_json::json!({"source": source.display().to_string(), "to": "mallory"}),
        )
        .await;
    assert_eq!(code, 200, "{answers}");
    let answer = &answers[0];
    assert_eq!(answer["ok"], false, "{answers}");
    assert!(
        answers.to_string().contains("no answer within 30 s"),
        "{answers}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    silent.abort();
}
