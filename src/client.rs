//! The HTTP client the CLI uses to talk to a node's API. It finds the
//! address in `DIR/iris.toml` (or, with `api.port = 0`, the port the node
//! picked in `DIR/api.port`) and the token in `DIR/api.token`.

use std::path::Path;

use anyhow::{anyhow, Context};
use futures::{Stream, StreamExt};
use serde::{de::DeserializeOwned, Serialize};

use crate::{config::NodeConfig, store::Store};

pub struct ApiClient {
    base: String,
    token: String,
    dir: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn from_dir(dir: &Path) -> anyhow::Result<Self> {
        let config = NodeConfig::load(dir)?;
        let token = Store::new(dir).load_token()?;
        // A node listening on every interface is reached on loopback.
        let host = match config.api.bind {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
            ip if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        // Port 0: the node picked one at start and wrote it down.
        let port = match config.api.port {
            0 => Store::new(dir).load_api_port().with_context(|| {
                format!(
                    "the API port is chosen at start (api.port = 0): is the node in {} running?",
                    dir.display()
                )
            })?,
            port => port,
        };
        Ok(Self {
            base: format!("http://{host}:{port}"),
            token,
            dir: dir.display().to_string(),
            http: reqwest::Client::new(),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = self.execute(request).await?;
        response
            .json()
            .await
            .context("the node sent an answer that is not the expected JSON")
    }

    async fn execute(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request.bearer_auth(&self.token).send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!(
                    "cannot reach the node's API at {}: is `iris run --dir {}` running?",
                    self.base,
                    self.dir
                )
            } else {
                anyhow!("request to {} failed: {e}", self.base)
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(text);
        Err(anyhow!("{message} (HTTP {})", status.as_u16()))
    }

    /// The node's event stream, one JSON value per server-sent event.
    pub async fn events(
        &self,
    ) -> anyhow::Result<impl Stream<Item = anyhow::Result<serde_json::Value>>> {
        let response = self.execute(self.http.get(self.url("/v1/events"))).await?;
        let mut bytes = response.bytes_stream();
        let mut buffer = String::new();
        Ok(async_stream(move |tx| async move {
            while let Some(chunk) = bytes.next().await {
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        let _ = tx.send(Err(anyhow!("event stream broke: {e}"))).await;
                        return;
                    }
                };
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let data: String = block
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    if data.is_empty() {
                        continue; // keep-alive comment
                    }
                    let value =
                        serde_json::from_str(&data).context("malformed event from the node");
                    if tx.send(value).await.is_err() {
                        return;
                    }
                }
            }
        }))
    }
}

/// A stream fed by a task, without pulling in a macro crate for it.
fn async_stream<T, F, Fut>(producer: F) -> impl Stream<Item = T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
