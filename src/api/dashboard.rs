//! The dashboard: one page of plain HTML, CSS and JavaScript, compiled into
//! the binary (no build step). It logs in through [`super::session`] and
//! then reads the same API as any client, the events stream included.
//!
//! The page and its files need no login (they hold no data). Their headers
//! forbid framing the page in another site (a click on "approve" must be
//! the owner's own) and running any script but these files.

use axum::{
    extract::Path,
    http::{header, HeaderName, StatusCode},
    response::{IntoResponse, Response},
};

use super::ApiError;

const INDEX: &str = include_str!("dashboard/index.html");

/// The page's files, by name.
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/app.js"),
    ),
    (
        "views.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/views.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("dashboard/style.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("dashboard/icon.svg"),
    ),
];

/// Only this origin's scripts, styles and connections; no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn page(content_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, &str); 5] = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    (headers, body).into_response()
}

/// The dashboard.
#[utoipa::path(get, path = "/", tag = "dashboard", security(()),
    responses((status = 200, content_type = "text/html", body = String, description = "the dashboard page")))]
pub(super) async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

/// A file of the dashboard: its script, styles and icon.
#[utoipa::path(get, path = "/ui/{file}", tag = "dashboard", security(()),
    params(("file" = String, Path, description = "app.js, views.js, style.css or icon.svg")),
    responses((status = 200, body = String, description = "the file"),
              (status = 404, body = crate::api_types::ErrorBody)))]
pub(super) async fn file(Path(name): Path<String>) -> Result<Response, ApiError> {
    FILES
        .iter()
        .find(|(file, _, _)| *file == name)
        .map(|(_, content_type, body)| page(content_type, body))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no dashboard file '{name}'")))
}
