//! Routes of sessions: long-lived containers on several nodes.

use axum::{
    extract::{Path, State},
    Json,
};

use super::{ApiError, ApiJson, ApiState};
use crate::api_types::ErrorBody;
use crate::api_types::{CreateContainers, ExecContainers, NodeAnswer, RemoveContainers};

#[utoipa::path(post, path = "/v1/containers", tag = "containers", request_body = CreateContainers, responses((status = 200, body = Vec<NodeAnswer>), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn create(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<CreateContainers>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    Ok(Json(state.node.sessions.create(body).await?))
}

#[utoipa::path(post, path = "/v1/containers/{name}/exec", tag = "containers", request_body = ExecContainers, params(("name" = String, Path, description = "the containers' name", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")), responses((status = 200, body = Vec<NodeAnswer>), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn exec(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ExecContainers>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    Ok(Json(state.node.sessions.exec(&name, body).await?))
}

#[utoipa::path(post, path = "/v1/containers/{name}/rm", tag = "containers", request_body = RemoveContainers, params(("name" = String, Path, description = "the containers' name", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")), responses((status = 200, body = Vec<NodeAnswer>), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn remove(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RemoveContainers>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    Ok(Json(state.node.sessions.remove(&name, &body.on).await?))
}
