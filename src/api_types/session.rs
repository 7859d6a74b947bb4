//! What the browser's session routes give.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/login-links`: a one-time login URL for a browser.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginLink {
    /// Relative to the API's address: `/login?code=...`.
    pub path: String,
    pub expires_in_secs: u64,
}
