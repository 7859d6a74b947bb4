//! The API's own surface, against a real node: the OpenAPI document lists
//! exactly the router's routes, `/metrics` serves what docs/metrics.md
//! lists, and browsers' sessions are what the dashboard promises
//! (HttpOnly, SameSite=Strict, no cross-origin writes).

mod common;

use common::{data_network, job_body, submit, wait_job, TestNode};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

async fn document(node: &TestNode) -> Value {
    let (code, document) = node.get("/v1/openapi.json").await.unwrap();
    assert_eq!(code, 200, "{document}");
    document
}

/// The path with each `{param}` filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|part| if part.starts_with('{') { "x" } else { part })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_only_them() {
    let mut node = TestNode::init("alice");
    node.start().await;
    let document = document(&node).await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let http = reqwest::Client::new();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() > 30, "{} paths", paths.len());
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            for (status, response) in operation["responses"].as_object().unwrap() {
                assert!(
                    response["description"].is_string(),
                    "{method} {path} {status}: no description"
                );
            }
        }
    }
    for (path, item) in paths {
        for method in METHODS {
            let documented = item.get(method.to_lowercase()).is_some();
            let url = node.url(&concrete(path));
            let request = http.request(Method::from_bytes(method.as_bytes()).unwrap(), &url);
            let response = request.send().await.unwrap();
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            if !documented {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}: {body}"
                );
                continue;
            }
            // Without a token, a documented route answers from its handler
            // or its guard, never from the router's fallbacks.
            assert!(
                !body.contains("no such route") && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not routed: {status} {body}"
            );
            let open = item[method.to_lowercase()]["security"] == json!([{}]);
            if !open {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} needs no token"
                );
            }
        }
    }
    // The other way round: a route is only ever registered with its
    // description (utoipa-axum's `routes!`), never by a bare `.route(`.
    let source = include_str!("../src/api/mod.rs");
    assert!(
        !source.contains(".route("),
        "src/api/mod.rs registers a route the document cannot see"
    );
    assert_eq!(
        source.matches(".routes(routes!(").count(),
        paths.len(),
        "each path is registered once, with its description"
    );
}

/// The metric names docs/metrics.md lists.
fn documented_metrics() -> Vec<String> {
    include_str!("../docs/metrics.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `iris_"))
        .map(|rest| format!("iris_{}", rest.split('`').next().unwrap()))
        .collect()
}

async fn metrics(node: &TestNode) -> String {
    let response = reqwest::Client::new()
        .get(node.url("/metrics"))
        .bearer_auth(node.token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    response.text().await.unwrap()
}

/// The value of the first sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

#[tokio::test]
async fn metrics_count_what_the_nodes_did() {
    let nodes = data_network(&["alice", "bob"]).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    let argv = ["/iris-worker", "stats", "/workspace/private/data.csv"];
    let id = submit(alice, job_body("bob", &argv)).await;
    assert_eq!(wait_job(alice, &id).await["state"], "succeeded");

    let unauthorized = reqwest::get(alice.url("/metrics")).await.unwrap();
    assert_eq!(unauthorized.status(), 401);

    let at_alice = metrics(alice).await;
    let documented = documented_metrics();
    assert!(documented.len() >= 12, "{documented:?}");
    for name in &documented {
        assert!(
            at_alice.lines().any(|l| l.starts_with(name.as_str())),
            "{name} is documented but not served"
        );
    }
    for line in at_alice.lines().filter(|l| l.starts_with("# TYPE")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(
            documented.iter().any(|d| d.starts_with(name)),
            "{name} is served but not documented"
        );
    }
    assert_eq!(sample(&at_alice, r#"iris_nodes{state="alive"}"#), 2.0);
    assert_eq!(sample(&at_alice, r#"iris_jobs{state="succeeded"}"#), 1.0);
    assert_eq!(sample(&at_alice, r#"iris_tasks{state="succeeded"}"#), 1.0);
    assert!(sample(&at_alice, r#"iris_api_requests_total{outcome="served"}"#) >= 1.0);
    assert!(sample(&at_alice, r#"iris_api_requests_total{outcome="refused"}"#) >= 1.0);

    let at_bob = metrics(bob).await;
    assert_eq!(sample(&at_bob, "iris_task_duration_seconds_count"), 1.0);
    assert!(sample(&at_bob, "iris_audit_entries") >= 3.0);
    assert!(sample(&at_bob, r#"iris_peer_requests_total{outcome="served"}"#) >= 1.0);
    let control_in = at_bob
        .lines()
        .find(|l| {
            l.starts_with("iris_bytes_total")
                && l.contains(r#"protocol="control""#)
                && l.contains(r#"direction="in""#)
        })
        .unwrap();
    let bytes: f64 = control_in.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(bytes > 100.0, "{control_in}");
    assert!(
        sample(
            &at_bob,
            r#"iris_messages_total{protocol="map",direction="in"}"#
        ) >= 1.0
    );
}

#[tokio::test]
async fn a_browser_session_is_httponly_strict_and_refuses_cross_origin_writes() {
    let mut node = TestNode::init("alice");
    node.start().await;
    let http = reqwest::Client::new();
    let wrong = http
        .post(node.url("/v1/session"))
        .json(&json!({"token": "guess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let login = http
        .post(node.url("/v1/session"))
        .json(&json!({"token": node.token()}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 204);
    let set = login.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains(&node.token()), "the token is the cookie");
    let cookie = set.split(';').next().unwrap().to_string();
    let own = format!("http://127.0.0.1:{}", node.api_port);

    let read = http
        .get(node.url("/v1/status"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "the session reads");
    for (origin, expected) in [
        (own.as_str(), StatusCode::CREATED),
        ("http://127.0.0.1:1", StatusCode::FORBIDDEN),
        ("http://evil.example", StatusCode::FORBIDDEN),
        ("null", StatusCode::FORBIDDEN),
    ] {
        let write = http
            .post(node.url("/v1/login-links"))
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, origin)
            .send()
            .await
            .unwrap();
        assert_eq!(write.status(), expected, "a write from {origin}");
    }
    // A cross-site fetch without an Origin header still says where it is from.
    let write = http
        .post(node.url("/v1/network/leave"))
        .header(header::COOKIE, &cookie)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::FORBIDDEN);

    // `iris ui --no-open` prints a link that logs in once and leaves no
    // code behind: a redirect to the bare page.
    let printed = node.cli(&["ui", "--no-open"]);
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let link = String::from_utf8_lossy(&printed.stdout).trim().to_string();
    assert!(link.starts_with(&format!("{own}/login?code=")), "{link}");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let opened = no_redirects.get(&link).send().await.unwrap();
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    assert_eq!(opened.headers()[header::LOCATION], "/");
    let session = opened.headers()[header::SET_COOKIE].to_str().unwrap();
    let session = session.split(';').next().unwrap().to_string();
    let read = http
        .get(node.url("/v1/status"))
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "the link's session reads");
    let again = no_redirects.get(&link).send().await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::UNAUTHORIZED,
        "a link works once"
    );

    let out = http
        .post(node.url("/v1/session/logout"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let after = http
        .get(node.url("/v1/status"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401, "the session outlived its logout");
}
