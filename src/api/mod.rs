//! The local REST API: JSON over HTTP, every route behind the bearer token
//! that `iris init` generated (or a dashboard session opened with it), but
//! the dashboard's page and its login ([`dashboard`], [`session`]). Errors are `{"error": "..."}` with a status
//! code taken from the error's variant ([`errors`]). The request and
//! response types live in [`crate::api_types`], shared with the client;
//! docs/api.md documents each route.

mod budgets;
mod containers;
mod dashboard;
mod datasets;
mod errors;
mod files;
mod jobs;
mod meta;
mod network;
mod owner_log;
mod policy;
mod session;

use std::sync::{Arc, OnceLock};

use axum::{
    extract::{
        rejection::{JsonRejection, QueryRejection},
        FromRequest, FromRequestParts, Query, Request, State,
    },
    http::{request::Parts, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Json, Router,
};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use crate::api_types::LoginLink;
pub use errors::ApiError;
pub use owner_log::AuditView;

use crate::node::Node;

/// Request bodies here are small; anything larger is refused unread.
const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
struct ApiState {
    node: Arc<Node>,
    token: Arc<str>,
    logins: Arc<session::Logins>,
    /// The name of this node's session cookie.
    cookie: Arc<str>,
    /// The OpenAPI document, as JSON, once the router is built.
    openapi: Arc<OnceLock<String>>,
}

impl ApiState {
    fn token_matches(&self, presented: &str) -> bool {
        constant_time_eq(presented.as_bytes(), self.token.as_bytes())
    }
}

/// Builds the router; `token` is what every request must present (or a
/// session opened with it). Every route is registered with its OpenAPI
/// description, so the router and `/v1/openapi.json` list the same routes.
pub fn router(node: Arc<Node>, token: String) -> Router {
    let cookie = session::cookie_name(&node.membership.local_peer().to_string()).into();
    let state = ApiState {
        node,
        token: token.into(),
        logins: Default::default(),
        cookie,
        openapi: Default::default(),
    };
    let (router, document) = routes(state.clone()).split_for_parts();
    let _ = state.openapi.set(meta::finish(document));
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(session::refuse_cross_origin))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// Counts every answer, refusals included, for `/metrics`.
async fn count(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state.node.metrics.api_request(response.status().as_u16());
    response
}

/// Once the node has begun to shut down, a request would meet services
/// half stopped (its network already left: "in no network", a 409 that
/// is not so); it is a 503 that says why, which a client asks again.
async fn refuse_while_shutting_down(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    if state.node.is_shutting_down() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node is shutting down; ask again once it is back",
        )
        .into_response();
    }
    next.run(request).await
}

/// Every route: the open ones (the page, logging in), then those behind
/// the token or a session.
fn routes(state: ApiState) -> OpenApiRouter<ApiState> {
    let open = OpenApiRouter::with_openapi(meta::ApiDoc::openapi())
        .routes(routes!(dashboard::index))
        .routes(routes!(dashboard::file))
        .routes(routes!(session::log_in))
        .routes(routes!(session::open_link));
    let guarded = OpenApiRouter::new()
        .routes(routes!(session::log_out))
        .routes(routes!(session::login_link))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::openapi))
        .routes(routes!(network::status))
        .routes(routes!(network::show, network::create))
        .routes(routes!(network::join))
        .routes(routes!(network::leave))
        .routes(routes!(network::remove))
        .routes(routes!(network::nodes))
        .routes(routes!(network::events))
        .routes(routes!(files::images))
        .routes(routes!(files::load_image))
        .routes(routes!(files::push_image))
        .routes(routes!(jobs::list, jobs::submit))
        .routes(routes!(jobs::show))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::logs))
        .routes(routes!(jobs::gather))
        .routes(routes!(jobs::secure_sum))
        .routes(routes!(files::list))
        .routes(routes!(files::get))
        .routes(routes!(files::put))
        .routes(routes!(files::upload))
        .routes(routes!(files::content))
        .routes(routes!(containers::create))
        .routes(routes!(containers::exec))
        .routes(routes!(containers::remove))
        .routes(routes!(policy::show, policy::set))
        .routes(routes!(policy::allow_image))
        .routes(routes!(policy::revoke_image))
        .routes(routes!(policy::recognise_site))
        .routes(routes!(policy::forget_site))
        .routes(routes!(budgets::list_budgets, budgets::set_budget))
        .routes(routes!(policy::approvals))
        .routes(routes!(policy::approve))
        .routes(routes!(policy::deny))
        .routes(routes!(policy::releases))
        .routes(routes!(policy::release))
        .routes(routes!(policy::withhold))
        .routes(routes!(owner_log::audit_log))
        .routes(routes!(datasets::list, datasets::add))
        .routes(routes!(datasets::reload))
        .routes(routes!(datasets::remove))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_while_shutting_down,
        ))
        .route_layer(middleware::from_fn_with_state(
            state,
            session::require_login,
        ));
    open.merge(guarded)
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
