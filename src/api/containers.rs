//! Routes of sessions: long-lived containers on several nodes.

use axum::{
    extract::{Path, State},
    Json,
};

use super::{ApiError, ApiJson, ApiState};
use crate::api_types::{CreateContainers, ExecContainers, NodeAnswer, RemoveContainers};

pub(super) async fn create(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<CreateContainers>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    Ok(Json(state.node.sessions.create(body).await?))
}

pub(super) async fn exec(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ExecContainers>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    Ok(Json(state.node.sessions.exec(&name, body).await?))
}

pub(super) async fn remove(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RemoveContainers>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    Ok(Json(state.node.sessions.remove(&name, &body.on).await?))
}
