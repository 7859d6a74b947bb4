//! Routes of files and images: list, get, put; the image library, load
//! and push.

use axum::{
    body::Body,
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    Json,
};
use iris_behaviours::FileEntry;

use super::{ApiError, ApiJson, ApiQuery, ApiState};
use crate::api_types::ErrorBody;
use crate::api_types::{
    ContentQuery, FilesQuery, GetFile, Images, LoadImage, LoadedImage, NodeAnswer, PushImage,
    PutFile, Transfer, UploadQuery,
};
use crate::files::MAX_UPLOAD;

#[utoipa::path(get, path = "/v1/files", tag = "files", params(FilesQuery), responses((status = 200, body = Vec<FileEntry>), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn list(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<FilesQuery>,
) -> Result<Json<Vec<FileEntry>>, ApiError> {
    Ok(Json(state.node.files.list_on(query.node.as_deref()).await?))
}

#[utoipa::path(post, path = "/v1/files/get", tag = "files", request_body = GetFile, responses((status = 200, body = Transfer), (status = "4XX", body = ErrorBody, description = "refused: the error says why"), (status = 507, body = ErrorBody, description = "the file would not fit on this node's disk with the margin it keeps free (64 MiB)")))]
pub(super) async fn get(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<GetFile>,
) -> Result<Json<Transfer>, ApiError> {
    Ok(Json(state.node.files.get(body).await?))
}

#[utoipa::path(post, path = "/v1/files/put", tag = "files", request_body = PutFile, responses((status = 200, body = Vec<NodeAnswer>), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn put(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<PutFile>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    Ok(Json(state.node.files.put(body).await?))
}

#[utoipa::path(post, path = "/v1/files/upload", tag = "files", params(UploadQuery), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file's bytes, at most 64 MiB"), responses((status = 200, body = Vec<NodeAnswer>, description = "kept here; each other target's answer"), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn upload(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    body: Body,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_UPLOAD).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "an upload is at most {} MiB; ship larger files with files put",
                MAX_UPLOAD >> 20
            ),
        )
    })?;
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "an upload needs the file's bytes as its body",
        ));
    }
    let files = &state.node.files;
    Ok(Json(
        files
            .upload(&query.dest, query.to.as_deref(), bytes.to_vec())
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/files/content", tag = "files", params(ContentQuery), responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>, description = "the file's bytes"), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn content(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<ContentQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = state.node.files.read_local(&query.path).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes))
}

#[utoipa::path(get, path = "/v1/images", tag = "images", responses((status = 200, body = Images), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn images(State(state): State<ApiState>) -> Json<Images> {
    Json(state.node.images.view())
}

#[utoipa::path(post, path = "/v1/images/load", tag = "images", request_body = LoadImage, responses((status = 200, body = LoadedImage), (status = "4XX", body = ErrorBody, description = "refused: the error says why"), (status = 503, body = ErrorBody, description = "the Docker engine is away; the tar was kept")))]
pub(super) async fn load_image(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<LoadImage>,
) -> Result<Json<LoadedImage>, ApiError> {
    Ok(Json(
        state.node.images.load_from(&body.path, body.force).await?,
    ))
}

#[utoipa::path(post, path = "/v1/images/push", tag = "images", request_body = PushImage, responses((status = 200, body = Vec<NodeAnswer>), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn push_image(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<PushImage>,
) -> Result<Json<Vec<NodeAnswer>>, ApiError> {
    Ok(Json(
        state.node.files.push_image(&body.path, &body.to).await?,
    ))
}
