//! `GET /v1/audit`: the owner's audit log as the dashboard shows it, with
//! whether it verifies (what `iris audit verify` checks).

use axum::{extract::State, http::StatusCode, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiQuery, ApiState};
use crate::{api_types::ErrorBody, audit};

/// The most entries one answer carries.
const MAX_LAST: usize = 10_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// How many of the newest entries to return (default 200, at most
    /// 10000).
    #[param(minimum = 0, maximum = 10000)]
    pub last: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    /// Whether the whole chain verifies, from the first line to the last.
    pub verified: bool,
    /// Why it does not: the first bad line and what is wrong with it.
    pub problem: Option<String>,
    /// How many entries the log has.
    pub entries: u64,
    /// The root of the Merkle tree over them, in hex: what the node's
    /// record shows the other members, signed, so that they can tell if
    /// the log is ever rewritten.
    pub root: Option<String>,
    /// The newest entries, oldest first.
    pub recent: Vec<audit::AuditEntry>,
}

/// This node's audit log: the newest entries and whether the chain
/// verifies.
#[utoipa::path(get, path = "/v1/audit", tag = "owner", params(AuditQuery),
    responses((status = 200, body = AuditView),
              (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn audit_log(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditView>, ApiError> {
    let last = query.last.unwrap_or(200);
    if last > MAX_LAST {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("last={last}: give at most {MAX_LAST}"),
        ));
    }
    let path = state.node.audit.path().to_path_buf();
    let signer = state.node.membership.local_peer();
    let view = tokio::task::spawn_blocking(move || {
        let (verified, problem, entries, root) = match audit::verify(&path, &signer) {
            Ok(log) => (true, None, log.entries, Some(log.root)),
            Err(e) => (false, Some(e.to_string()), 0, None),
        };
        let all = audit::read(&path).unwrap_or_default();
        let recent = all[all.len().saturating_sub(last)..].to_vec();
        let entries = if verified { entries } else { all.len() as u64 };
        AuditView {
            verified,
            problem,
            entries,
            root,
            recent,
        }
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(view))
}
