//! The typed client of a node's REST API, what the CLI uses. It finds the
//! address in `DIR/iris.toml` (or, with `api.port = 0`, the port the node
//! picked in `DIR/api.port`) and the token in `DIR/api.token`. Every method
//! sends and reads the types of [`crate::api_types`], as the server does.

use std::{path::Path, time::Duration};

use anyhow::{anyhow, Context};
use futures::{Stream, StreamExt};
use iris_behaviours::{FileEntry, NetworkConfig};
use serde::{de::DeserializeOwned, Serialize};

use crate::{api_types::*, config::NodeConfig, events::Event, store::Store};

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

    /// A one-time login URL for the dashboard (`iris ui`).
    pub async fn login_url(&self) -> anyhow::Result<String> {
        let link: LoginLink = self.post("/v1/login-links", &()).await?;
        Ok(self.url(&link.path))
    }

    pub async fn datasets(&self, query: &DatasetsQuery) -> anyhow::Result<Vec<DatasetHolder>> {
        self.get_with("/v1/datasets", query).await
    }

    pub async fn add_dataset(
        &self,
        body: &AddDataset,
    ) -> anyhow::Result<iris_behaviours::DatasetCard> {
        self.post("/v1/datasets", body).await
    }

    pub async fn reload_datasets(&self) -> anyhow::Result<Vec<iris_behaviours::DatasetCard>> {
        self.post("/v1/datasets/reload", &()).await
    }

    pub async fn remove_dataset(
        &self,
        name: &str,
    ) -> anyhow::Result<Vec<iris_behaviours::DatasetCard>> {
        self.post(&format!("/v1/datasets/{name}/rm"), &()).await
    }

    pub async fn status(&self) -> anyhow::Result<Status> {
        self.get("/v1/status").await
    }

    pub async fn nodes(&self) -> anyhow::Result<Vec<NodeView>> {
        self.get("/v1/nodes").await
    }

    pub async fn network(&self) -> anyhow::Result<NetworkConfig> {
        self.get("/v1/network").await
    }

    pub async fn create_network(&self, body: &CreateNetwork) -> anyhow::Result<NetworkMembership> {
        self.post("/v1/network", body).await
    }

    pub async fn join_network(&self, body: &JoinNetwork) -> anyhow::Result<NetworkMembership> {
        self.post("/v1/network/join", body).await
    }

    pub async fn leave_network(&self) -> anyhow::Result<Left> {
        self.post("/v1/network/leave", &serde_json::json!({})).await
    }

    pub async fn remove_node(&self, body: &RemoveNode) -> anyhow::Result<Removed> {
        self.post("/v1/network/remove", body).await
    }

    pub async fn images(&self) -> anyhow::Result<Images> {
        self.get("/v1/images").await
    }

    pub async fn load_image(&self, body: &LoadImage) -> anyhow::Result<LoadedImage> {
        self.post("/v1/images/load", body).await
    }

    pub async fn push_image(&self, body: &PushImage) -> anyhow::Result<Vec<NodeAnswer>> {
        self.post("/v1/images/push", body).await
    }

    pub async fn submit_job(&self, request: &JobRequest) -> anyhow::Result<Job> {
        self.post("/v1/jobs", request).await
    }

    pub async fn jobs(&self) -> anyhow::Result<Vec<Job>> {
        self.get("/v1/jobs").await
    }

    /// The job; with `wait`, once it has ended or `wait` has passed.
    pub async fn job(&self, id: &str, wait: Option<Duration>) -> anyhow::Result<Job> {
        let query = WaitQuery {
            wait: wait.map(|w| w.as_secs_f64()),
        };
        self.get_with(&format!("/v1/jobs/{id}"), &query).await
    }

    pub async fn cancel_job(&self, id: &str) -> anyhow::Result<Job> {
        self.post(&format!("/v1/jobs/{id}/cancel"), &serde_json::json!({}))
            .await
    }

    pub async fn job_logs(&self, id: &str, query: &LogsQuery) -> anyhow::Result<Vec<TaskLogs>> {
        self.get_with(&format!("/v1/jobs/{id}/logs"), query).await
    }

    pub async fn gather(&self, id: &str) -> anyhow::Result<Gathered> {
        self.post(&format!("/v1/jobs/{id}/gather"), &serde_json::json!({}))
            .await
    }

    pub async fn files(&self, query: &FilesQuery) -> anyhow::Result<Vec<FileEntry>> {
        self.get_with("/v1/files", query).await
    }

    pub async fn get_file(&self, body: &GetFile) -> anyhow::Result<Transfer> {
        self.post("/v1/files/get", body).await
    }

    pub async fn put_file(&self, body: &PutFile) -> anyhow::Result<Vec<NodeAnswer>> {
        self.post("/v1/files/put", body).await
    }

    pub async fn create_containers(
        &self,
        body: &CreateContainers,
    ) -> anyhow::Result<Vec<NodeAnswer>> {
        self.post("/v1/containers", body).await
    }

    pub async fn exec_containers(
        &self,
        name: &str,
        body: &ExecContainers,
    ) -> anyhow::Result<Vec<NodeAnswer>> {
        self.post(&format!("/v1/containers/{name}/exec"), body)
            .await
    }

    pub async fn remove_containers(
        &self,
        name: &str,
        body: &RemoveContainers,
    ) -> anyhow::Result<Vec<NodeAnswer>> {
        self.post(&format!("/v1/containers/{name}/rm"), body).await
    }

    pub async fn secure_sum(
        &self,
        id: &str,
        body: &SecureSumRequest,
    ) -> anyhow::Result<SumOutcome> {
        self.post(&format!("/v1/jobs/{id}/secure-sum"), body).await
    }

    pub async fn policy(&self) -> anyhow::Result<PolicyView> {
        self.get("/v1/policy").await
    }

    pub async fn set_policy(&self, body: &SetPolicy) -> anyhow::Result<PolicyView> {
        self.post("/v1/policy", body).await
    }

    pub async fn allow_image(&self, body: &AllowImage) -> anyhow::Result<PolicyView> {
        self.post("/v1/policy/images", body).await
    }

    pub async fn revoke_image(&self, body: &RevokeImage) -> anyhow::Result<PolicyView> {
        self.post("/v1/policy/images/revoke", body).await
    }

    pub async fn recognise_site(&self, body: &RecogniseSite) -> anyhow::Result<PolicyView> {
        self.post("/v1/policy/sites", body).await
    }

    pub async fn forget_site(&self, body: &ForgetSite) -> anyhow::Result<PolicyView> {
        self.post("/v1/policy/sites/forget", body).await
    }

    pub async fn budgets(&self) -> anyhow::Result<Vec<BudgetView>> {
        self.get("/v1/policy/budgets").await
    }

    pub async fn set_budget(&self, body: &SetBudget) -> anyhow::Result<PolicyView> {
        self.post("/v1/policy/budgets", body).await
    }

    pub async fn approvals(&self) -> anyhow::Result<Vec<PendingApproval>> {
        self.get("/v1/approvals").await
    }

    pub async fn approve(&self, id: &str, body: &Approve) -> anyhow::Result<Decided> {
        self.post(&format!("/v1/approvals/{id}/approve"), body)
            .await
    }

    pub async fn deny(&self, id: &str, body: &Deny) -> anyhow::Result<Decided> {
        self.post(&format!("/v1/approvals/{id}/deny"), body).await
    }

    pub async fn releases(&self) -> anyhow::Result<Vec<PendingRelease>> {
        self.get("/v1/releases").await
    }

    pub async fn release(&self, job: &str) -> anyhow::Result<Decided> {
        self.post(
            &format!("/v1/releases/{job}/approve"),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn withhold(&self, job: &str, body: &Deny) -> anyhow::Result<Decided> {
        self.post(&format!("/v1/releases/{job}/deny"), body).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.get(self.url(path))).await
    }

    async fn get_with<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.send(self.http.get(self.url(path)).query(query)).await
    }

    async fn post<T: DeserializeOwned>(
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
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|body| body.error)
            .unwrap_or(text);
        Err(anyhow!("{message} (HTTP {})", status.as_u16()))
    }

    /// The node's event stream, one event per server-sent event.
    pub async fn events(&self) -> anyhow::Result<impl Stream<Item = anyhow::Result<Event>>> {
        let response = self.execute(self.http.get(self.url("/v1/events"))).await?;
        // Read as the caller pulls: no task of its own to outlive the
        // stream.
        let bytes = Box::pin(response.bytes_stream());
        let state = (bytes, String::new(), false);
        Ok(futures::stream::unfold(
            state,
            |(mut bytes, mut buffer, broken)| async move {
                loop {
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
                        let event =
                            serde_json::from_str(&data).context("malformed event from the node");
                        return Some((event, (bytes, buffer, broken)));
                    }
                    if broken {
                        return None;
                    }
                    match bytes.next().await? {
                        Ok(chunk) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
                        Err(e) => {
                            let broke = Err(anyhow!("event stream broke: {e}"));
                            return Some((broke, (bytes, buffer, true)));
                        }
                    }
                }
            },
        ))
    }
}
