//! A real browser for the dashboard's tests: headless Chromium driven over
//! the W3C WebDriver protocol by Debian's `chromedriver`, which picks its
//! own port. Just the few commands the tests need, as plain JSON.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use base64::Engine;
use serde_json::{json, Value};

const CHROMEDRIVER: &str = "chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The element key of the W3C protocol.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Self {
        let (driver, port) = start_driver();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut browser = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http,
        };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1360,900"],
            },
        }}});
        let session = browser.command("POST", "/session", capabilities).await;
        let id = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// A command whose failure may be expected: the page redraws its
    /// tables, and an element found a moment ago may be gone ("stale").
    async fn try_command(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let response = request.send().await.expect("chromedriver answers");
        let status = response.status();
        let answer: Value = response.json().await.expect("chromedriver sends JSON");
        if status.is_success() {
            Ok(answer["value"].clone())
        } else {
            Err(answer["value"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string())
        }
    }

    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.command("GET", "/url", Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Runs `script` in the page (as a function body) and returns what it
    /// returns.
    pub async fn run(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// The element `css` selects, if the page has one.
    pub async fn find(&self, css: &str) -> Option<String> {
        let query = json!({"using": "css selector", "value": css});
        let found = self.try_command("POST", "/elements", query).await.ok()?;
        found.as_array()?.first()?[ELEMENT]
            .as_str()
            .map(String::from)
    }

    /// Waits for `css` to select a visible element, and returns it.
    pub async fn wait_visible(&self, css: &str, deadline: Duration) -> String {
        super::wait_for(&format!("'{css}' on the page"), deadline, || async {
            let element = self.find(css).await?;
            let path = format!("/element/{element}/displayed");
            let shown = self.try_command("GET", &path, Value::Null).await.ok()?;
            shown.as_bool()?.then_some(element)
        })
        .await
    }

    /// Clicks the element as a user would.
    pub async fn click(&self, css: &str) {
        super::wait_for(&format!("a click on '{css}'"), super::DEADLINE, || async {
            let element = self.wait_visible(css, super::DEADLINE).await;
            let path = format!("/element/{element}/click");
            self.try_command("POST", &path, json!({})).await.ok()
        })
        .await;
    }

    /// Types `text` into the element, after what it holds.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_visible(css, super::DEADLINE).await;
        self.command("POST", &format!("/element/{element}/clear"), json!({}))
            .await;
        self.command(
            "POST",
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        super::wait_for(&format!("the text of '{css}'"), super::DEADLINE, || async {
            let element = self.wait_visible(css, super::DEADLINE).await;
            let path = format!("/element/{element}/text");
            let text = self.try_command("GET", &path, Value::Null).await.ok()?;
            Some(text.as_str().unwrap_or_default().to_string())
        })
        .await
    }

    /// Saves what the window shows as a PNG.
    pub async fn screenshot(&self, path: &Path) {
        let data = self.command("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64"))
            .expect("valid base64");
        std::fs::write(path, png).unwrap();
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = self.command("DELETE", "", Value::Null).await;
        self.stop_driver();
    }

    fn stop_driver(&mut self) {
        // The driver's group holds Chromium's processes too.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(None) = self.driver.try_wait() {
            self.stop_driver();
        }
    }
}

/// Starts chromedriver on a port of its choosing, and returns it with the
/// port. With `--port=0` it takes a free IPv4 port and then wants the same
/// number on IPv6, which another process may hold at that moment: then it
/// exits at once ("port not available"), and another start picks another
/// port. Any other exit fails the test with what the driver said.
fn start_driver() -> (Child, u16) {
    const ATTEMPTS: usize = 5;
    let mut said = Vec::new();
    for _ in 0..ATTEMPTS {
        let mut driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdout(Stdio::piped())
            // Its errors, as its output, in the order they come.
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {CHROMEDRIVER} ({e}): install Debian's chromium and chromium-driver (scripts/test.sh does)")
            });
        let errors = driver.stderr.take().expect("piped stderr");
        let errors = std::thread::spawn(move || {
            BufReader::new(errors)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        match read_port(&mut driver) {
            Ok(port) => return (driver, port),
            Err(mut output) => {
                let _ = driver.wait();
                output.extend(errors.join().unwrap_or_default());
                let busy = output
                    .iter()
                    .any(|line| line.to_lowercase().contains("port not available"));
                said.push(output.join(" | "));
                if !busy {
                    break;
                }
            }
        }
    }
    panic!(
        "{CHROMEDRIVER} exited without saying its port; it said: {}",
        said.join(" // ")
    );
}

/// The port chromedriver says it listens on, or all it said before it
/// exited without one.
fn read_port(driver: &mut Child) -> Result<u16, Vec<String>> {
    let out = driver.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(out).lines();
    let mut said = Vec::new();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.split("started successfully on port ").nth(1) {
            let port = rest.trim_end_matches('.').trim().parse().expect("a port");
            // Keep draining, so the driver never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(port);
        }
        said.push(line);
    }
    Err(said)
}
