//! Routes of files and images: list, get, put; the image library, load
//! and push.

use axum::{extract::State, Json};
use iris_behaviours::FileEntry;

use super::{ApiError, ApiJson, ApiQuery, ApiState};
use crate::api_types::{
    FilesQuery, GetFile, Images, LoadImage, LoadedImage, NodeAnswer, PushImage, PutFile, Transfer,
};

pub(super) async fn list(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<FilesQuery>,
) -> Result<Json<Vec<FileEntry>>, ApiError> {
    Ok(Json(state.node.files.list_on(query.node.as_deref()).await?))
}

pub(super) async fn get(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<GetFile>,
) -> Result<Json<Transfer>, ApiError> {
    Ok(Json(state.node.files.get(body).await?))
}

pub(super) async fn put(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<PutFile>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    Ok(Json(state.node.files.put(body).await?))
}

pub(super) async fn images(State(state): State<ApiState>) -> Json<Images> {
    Json(state.node.images.view())
}

pub(super) async fn load_image(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<LoadImage>,
) -> Result<Json<LoadedImage>, ApiError> {
    Ok(Json(
        state.node.images.load_from(&body.path, body.force).await?,
    ))
}

pub(super) async fn push_image(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<PushImage>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    Ok(Json(
        state.node.files.push_image(&body.path, &body.to).await?,
    ))
}
