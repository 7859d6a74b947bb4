//! Who may call the API, and how a browser logs in.
//!
//! A program presents the node's token as `Authorization: Bearer ...`. A
//! browser presents it once, to `POST /v1/session` (the dashboard's login
//! form) or by opening a one-time link that `iris ui` printed, and gets a
//! session cookie: HttpOnly (the page's scripts cannot read it),
//! SameSite=Strict (other sites' pages do not send it). After login no
//! token or code is in a URL: the link's code is spent, and the page it
//! redirects to has none.
//!
//! A cookie goes with every request to this host, whatever the port, so a
//! page served by another program on localhost could still send one. No
//! write passes [`refuse_cross_origin`] unless its `Origin` is this API's
//! own.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiJson, ApiQuery, ApiState};
use crate::api_types::LoginLink;

/// The cookie's name, followed by `_` and the end of the node's peer id: a
/// browser keeps one cookie jar per host, whatever the port, so two nodes
/// on one machine must not overwrite each other's session.
const COOKIE: &str = "iris_session";
/// A browser session lasts this long, or until the node restarts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A login link must be opened within this long, once.
const LINK_LIFETIME: Duration = Duration::from_secs(120);
/// Sessions and unspent links at once; the oldest go first.
const MAX_LIVE: usize = 1024;

/// The sessions and unspent login codes of this node, in memory.
#[derive(Default)]
pub struct Logins {
    sessions: Mutex<HashMap<String, Instant>>,
    codes: Mutex<HashMap<String, Instant>>,
}

impl Logins {
    fn open_session(&self) -> String {
        remember(&self.sessions, SESSION_LIFETIME)
    }

    fn session_is_valid(&self, id: &str) -> bool {
        let sessions = self.sessions.lock().expect("lock");
        sessions.get(id).is_some_and(|ends| *ends > Instant::now())
    }

    fn close_session(&self, id: &str) {
        self.sessions.lock().expect("lock").remove(id);
    }

    fn new_code(&self) -> String {
        remember(&self.codes, LINK_LIFETIME)
    }

    /// Whether `code` was issued and is unspent; spends it.
    fn spend_code(&self, code: &str) -> bool {
        let removed = self.codes.lock().expect("lock").remove(code);
        removed.is_some_and(|ends| ends > Instant::now())
    }
}

/// A new random id kept in `map` for `lifetime`; expired ones are dropped.
fn remember(map: &Mutex<HashMap<String, Instant>>, lifetime: Duration) -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    let id = hex::encode(bytes);
    let now = Instant::now();
    let mut map = map.lock().expect("lock");
    map.retain(|_, ends| *ends > now);
    if map.len() >= MAX_LIVE {
        if let Some(oldest) = map
            .iter()
            .min_by_key(|(_, ends)| **ends)
            .map(|(id, _)| id.clone())
        {
            map.remove(&oldest);
        }
    }
    map.insert(id.clone(), now + lifetime);
    id
}

/// Lets through requests with the node's token or a live session cookie.
pub(super) async fn require_login(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let allowed = match (bearer, session_cookie(headers, &state.cookie)) {
        (Some(token), _) => state.token_matches(token),
        (None, Some(id)) => state.logins.session_is_valid(id),
        (None, None) => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing API token: send 'Authorization: Bearer <token>' (the token is in the node's api.token)",
            )
            .into_response()
        }
    };
    if allowed {
        next.run(request).await
    } else if bearer.is_some() {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid API token").into_response()
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the session has ended: log in again",
        )
        .into_response()
    }
}

/// Refuses a request that may change something (any method but GET, HEAD
/// and OPTIONS) when a browser says it comes from another origin.
pub(super) async fn refuse_cross_origin(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if safe || is_same_origin(request.headers()) {
        next.run(request).await
    } else {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-origin request refused: the API takes writes only from its own page or from programs",
        )
        .into_response()
    }
}

/// True unless the browser's headers name another origin. Programs send
/// neither `Origin` nor `Sec-Fetch-Site`.
fn is_same_origin(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin.strip_prefix("http://") == Some(host)
                || origin.strip_prefix("https://") == Some(host)
        }
        (Some(_), None) => false,
    }
}

/// This node's cookie name.
pub(super) fn cookie_name(peer_id: &str) -> String {
    let end = &peer_id[peer_id.len().saturating_sub(8)..];
    format!("{COOKIE}_{end}")
}

fn session_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

fn set_cookie(name: &str, id: &str) -> (header::HeaderName, String) {
    (
        header::SET_COOKIE,
        format!(
            "{name}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_LIFETIME.as_secs()
        ),
    )
}

/// `POST /v1/session`: the dashboard's login form.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The node's API token (its `api.token` file).
    pub token: String,
}

/// `GET /login?code=...`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// The one-time code of a login link.
    pub code: String,
}

/// Logs a browser in with the node's token: answers with the session
/// cookie.
#[utoipa::path(post, path = "/v1/session", tag = "session", request_body = Login,
    security(()),
    responses((status = 204, description = "logged in; the session cookie is set"),
              (status = 400, body = crate::api_types::ErrorBody, description = "the body is not a login"),
              (status = 401, body = crate::api_types::ErrorBody)))]
pub(super) async fn log_in(
    State(state): State<ApiState>,
    ApiJson(login): ApiJson<Login>,
) -> Result<Response, ApiError> {
    if !state.token_matches(&login.token) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid API token"));
    }
    let id = state.logins.open_session();
    Ok((StatusCode::NO_CONTENT, [set_cookie(&state.cookie, &id)]).into_response())
}

/// Ends this browser's session.
#[utoipa::path(post, path = "/v1/session/logout", tag = "session",
    responses((status = 204, description = "logged out; the cookie is cleared")))]
pub(super) async fn log_out(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers, &state.cookie) {
        state.logins.close_session(id);
    }
    let clear = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        state.cookie
    );
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response()
}

/// A one-time login link (what `iris ui` prints), valid for two minutes.
#[utoipa::path(post, path = "/v1/login-links", tag = "session",
    responses((status = 201, body = LoginLink)))]
pub(super) async fn login_link(
    State(state): State<ApiState>,
) -> (StatusCode, axum::Json<LoginLink>) {
    let code = state.logins.new_code();
    (
        StatusCode::CREATED,
        axum::Json(LoginLink {
            path: format!("/login?code={code}"),
            expires_in_secs: LINK_LIFETIME.as_secs(),
        }),
    )
}

/// Opens a login link: spends the code, sets the session cookie and sends
/// the browser to the dashboard, whose URL has no code.
#[utoipa::path(get, path = "/login", tag = "session", params(LinkQuery), security(()),
    responses((status = 303, description = "logged in; redirected to the dashboard"),
              (status = 400, body = crate::api_types::ErrorBody, description = "no code given"),
              (status = 401, body = crate::api_types::ErrorBody)))]
pub(super) async fn open_link(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<LinkQuery>,
) -> Result<Response, ApiError> {
    if !state.logins.spend_code(&query.code) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this login link was used already or has expired: run `iris ui` again",
        ));
    }
    let id = state.logins.open_session();
    Ok(([set_cookie(&state.cookie, &id)], Redirect::to("/")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn origins() {
        assert!(is_same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(is_same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        // Another port of the same host is another origin, but the same
        // site: SameSite alone would let its cookie through.
        assert!(!is_same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9000"),
        ])));
        assert!(!is_same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ])));
        assert!(!is_same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null"),
        ])));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let name = cookie_name("12D3KooWPAuyUgQ9cVT8Wz1YTH76zto7RarNPmmQYx616dJbZsSQ");
        assert_eq!(name, "iris_session_6dJbZsSQ");
        let h = headers(&[(
            "cookie",
            "a=1; iris_session_616dJbZsSQ=x; iris_session_6dJbZsSQ=abc",
        )]);
        assert_eq!(session_cookie(&h, &name), Some("abc"));
        let other = headers(&[("cookie", "iris_session_6dJbZsSQx=1")]);
        assert_eq!(session_cookie(&other, &name), None);
    }

    #[test]
    fn a_login_code_works_once() {
        let logins = Logins::default();
        let code = logins.new_code();
        assert!(logins.spend_code(&code));
        assert!(!logins.spend_code(&code));
        assert!(!logins.spend_code("made-up"));
        let session = logins.open_session();
        assert!(logins.session_is_valid(&session));
        logins.close_session(&session);
        assert!(!logins.session_is_valid(&session));
    }
}
