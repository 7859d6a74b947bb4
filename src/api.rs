//! The local REST API: JSON over HTTP, every route behind the bearer token
//! that `iris init` generated. Errors are `{"error": "..."}` with a status
//! code that says whose fault it was. docs/api.md documents each route.

use std::{convert::Infallible, sync::Arc};

use axum::{
    extract::{
        rejection::{JsonRejection, QueryRejection},
        FromRequest, Path, Query, Request, State,
    },
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{
        sse::{Event as SseEvent, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::{get, post},
    Json, Router,
};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::BroadcastStream;

use crate::{
    files::Transfer,
    jobs::{
        store::{Job, JobRequest},
        NodeAnswer, TaskLogs,
    },
    network::NetworkError,
    node::{Images, LoadedImage, Membership, Node, NodeError, NodeView, Status},
};

/// Request bodies here are small; anything larger is refused unread.
const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
struct ApiState {
    node: Arc<Node>,
    token: Arc<str>,
}

/// Builds the router; `token` is what every request must present.
pub fn router(node: Arc<Node>, token: String) -> Router {
    let state = ApiState {
        node,
        token: token.into(),
    };
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/network", get(network).post(create_network))
        .route("/v1/network/join", post(join_network))
        .route("/v1/network/leave", post(leave_network))
        .route("/v1/nodes", get(nodes))
        .route("/v1/events", get(events))
        .route("/v1/images", get(images))
        .route("/v1/images/load", post(load_image))
        .route("/v1/jobs", get(list_jobs).post(submit_job))
        .route("/v1/jobs/{id}", get(show_job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/jobs/{id}/logs", get(job_logs))
        .route("/v1/jobs/{id}/gather", post(gather_job))
        .route("/v1/files", get(list_files))
        .route("/v1/files/get", post(get_file))
        .route("/v1/files/put", post(put_file))
        .route("/v1/images/push", post(push_image))
        .route("/v1/containers", post(create_containers))
        .route("/v1/containers/{name}/exec", post(exec_containers))
        .route("/v1/containers/{name}/rm", post(remove_containers))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// An error as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: &self.message,
            }),
        )
            .into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(err: NodeError) -> Self {
        let status = match &err {
            NodeError::NotInNetwork | NodeError::AlreadyInNetwork(_) => StatusCode::CONFLICT,
            NodeError::Invalid(_) => StatusCode::BAD_REQUEST,
            NodeError::NotFound(_) => StatusCode::NOT_FOUND,
            NodeError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            NodeError::Network(e) => match e {
                NetworkError::NoPeerId(_) => StatusCode::BAD_REQUEST,
                NetworkError::Refused { .. } => StatusCode::CONFLICT,
                NetworkError::PeerRefused { reason, .. } if reason.starts_with("forbidden") => {
                    StatusCode::FORBIDDEN
                }
                NetworkError::PeerRefused { .. } => StatusCode::CONFLICT,
                NetworkError::WrongKey { .. }
                | NetworkError::Unreachable { .. }
                | NetworkError::NoAnswer { .. }
                | NetworkError::BadWelcome { .. } => StatusCode::BAD_GATEWAY,
                NetworkError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
                NetworkError::Listen { .. } | NetworkError::Store(_) | NetworkError::Build(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
        };
        Self::new(status, err.to_string())
    }
}

/// `Json` whose every rejection (bad syntax, wrong fields, wrong content
/// type, too large) is a 400 with a JSON error naming the problem.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                let status = match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::BAD_REQUEST,
                };
                Err(ApiError::new(
                    status,
                    format!("invalid request body: {}", rejection.body_text()),
                ))
            }
        }
    }
}

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), state.token.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "invalid API token").into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing API token: send 'Authorization: Bearer <token>' (the token is in the node's api.token)",
        )
        .into_response(),
    }
}

/// Compares without stopping at the first difference, so response times do
/// not tell how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route; see docs/api.md")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route; see docs/api.md",
    )
}

async fn status(State(state): State<ApiState>) -> Json<Status> {
    Json(state.node.status().await)
}

async fn network(
    State(state): State<ApiState>,
) -> Result<Json<iris_behaviours::NetworkConfig>, ApiError> {
    match state.node.network().await {
        Ok(config) => Ok(Json(config)),
        Err(NodeError::NotInNetwork) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            NodeError::NotInNetwork.to_string(),
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateNetwork {
    name: String,
    key: String,
    #[serde(default = "default_mode")]
    mode: String,
}

fn default_mode() -> String {
    "master_slave".into()
}

async fn create_network(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<CreateNetwork>,
) -> Result<(StatusCode, Json<Membership>), ApiError> {
    let membership = state
        .node
        .create_network(&body.name, &body.key, &body.mode)
        .await?;
    Ok((StatusCode::CREATED, Json(membership)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinNetwork {
    key: String,
    bootstrap: String,
}

async fn join_network(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<JoinNetwork>,
) -> Result<Json<Membership>, ApiError> {
    Ok(Json(
        state.node.join_network(&body.key, &body.bootstrap).await?,
    ))
}

#[derive(Serialize)]
struct Left {
    left: String,
}

async fn leave_network(State(state): State<ApiState>) -> Result<Json<Left>, ApiError> {
    let network = state.node.leave_network().await?;
    Ok(Json(Left { left: network.name }))
}

async fn nodes(State(state): State<ApiState>) -> Result<Json<Vec<NodeView>>, ApiError> {
    Ok(Json(state.node.nodes().await?))
}

async fn images(State(state): State<ApiState>) -> Json<Images> {
    Json(state.node.images())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadImage {
    /// A `docker save` tar on this machine.
    path: String,
}

async fn load_image(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<LoadImage>,
) -> Result<Json<LoadedImage>, ApiError> {
    Ok(Json(state.node.load_image(&body.path).await?))
}

async fn submit_job(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<JobRequest>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.node.submit_job(request).await?),
    ))
}

async fn list_jobs(State(state): State<ApiState>) -> Json<Vec<Job>> {
    Json(state.node.jobs())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    /// Answer once the job has ended, or after this many seconds.
    wait: Option<f64>,
}

/// The longest wait one request may ask for.
const MAX_WAIT_SECS: f64 = 300.0;

async fn show_job(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<Job>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let wait = match query.wait {
        None => std::time::Duration::ZERO,
        Some(secs) if secs.is_finite() && (0.0..=MAX_WAIT_SECS).contains(&secs) => {
            std::time::Duration::from_secs_f64(secs)
        }
        Some(secs) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("wait={secs}: give seconds from 0 to {MAX_WAIT_SECS}"),
            ))
        }
    };
    Ok(Json(state.node.wait_job(&id, wait).await?))
}

async fn cancel_job(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(state.node.cancel_job(&id).await?))
}

#[derive(Serialize)]
struct Gathered {
    files: Vec<String>,
}

async fn gather_job(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Gathered>, ApiError> {
    Ok(Json(Gathered {
        files: state.node.gather(&id).await?,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    node: Option<String>,
    #[serde(default)]
    stdout_offset: u64,
    #[serde(default)]
    stderr_offset: u64,
}

async fn job_logs(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Json<Vec<TaskLogs>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let offsets = (query.stdout_offset, query.stderr_offset);
    Ok(Json(
        state
            .node
            .job_logs(&id, query.node.as_deref(), offsets)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesQuery {
    node: Option<String>,
}

async fn list_files(
    State(state): State<ApiState>,
    query: Result<Query<FilesQuery>, QueryRejection>,
) -> Result<Json<Vec<iris_behaviours::FileEntry>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    Ok(Json(state.node.list_files(query.node.as_deref()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetFile {
    from: String,
    path: String,
    to: Option<String>,
    dest: Option<String>,
}

async fn get_file(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<GetFile>,
) -> Result<Json<Transfer>, ApiError> {
    let transfer = state
        .node
        .get_file(
            &body.from,
            &body.path,
            body.to.as_deref(),
            body.dest.as_deref(),
        )
        .await?;
    Ok(Json(transfer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutFile {
    /// A file on this machine.
    source: String,
    /// Where it goes in every target's workspace (default public/<name>).
    #[serde(rename = "as")]
    dest: Option<String>,
    #[serde(default = "all")]
    to: String,
}

fn file_name(path: &str) -> Result<String, ApiError> {
    std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("{path} names no file")))
}

async fn put_file(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<PutFile>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    let dest = match body.dest {
        Some(dest) if dest.starts_with("public/") => dest,
        Some(dest) => format!("public/{dest}"),
        None => format!("public/{}", file_name(&body.source)?),
    };
    Ok(Json(
        state.node.put_file(&body.source, &dest, &body.to).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushImage {
    path: String,
    #[serde(default = "all")]
    to: String,
}

async fn push_image(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<PushImage>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    let name = file_name(&body.path)?;
    if !name.ends_with(".tar") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{name} is not a .tar file"),
        ));
    }
    Ok(Json(
        state
            .node
            .put_file(&body.path, &format!("image/{name}"), &body.to)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateContainers {
    name: String,
    image: String,
    #[serde(default = "all")]
    on: String,
    /// Empty: the image's own command, which must keep running.
    #[serde(default)]
    argv: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default = "default_memory_mb")]
    memory_mb: u64,
    #[serde(default = "default_cpus")]
    cpus: f64,
}

fn all() -> String {
    "all".into()
}
fn default_memory_mb() -> u64 {
    512
}
fn default_cpus() -> f64 {
    1.0
}

async fn create_containers(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<CreateContainers>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    let request = JobRequest {
        image: body.image,
        argv: body.argv,
        env: body.env,
        on: body.on.clone(),
        any: false,
        network: body.network,
        memory_mb: body.memory_mb,
        cpus: body.cpus,
        // A session lives until it is removed; the limit is never reached.
        timeout_secs: 7.0 * 24.0 * 3600.0,
        inputs: Vec::new(),
    };
    Ok(Json(
        state
            .node
            .create_containers(&body.name, &body.on, request)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecContainers {
    #[serde(default = "all")]
    on: String,
    argv: Vec<String>,
    #[serde(default = "default_exec_timeout")]
    timeout_secs: f64,
}

fn default_exec_timeout() -> f64 {
    3600.0
}

async fn exec_containers(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ExecContainers>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    if !(body.timeout_secs > 0.0 && body.timeout_secs <= 86_400.0) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "timeout_secs must be in (0, 86400]",
        ));
    }
    let timeout_ms = (body.timeout_secs * 1000.0) as u64;
    Ok(Json(
        state
            .node
            .exec_containers(&name, &body.on, body.argv, timeout_ms)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveContainers {
    #[serde(default = "all")]
    on: String,
}

async fn remove_containers(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RemoveContainers>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    Ok(Json(state.node.remove_containers(&name, &body.on).await?))
}

async fn events(
    State(state): State<ApiState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let node = state.node.clone();
    let stream = BroadcastStream::new(state.node.events().subscribe())
        .filter_map(|item| async move {
            // A listener that fell behind skips what it missed.
            let event = item.ok()?;
            SseEvent::default()
                .event(event.kind.name())
                .json_data(&event)
                .ok()
                .map(Ok)
        })
        .take_until(async move { node.stopped().await });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
