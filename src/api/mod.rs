//! The local REST API: JSON over HTTP, every route behind the bearer token
//! that `iris init` generated. Errors are `{"error": "..."}` with a status
//! code taken from the error's variant ([`errors`]). The request and
//! response types live in [`crate::api_types`], shared with the client;
//! docs/api.md documents each route.

mod containers;
mod errors;
mod files;
mod jobs;
mod network;
mod policy;

use std::sync::Arc;

use axum::{
    extract::{
        rejection::{JsonRejection, QueryRejection},
        FromRequest, FromRequestParts, Query, Request, State,
    },
    http::{header, request::Parts, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::de::DeserializeOwned;

pub use errors::ApiError;

use crate::node::Node;

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
        .route("/v1/status", get(network::status))
        .route("/v1/network", get(network::show).post(network::create))
        .route("/v1/network/join", post(network::join))
        .route("/v1/network/leave", post(network::leave))
        .route("/v1/network/remove", post(network::remove))
        .route("/v1/nodes", get(network::nodes))
        .route("/v1/events", get(network::events))
        .route("/v1/images", get(files::images))
        .route("/v1/images/load", post(files::load_image))
        .route("/v1/images/push", post(files::push_image))
        .route("/v1/jobs", get(jobs::list).post(jobs::submit))
        .route("/v1/jobs/{id}", get(jobs::show))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/logs", get(jobs::logs))
        .route("/v1/jobs/{id}/gather", post(jobs::gather))
        .route("/v1/jobs/{id}/secure-sum", post(jobs::secure_sum))
        .route("/v1/files", get(files::list))
        .route("/v1/files/get", post(files::get))
        .route("/v1/files/put", post(files::put))
        .route("/v1/containers", post(containers::create))
        .route("/v1/containers/{name}/exec", post(containers::exec))
        .route("/v1/containers/{name}/rm", post(containers::remove))
        .route("/v1/policy", get(policy::show).post(policy::set))
        .route("/v1/policy/images", post(policy::allow_image))
        .route("/v1/policy/images/revoke", post(policy::revoke_image))
        .route("/v1/approvals", get(policy::approvals))
        .route("/v1/approvals/{id}/approve", post(policy::approve))
        .route("/v1/approvals/{id}/deny", post(policy::deny))
        .route("/v1/releases", get(policy::releases))
        .route("/v1/releases/{job}/approve", post(policy::release))
        .route("/v1/releases/{job}/deny", post(policy::withhold))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
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

/// `Query` whose rejection is a 400 with a JSON error.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                QueryRejection::body_text(&rejection),
            )),
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
