//! Routes of membership: status, the network, the map, and the events.

use std::convert::Infallible;

use axum::{
    extract::State,
    http::StatusCode,
    response::sse::{Event as SseEvent, KeepAlive, Sse},
    Json,
};
use futures::{Stream, StreamExt};
use iris_behaviours::NetworkConfig;
use tokio_stream::wrappers::BroadcastStream;

use super::{ApiError, ApiJson, ApiState};
use crate::api_types::ErrorBody;
use crate::{
    api_types::{
        CreateNetwork, JoinNetwork, Left, NetworkMembership, NodeView, RemoveNode, Removed, Status,
    },
    membership::MembershipError,
};

#[utoipa::path(get, path = "/v1/status", tag = "network", responses((status = 200, body = Status), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn status(State(state): State<ApiState>) -> Json<Status> {
    Json(state.node.status().await)
}

#[utoipa::path(get, path = "/v1/network", tag = "network", responses((status = 200, body = NetworkConfig), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn show(State(state): State<ApiState>) -> Result<Json<NetworkConfig>, ApiError> {
    match state.node.membership.network().await {
        Ok(config) => Ok(Json(config)),
        // There is no network to show.
        Err(error @ MembershipError::NotInNetwork) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, error.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(post, path = "/v1/network", tag = "network", request_body = CreateNetwork, responses((status = 201, body = NetworkMembership), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn create(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<CreateNetwork>,
) -> Result<(StatusCode, Json<NetworkMembership>), ApiError> {
    let membership = state.node.membership.create(&body).await?;
    Ok((StatusCode::CREATED, Json(membership)))
}

#[utoipa::path(post, path = "/v1/network/join", tag = "network", request_body = JoinNetwork, responses((status = 200, body = NetworkMembership), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn join(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<JoinNetwork>,
) -> Result<Json<NetworkMembership>, ApiError> {
    Ok(Json(state.node.membership.join(&body).await?))
}

#[utoipa::path(post, path = "/v1/network/leave", tag = "network", responses((status = 200, body = Left), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn leave(State(state): State<ApiState>) -> Result<Json<Left>, ApiError> {
    let network = state.node.membership.leave().await?;
    Ok(Json(Left { left: network.name }))
}

#[utoipa::path(post, path = "/v1/network/remove", tag = "network", request_body = RemoveNode, responses((status = 200, body = Removed), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn remove(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<RemoveNode>,
) -> Result<Json<Removed>, ApiError> {
    Ok(Json(state.node.membership.remove(&body.name).await?))
}

#[utoipa::path(get, path = "/v1/nodes", tag = "network", responses((status = 200, body = Vec<NodeView>), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn nodes(State(state): State<ApiState>) -> Result<Json<Vec<NodeView>>, ApiError> {
    Ok(Json(state.node.membership.nodes().await?))
}

/// What happens, as server-sent events: each event's name is its `type`.
#[utoipa::path(get, path = "/v1/events", tag = "network",
    responses((status = 200, content_type = "text/event-stream", body = crate::events::EventEnvelope,
               description = "one server-sent event per event, until the node stops")))]
pub(super) async fn events(
    State(state): State<ApiState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let node = state.node.clone();
    let stream = BroadcastStream::new(state.node.events().subscribe())
        .filter_map(|item| async move {
            // A listener that fell behind skips what it missed.
            let event = item.ok()?;
            SseEvent::default()
                .event(event.kind.name())
                .json_data(&event)
                .ok()
                .map(Ok)
        })
        .take_until(async move { node.stopped().await });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
