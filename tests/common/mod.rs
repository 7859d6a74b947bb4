//! A harness that runs real `iris` processes on loopback ports.
#![allow(dead_code)]

use std::{
    future::Future,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

pub mod browser;
pub mod data;
pub mod rogue;
pub mod sums;

#[allow(unused_imports)]
pub use data::*;

/// A network key long enough to be accepted (16 characters at least).
pub const KEY: &str = "test-network-key-0123456789";

pub const IRIS: &str = env!("CARGO_BIN_EXE_iris");

/// Generous: the machine may be busy with other tests.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it returns `Some`, or panics after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct TestNode {
    pub name: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub api_port: u16,
    child: Option<Child>,
    http: reqwest::Client,
    /// Its peer id once it ran: the label of every container it made.
    peer: Option<String>,
}

impl TestNode {
    /// `iris init` in a fresh temporary directory, with fast liveness
    /// timings so tests do not wait for the defaults.
    pub fn init(name: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(name);
        let mut node = Self::init_in(name, &dir);
        node._tmp = Some(tmp);
        node
    }

    pub fn init_in(name: &str, dir: &Path) -> Self {
        Self::init_in_with(name, dir, &[])
    }

    /// [`TestNode::init_in`] with more arguments for `iris init`.
    pub fn init_in_with(name: &str, dir: &Path, extra: &[&str]) -> Self {
        let mut args = vec![
            "init",
            "--dir",
            dir.to_str().unwrap(),
            "--name",
            name,
            "--p2p-port",
            "0",
            "--p2p-listen",
            "127.0.0.1",
            // Any free port, chosen by the node as it binds: a port picked
            // here and bound later could be taken in between.
            "--api-port",
            "0",
        ];
        args.extend_from_slice(extra);
        let out = iris(&args);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let node = Self {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            _tmp: None,
            api_port: 0,
            child: None,
            http: reqwest::Client::new(),
            peer: None,
        };
        node.set_liveness(500, 2000, 4000);
        node
    }

    pub fn set_liveness(&self, probe_interval_ms: u64, suspect_ms: u64, gone_ms: u64) {
        let path = self.dir.join("iris.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut text: String = text
            .lines()
            .filter(|l| {
                !l.starts_with("probe_interval_ms")
                    && !l.starts_with("suspect_after_ms")
                    && !l.starts_with("gone_after_ms")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        text = text.replace(
            "[liveness]\n",
            &format!("[liveness]\nprobe_interval_ms = {probe_interval_ms}\nsuspect_after_ms = {suspect_ms}\ngone_after_ms = {gone_ms}\n"),
        );
        std::fs::write(path, text).unwrap();
    }

    pub fn dir_str(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// Starts `iris run` and waits until its API answers.
    pub async fn start(&mut self) {
        self.start_with_env(&[]).await
    }

    /// [`TestNode::start`] with extra environment variables.
    pub async fn start_with_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        // The previous run's log moves aside (kept for a failure's report).
        let _ = std::fs::rename(
            self.dir.join("node.log"),
            self.dir.join("node.previous.log"),
        );
        let log = std::fs::File::create(self.dir.join("node.log")).unwrap();
        // The previous run's port must not be mistaken for this one's.
        let port_file = self.dir.join("api.port");
        let _ = std::fs::remove_file(&port_file);
        let child = Command::new(IRIS)
            .args(["run", "--dir", self.dir_str()])
            .env("RUST_LOG", "info,iris=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited with {status}: {}", self.name, self.log());
            }
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                self.api_port = port;
                if let Ok((200, status)) = self.get("/v1/status").await {
                    self.peer = status["peer_id"].as_str().map(String::from);
                    return;
                }
            }
            if start.elapsed() > DEADLINE {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "{}'s API did not come up in {DEADLINE:?}; the end of its log:\n{}",
                    self.name,
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node runs").id()
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait for the process to exit; it must exit cleanly,
    /// with every background task ended.
    pub async fn terminate(&mut self) {
        self.signal("-TERM");
        let mut child = self.child.take().unwrap();
        let status = wait_for("the node to exit after SIGTERM", DEADLINE, || {
            let status = child.try_wait().unwrap();
            async move { status }
        })
        .await;
        let log = self.log();
        assert!(
            status.success(),
            "{} exited with {status}: {log}",
            self.name
        );
        assert!(
            log.contains("every background task ended"),
            "{} did not end its tasks: {log}",
            self.name
        );
    }

    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("api.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    pub async fn get(&self, path: &str) -> reqwest::Result<(u16, Value)> {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(self.token())
            .send()
            .await?;
        let code = response.status().as_u16();
        Ok((code, response.json().await.unwrap_or(Value::Null)))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(self.token())
            .json(&body)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        let code = response.status().as_u16();
        (code, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn status(&self) -> Value {
        let (code, body) = self.get("/v1/status").await.unwrap();
        assert_eq!(code, 200, "{body}");
        body
    }

    pub async fn peer_id(&self) -> String {
        self.status().await["peer_id"].as_str().unwrap().to_string()
    }

    /// The address others join through.
    pub async fn bootstrap(&self) -> String {
        let status = self.status().await;
        status["addrs"][0]
            .as_str()
            .expect("node listens for peers")
            .to_string()
    }

    pub async fn create_network(&self, key: &str) {
        let (code, body) = self
            .post("/v1/network", json!({"name": "lab", "key": key}))
            .await;
        assert_eq!(code, 201, "create: {body}");
    }

    pub async fn join(&self, key: &str, via: &TestNode) -> (u16, Value) {
        let bootstrap = via.bootstrap().await;
        self.post(
            "/v1/network/join",
            json!({"key": key, "bootstrap": bootstrap}),
        )
        .await
    }

    /// name -> state, as this node sees the map.
    pub async fn states(&self) -> Vec<(String, String)> {
        match self.get("/v1/nodes").await {
            Ok((200, Value::Array(nodes))) => nodes
                .iter()
                .map(|n| {
                    (
                        n["name"].as_str().unwrap().into(),
                        n["state"].as_str().unwrap().into(),
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The map entry this node shows for `name` (as in `GET /v1/nodes`).
    pub async fn view_of(&self, name: &str) -> Option<Value> {
        let (_, nodes) = self.get("/v1/nodes").await.ok()?;
        nodes
            .as_array()?
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
    }

    pub async fn state_of(&self, name: &str) -> Option<String> {
        self.states()
            .await
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// Waits until this node sees `name` in `state`.
    pub async fn wait_state(&self, name: &str, state: &str) {
        wait_for(
            &format!("{} to see {name} {state}", self.name),
            DEADLINE,
            || async { (self.state_of(name).await.as_deref() == Some(state)).then_some(()) },
        )
        .await;
    }

    /// Waits until this node's map holds exactly `names`, all alive.
    pub async fn wait_all_alive(&self, names: &[&str]) {
        let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        want.sort();
        // What it saw last, for the message if it never sees them all.
        let seen = std::sync::Mutex::new(Vec::new());
        let waited = tokio::time::timeout(
            DEADLINE,
            wait_for("every node alive", DEADLINE * 2, || async {
                let states = self.states().await;
                let mut alive: Vec<String> = states
                    .iter()
                    .filter(|(_, s)| s == "alive")
                    .map(|(n, _)| n.clone())
                    .collect();
                alive.sort();
                let done = alive == want && states.len() == want.len();
                *seen.lock().unwrap() = states;
                done.then_some(())
            }),
        )
        .await;
        let seen = seen.lock().unwrap();
        let name = &self.name;
        assert!(waited.is_ok(), "timed out after {DEADLINE:?} waiting for {name} to see {want:?} alive; it sees {seen:?}");
    }

    /// Runs the CLI against this node (by `IRIS_DIR`: a command after `--` stays last).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(IRIS)
            .args(args)
            .env("IRIS_DIR", self.dir_str())
            .output()
            .unwrap()
    }
}

/// Removes the containers the node `peer` made, by their label.
fn remove_containers_of(peer: &str) {
    let listed = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=iris.node={peer}")])
        .output();
    let Ok(listed) = listed else { return };
    let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(String::from)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process ignores SIGKILL until continued on some kernels.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            // A node killed leaves its containers (a task's, a warm
            // worker's); its next start would remove them, but there is none.
            if let Some(peer) = &self.peer {
                remove_containers_of(peer);
            }
        }
        if std::thread::panicking() {
            self.keep_log();
        }
    }
}

impl TestNode {
    /// A failed test's nodes leave their logs behind, in
    /// `target/tmp/failed/<test>/<node>.log`: the temporary directory
    /// goes, and a flaky failure must still be explained afterwards.
    fn keep_log(&self) {
        let test = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .replace("::", "-");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("failed")
            .join(test);
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        for (from, to) in [("node.log", ""), ("node.previous.log", ".previous")] {
            let to = dir.join(format!("{}{to}.log", self.name));
            if std::fs::copy(self.dir.join(from), &to).is_ok() {
                eprintln!("{}'s log is kept in {}", self.name, to.display());
            }
        }
    }
}

/// The probe image tar that docker/build-images.sh makes: the worker with
/// the probes tests attack with (`iris-probe:latest`).
pub fn probe_tar() -> &'static str {
    let tar = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/.build/iris-probe.tar");
    assert!(
        Path::new(tar).exists(),
        "{tar} is missing: run docker/build-images.sh (scripts/test.sh does)"
    );
    tar
}

pub fn iris(args: &[&str]) -> Output {
    Command::new(IRIS).args(args).output().unwrap()
}

/// Starts a network of `names.len()` nodes: the first creates it, each next
/// one joins through the one before it (so most join via a non-genesis node).
pub async fn network(names: &[&str], key: &str) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = names.iter().map(|n| TestNode::init(n)).collect();
    for node in nodes.iter_mut() {
        node.start().await;
    }
    nodes[0].create_network(key).await;
    for i in 1..nodes.len() {
        let (code, body) = nodes[i].join(key, &nodes[i - 1]).await;
        assert_eq!(code, 200, "{} join: {body}", nodes[i].name);
    }
    for node in &nodes {
        node.wait_all_alive(names).await;
    }
    nodes
}

impl TestNode {
    /// Streams this node's events into `sink` as (node name, event) pairs,
    /// from a background task, until the node stops.
    pub async fn forward_events(&self, sink: tokio::sync::mpsc::UnboundedSender<(String, Value)>) {
        use futures::StreamExt;
        let response = self
            .http
            .get(self.url("/v1/events"))
            .bearer_auth(self.token())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let name = self.name.clone();
        tokio::spawn(async move {
            let mut bytes = response.bytes_stream();
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = bytes.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    for data in block.lines().filter_map(|l| l.strip_prefix("data:")) {
                        if let Ok(event) = serde_json::from_str(data.trim()) {
                            if sink.send((name.clone(), event)).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
    }
}
