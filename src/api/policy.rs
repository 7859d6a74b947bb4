//! Routes of the data owner: the policy, approvals of other nodes' tasks,
//! and releases of held outputs. They act on this node only.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};

use super::{ApiError, ApiJson, ApiState};
use crate::api_types::ErrorBody;
use crate::{
    api_types::{
        AllowImage, Approve, Decided, Deny, ForgetSite, PendingApproval, PendingRelease,
        PolicyView, RecogniseSite, RevokeImage, SetPolicy,
    },
    policy::{ApprovedImage, KnownSite, PolicyError},
};

impl From<PolicyError> for ApiError {
    fn from(error: PolicyError) -> Self {
        let status = match &error {
            PolicyError::Invalid(_) => StatusCode::BAD_REQUEST,
            PolicyError::NotFound(_) => StatusCode::NOT_FOUND,
            PolicyError::Conflict(_) => StatusCode::CONFLICT,
            PolicyError::Local(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, error.to_string())
    }
}

#[utoipa::path(get, path = "/v1/policy", tag = "owner", responses((status = 200, body = PolicyView), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn show(State(state): State<ApiState>) -> Json<PolicyView> {
    Json(state.node.policy.get())
}

#[utoipa::path(post, path = "/v1/policy", tag = "owner", request_body = crate::api_types::shapes::PolicySetting, responses((status = 200, body = PolicyView), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
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
#[utoipa::path(post, path = "/v1/policy/images", tag = "owner", request_body = AllowImage, responses((status = 200, body = PolicyView), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn allow_image(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<AllowImage>,
) -> Result<Json<PolicyView>, ApiError> {
    image_reference(&body.image)?;
    let digest = state
        .node
        .images
        .executor()
        .image_id(&body.image)
        .await
        .map_err(|e| match &e {
            crate::executor::ExecutorError::Docker(
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                },
            ) => PolicyError::NotFound(format!(
                "cannot approve {}: this node's engine does not have it",
                body.image
            )),
            crate::executor::ExecutorError::Docker(
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 400, ..
                },
            ) => PolicyError::Invalid(format!(
                "cannot approve {}: the engine reads no image reference in it",
                body.image
            )),
            _ => PolicyError::Local(format!("cannot approve {}: {e}", body.image)),
        })?;
    if let Some(dataset) = &body.dataset {
        iris_behaviours::validate_name("dataset name", dataset).map_err(PolicyError::Invalid)?;
    }
    let command = body.command.clone();
    command.validate().map_err(PolicyError::Invalid)?;
    let approved = ApprovedImage {
        digest: digest.clone(),
        name: body.image.clone(),
        dataset: body.dataset.clone(),
        command,
    };
    let change = format!("approved image {approved}");
    let policy = state
        .node
        .policy
        .change(change, |p| {
            p.approved.retain(|a| {
                !(a.digest == approved.digest
                    && a.dataset == approved.dataset
                    && a.command == approved.command)
            });
            p.approved.push(approved);
            Ok(())
        })
        .await?;
    Ok(Json(policy))
}

/// An image reference as Iris takes one (`is_image_reference`: an empty
/// one would make the engine answer a redirect).
fn image_reference(image: &str) -> Result<(), PolicyError> {
    if !iris_behaviours::is_image_reference(image) {
        return Err(PolicyError::Invalid(format!(
            "image '{image}' is not an image name or digest"
        )));
    }
    Ok(())
}

/// Revokes an approval, by the name it was approved under or its digest.
#[utoipa::path(post, path = "/v1/policy/images/revoke", tag = "owner", request_body = RevokeImage, responses((status = 200, body = PolicyView), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn revoke_image(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<RevokeImage>,
) -> Result<Json<PolicyView>, ApiError> {
    let image = body.image;
    if !state
        .node
        .policy
        .get()
        .approved
        .iter()
        .any(|a| a.digest == image || a.name == image)
    {
        return Err(PolicyError::NotFound(format!(
            "no approved image is named or has the digest '{image}'"
        ))
        .into());
    }
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

/// Recognises a member as a co-participant of secure sums, pinned to the
/// identity it has now: a node that joins later under its name is not it.
#[utoipa::path(post, path = "/v1/policy/sites", tag = "owner", request_body = RecogniseSite, responses((status = 200, body = PolicyView), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn recognise_site(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<RecogniseSite>,
) -> Result<Json<PolicyView>, ApiError> {
    let name = body.node;
    iris_behaviours::validate_name("node name", &name).map_err(PolicyError::Invalid)?;
    let membership = &state.node.membership;
    if name == membership.name() {
        return Err(PolicyError::Conflict(format!(
            "{name} is this node, which every sum it takes part in counts already"
        ))
        .into());
    }
    let peer_id = membership.peer_named(&name).await.map_err(|_| {
        PolicyError::NotFound(format!(
            "no member is named '{name}' (iris nodes lists them)"
        ))
    })?;
    let site = KnownSite { name, peer_id };
    let change = format!("recognised site {site}");
    let policy = state
        .node
        .policy
        .change(change, |p| {
            // One entry per name, and one per identity.
            p.recognised
                .retain(|k| k.name != site.name && k.peer_id != site.peer_id);
            p.recognised.push(site);
            Ok(())
        })
        .await?;
    Ok(Json(policy))
}

/// Recognises a site no more, by the name it was recognised under or its
/// peer id.
#[utoipa::path(post, path = "/v1/policy/sites/forget", tag = "owner", request_body = ForgetSite, responses((status = 200, body = PolicyView), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn forget_site(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<ForgetSite>,
) -> Result<Json<PolicyView>, ApiError> {
    let node = body.node;
    let known = |k: &KnownSite| k.name == node || k.peer_id.to_string() == node;
    if !state.node.policy.get().recognised.iter().any(known) {
        return Err(PolicyError::NotFound(format!(
            "no recognised site is named or has the peer id '{node}'"
        ))
        .into());
    }
    let change = format!("forgot site {node}");
    let policy = state
        .node
        .policy
        .change(change, |p| {
            p.recognised.retain(|k| !known(k));
            Ok(())
        })
        .await?;
    Ok(Json(policy))
}

#[utoipa::path(get, path = "/v1/approvals", tag = "owner", responses((status = 200, body = Vec<PendingApproval>), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn approvals(State(state): State<ApiState>) -> Json<Vec<PendingApproval>> {
    Json(state.node.jobs.approvals().await)
}

#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "owner", request_body = Approve, params(("id" = String, Path, description = "the job id of the pending task", pattern = r"^[A-Za-z0-9-]{1,64}$")), responses((status = 200, body = Decided), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn approve(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Approve>,
) -> Result<Json<Decided>, ApiError> {
    let id = state.node.jobs.decide(&id, true, body.always, None).await?;
    let decision = if body.always {
        "approved, and its image with this command for later jobs"
    } else {
        "approved"
    };
    Ok(Json(Decided {
        id,
        decision: decision.into(),
        files: Vec::new(),
    }))
}

#[utoipa::path(post, path = "/v1/approvals/{id}/deny", tag = "owner", request_body = Deny, params(("id" = String, Path, description = "the job id of the pending task", pattern = r"^[A-Za-z0-9-]{1,64}$")), responses((status = 200, body = Decided), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
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

#[utoipa::path(get, path = "/v1/releases", tag = "owner", responses((status = 200, body = Vec<PendingRelease>), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn releases(State(state): State<ApiState>) -> Json<Vec<PendingRelease>> {
    Json(state.node.jobs.releases().await)
}

#[utoipa::path(post, path = "/v1/releases/{job}/approve", tag = "owner", params(("job" = String, Path, description = "the job id", pattern = r"^[A-Za-z0-9-]{1,64}$")), responses((status = 200, body = Decided), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
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

#[utoipa::path(post, path = "/v1/releases/{job}/deny", tag = "owner", request_body = Deny, params(("job" = String, Path, description = "the job id", pattern = r"^[A-Za-z0-9-]{1,64}$")), responses((status = 200, body = Decided), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
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
