//! The dashboard in a real browser (headless Chromium over WebDriver)
//! against a real 3-node network: what a site's owner and a researcher do
//! with it, as they would do it, by typing and clicking.
//!
//! With `IRIS_SCREENSHOTS=DIR` the pages it visits are saved there
//! (docs/screenshots holds the README's).

mod common;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use common::{
    browser::Browser, job_body, submit, unapproved_data_network, wait_for, wait_job, TestNode,
    DEADLINE,
};
use serde_json::{json, Value};

const STATS: [&str; 3] = ["/iris-worker", "stats", "/workspace/private/data.csv"];

/// Where screenshots go: IRIS_SCREENSHOTS, or a directory that is dropped.
fn screenshots() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("IRIS_SCREENSHOTS") {
        Some(dir) => {
            std::fs::create_dir_all(&dir).unwrap();
            (dir.into(), None)
        }
        None => {
            let tmp = tempfile::tempdir().unwrap();
            (tmp.path().to_path_buf(), Some(tmp))
        }
    }
}

/// Each row of the nodes table as (name, state).
async fn rows(browser: &Browser) -> Vec<(String, String)> {
    let found = browser
        .run("return [...document.querySelectorAll('#nodes tr[data-node]')].map(r => [r.dataset.node, r.dataset.state]);")
        .await;
    serde_json::from_value(found).unwrap_or_default()
}

async fn shows(browser: &Browser, css: &str) -> bool {
    browser.find(css).await.is_some()
}

/// Logs in with the token typed into the page's form.
async fn log_in_by_form(browser: &Browser, node: &TestNode) {
    browser.goto(&node.url("/")).await;
    browser.wait_visible("#login-form", DEADLINE).await;
    browser.type_into("#token", "not-the-token").await;
    browser.click("#login-form button").await;
    let refused = wait_for("the wrong token to be refused", DEADLINE, || async {
        let text = browser.text("#login-error").await;
        (!text.is_empty()).then_some(text)
    })
    .await;
    assert!(refused.contains("invalid API token"), "{refused}");
    browser.type_into("#token", &node.token()).await;
    browser.click("#login-form button").await;
    browser.wait_visible("#app", DEADLINE).await;
    assert_eq!(browser.text("#node-name").await, node.name);
}

#[tokio::test]
async fn the_dashboard_shows_the_network_runs_a_job_and_lets_the_owner_approve() {
    let (shots, _keep) = screenshots();
    let mut nodes = unapproved_data_network(&["alice", "bob", "carol"]).await;
    let browser = Browser::start().await;

    // The researcher on the master logs in and sees every node alive.
    let alice = &nodes[0];
    log_in_by_form(&browser, alice).await;
    let cookies = browser.run("return document.cookie;").await;
    assert_eq!(cookies, "", "the session cookie is readable by scripts");
    wait_for("3 nodes alive on the page", DEADLINE, || async {
        let rows = rows(&browser).await;
        (rows.len() == 3 && rows.iter().all(|(_, s)| s == "alive")).then_some(())
    })
    .await;
    assert!(shows(&browser, "#map g[data-node='carol'][data-state='alive']").await);
    // Bob's owner declares a dataset: its card shows on bob's row.
    common::heart(&nodes[1], 20);
    common::declare_heart(&nodes[1], &[]);
    browser
        .wait_visible(
            "#nodes tr[data-node='bob'] [data-dataset='heart']",
            DEADLINE,
        )
        .await;
    browser.screenshot(&shots.join("network.png")).await;

    // A job typed into the form runs, and its task's exit and logs show.
    browser.click("a[data-page='jobs']").await;
    browser
        .type_into("#job-form input[name='image']", "iris-probe:latest")
        .await;
    browser
        .type_into("#job-form input[name='argv']", &STATS.join(" "))
        .await;
    browser
        .type_into("#job-form input[name='on']", "alice")
        .await;
    browser.click("#job-form button").await;
    browser
        .wait_visible("#jobs tr[data-state='succeeded']", Duration::from_secs(90))
        .await;
    browser
        .wait_visible(
            "#tasks tr[data-task='alice'][data-state='succeeded']",
            DEADLINE,
        )
        .await;
    let exit = browser
        .run("return document.querySelector(\"#tasks tr[data-task='alice'] td:nth-child(3)\").textContent;")
        .await;
    assert_eq!(exit, "0", "the exit code shown");
    browser.screenshot(&shots.join("jobs.png")).await;

    // A file pulled from bob shows as a transfer.
    std::fs::write(
        nodes[1].dir.join("workspace/public/sample.bin"),
        vec![7u8; 3 << 20],
    )
    .unwrap();
    let (code, body) = alice
        .post(
            "/v1/files/get",
            json!({"from": "bob", "path": "public/sample.bin"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    browser.click("a[data-page='transfers']").await;
    browser
        .wait_visible("#transfers tr[data-transfer='public/sample.bin']", DEADLINE)
        .await;
    assert!(browser.text("#transfers").await.contains("100%"));

    // Bob's owner, by a one-time link, approves alice's task on bob.
    let bob = &nodes[1];
    let job = submit(alice, job_body("bob", &STATS)).await;
    let (code, link) = bob.post("/v1/login-links", json!(null)).await;
    assert_eq!(code, 201, "{link}");
    let link_url = bob.url(link["path"].as_str().unwrap());
    browser.goto(&link_url).await;
    browser.wait_visible("#app", DEADLINE).await;
    assert_eq!(browser.url().await, bob.url("/"), "a code stays in the URL");
    browser.click("a[data-page='owner']").await;
    let approve = format!("#approvals button[data-approve='{job}']");
    browser.wait_visible(&approve, DEADLINE).await;
    browser
        .wait_visible("#audit-state [data-verified='true']", DEADLINE)
        .await;
    browser.screenshot(&shots.join("owner.png")).await;
    browser.click(&approve).await;
    assert_eq!(wait_job(alice, &job).await["state"], "succeeded");
    wait_for("the approval to leave the page", DEADLINE, || async {
        (!shows(&browser, &approve).await).then_some(())
    })
    .await;
    let audit = browser.text("#audit").await;
    assert!(audit.contains("decision"), "{audit}");
    // Bob's owner recognises carol as a co-participant of secure sums:
    // the page lists the members, and the policy pins carol's identity.
    let recognise = "#sites button[data-recognise='carol']";
    browser.wait_visible(recognise, DEADLINE).await;
    browser.click(recognise).await;
    browser
        .wait_visible("#sites button[data-forget='carol']", DEADLINE)
        .await;
    let (_, policy) = bob.get("/v1/policy").await.unwrap();
    assert_eq!(policy["recognised"][0]["name"], "carol", "{policy}");
    assert_eq!(
        policy["recognised"][0]["peer_id"].as_str(),
        Some(nodes[2].peer_id().await.as_str())
    );
    // The privacy budget of the whole private area, nothing spent yet.
    let row = "#budgets tr[data-budget='private/']";
    browser.wait_visible(row, DEADLINE).await;
    let budget = browser.text(row).await;
    assert!(
        budget.contains("0.000") && budget.contains("1.000"),
        "{budget}"
    );

    // The link was spent: opened again, it logs nobody in.
    let again = reqwest::get(&link_url).await.unwrap();
    assert_eq!(again.status(), 401);

    // Back on alice's page (its session is its own), carol is killed: the
    // page shows her suspect within 3 s.
    browser.goto(&alice.url("/")).await;
    browser.wait_visible("#app", DEADLINE).await;
    wait_for("carol alive on alice's page", DEADLINE, || async {
        rows(&browser)
            .await
            .contains(&("carol".into(), "alive".into()))
            .then_some(())
    })
    .await;
    // The page against its baseline: the event on alice's own stream.
    let (sink, mut events) = tokio::sync::mpsc::unbounded_channel();
    alice.forward_events(sink).await;
    nodes[2].kill();
    let killed = Instant::now();
    wait_for("carol suspect on alice's page", DEADLINE, || async {
        let state = rows(&browser).await;
        state
            .iter()
            .any(|(name, state)| name == "carol" && state != "alive")
            .then_some(())
    })
    .await;
    let seen = killed.elapsed();
    let mut event_at = None;
    while let Ok((_, event)) = events.try_recv() {
        if event["type"] == "suspect" && event["name"] == "carol" && event_at.is_none() {
            event_at = Some(event["at_ms"].as_u64().unwrap());
        }
    }
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - seen.as_millis() as u64;
    eprintln!(
        "carol killed: suspect event on alice after {:?} ms, on alice's page after {} ms",
        event_at.map(|at| at.saturating_sub(killed_ms)),
        seen.as_millis()
    );
    assert!(
        seen < Duration::from_secs(3),
        "carol turned suspect on the page {seen:?} after she was killed"
    );
    assert!(
        shows(&browser, "#map g[data-node='carol'][data-state='suspect']").await
            || shows(&browser, "#map g[data-node='carol'][data-state='gone']").await
    );
    browser.close().await;
}

/// Logging out ends the session: the page asks for the token again, and
/// the old cookie opens nothing.
#[tokio::test]
async fn logging_out_ends_the_session() {
    let mut node = TestNode::init("solo");
    node.start().await;
    let browser = Browser::start().await;
    log_in_by_form(&browser, &node).await;
    browser.click("#logout").await;
    browser.wait_visible("#login-form", DEADLINE).await;
    browser.goto(&node.url("/")).await;
    browser.wait_visible("#login-form", DEADLINE).await;
    let status: Value = browser
        .run("return fetch('/v1/status').then(r => r.status);")
        .await;
    assert_eq!(status, 401);
    browser.close().await;
}
