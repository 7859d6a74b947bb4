//! Routes of the data owner: the policy, approvals of other nodes' tasks,
//! and releases of held outputs. They act on this node only.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};

use super::{ApiError, ApiJson, ApiState};
use crate::{
    api_types::{
        Approve, Decided, Deny, PendingApproval, PendingRelease, PolicyImage, PolicyView, SetPolicy,
    },
    policy::{ApprovedImage, PolicyError},
};

impl From<PolicyError> for ApiError {
    fn from(error: PolicyError) -> Self {
        let status = match &error {
            PolicyError::Invalid(_) => StatusCode::BAD_REQUEST,
            PolicyError::NotFound(_) => StatusCode::NOT_FOUND,
            PolicyError::Local(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, error.to_string())
    }
}

pub(super) async fn show(State(state): State<ApiState>) -> Json<PolicyView> {
    Json(state.node.policy.get())
}

pub(super) async fn set(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<SetPolicy>,
) -> Result<Json<PolicyView>, ApiError> {
    let change = format!("{} = {}", body.key, body.value);
    let policy = state
        .node
        .policy
        .change(change, |p| p.set(&body.key, &body.value))
        .await?;
    Ok(Json(policy))
}

/// Approves an image ahead of time, pinned to the digest it has now.
pub(super) async fn allow_image(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<PolicyImage>,
) -> Result<Json<PolicyView>, ApiError> {
    let digest = state
        .node
        .images
        .executor()
        .image_id(&body.image)
        .await
        .map_err(|e| {
            PolicyError::Invalid(format!(
                "cannot approve {}: this node's engine does not have it ({e})",
                body.image
            ))
        })?;
    let approved = ApprovedImage {
        digest: digest.clone(),
        name: body.image.clone(),
    };
    let change = format!("approved image {} ({digest})", body.image);
    let policy = state
        .node
        .policy
        .change(change, |p| {
            p.approved.retain(|a| a.digest != approved.digest);
            p.approved.push(approved);
            Ok(())
        })
        .await?;
    Ok(Json(policy))
}

/// Revokes an approval, by the name it was approved under or its digest.
pub(super) async fn revoke_image(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<PolicyImage>,
) -> Result<Json<PolicyView>, ApiError> {
    let image = body.image;
    let change = format!("revoked image {image}");
    let policy = state
        .node
        .policy
        .change(change, |p| {
            let before = p.approved.len();
            p.approved.retain(|a| a.digest != image && a.name != image);
            if p.approved.len() == before {
                return Err(format!(
                    "no approved image is named or has the digest '{image}'"
                ));
            }
            Ok(())
        })
        .await?;
    Ok(Json(policy))
}

pub(super) async fn approvals(State(state): State<ApiState>) -> Json<Vec<PendingApproval>> {
    Json(state.node.jobs.approvals().await)
}

pub(super) async fn approve(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Approve>,
) -> Result<Json<Decided>, ApiError> {
    let id = state.node.jobs.decide(&id, true, body.always, None).await?;
    let decision = if body.always {
        "approved, and its image for later jobs"
    } else {
        "approved"
    };
    Ok(Json(Decided {
        id,
        decision: decision.into(),
        files: Vec::new(),
    }))
}

pub(super) async fn deny(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Deny>,
) -> Result<Json<Decided>, ApiError> {
    let id = state
        .node
        .jobs
        .decide(&id, false, false, body.reason)
        .await?;
    Ok(Json(Decided {
        id,
        decision: "denied".into(),
        files: Vec::new(),
    }))
}

pub(super) async fn releases(State(state): State<ApiState>) -> Json<Vec<PendingRelease>> {
    Json(state.node.jobs.releases().await)
}

pub(super) async fn release(
    State(state): State<ApiState>,
    Path(job): Path<String>,
) -> Result<Json<Decided>, ApiError> {
    let files = state.node.jobs.decide_release(&job, true, None).await?;
    Ok(Json(Decided {
        id: job,
        decision: "released".into(),
        files,
    }))
}

pub(super) async fn withhold(
    State(state): State<ApiState>,
    Path(job): Path<String>,
    ApiJson(body): ApiJson<Deny>,
) -> Result<Json<Decided>, ApiError> {
    let files = state
        .node
        .jobs
        .decide_release(&job, false, body.reason)
        .await?;
    Ok(Json(Decided {
        id: job,
        decision: "denied".into(),
        files,
    }))
}
