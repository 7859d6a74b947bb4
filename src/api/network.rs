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
use crate::{
    api_types::{
        CreateNetwork, JoinNetwork, Left, NetworkMembership, NodeView, RemoveNode, Removed, Status,
    },
    membership::MembershipError,
};

pub(super) async fn status(State(state): State<ApiState>) -> Json<Status> {
    Json(state.node.status().await)
}

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

pub(super) async fn create(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<CreateNetwork>,
) -> Result<(StatusCode, Json<NetworkMembership>), ApiError> {
    let membership = state.node.membership.create(&body).await?;
    Ok((StatusCode::CREATED, Json(membership)))
}

pub(super) async fn join(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<JoinNetwork>,
) -> Result<Json<NetworkMembership>, ApiError> {
    Ok(Json(state.node.membership.join(&body).await?))
}

pub(super) async fn leave(State(state): State<ApiState>) -> Result<Json<Left>, ApiError> {
    let network = state.node.membership.leave().await?;
    Ok(Json(Left { left: network.name }))
}

pub(super) async fn remove(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<RemoveNode>,
) -> Result<Json<Removed>, ApiError> {
    Ok(Json(state.node.membership.remove(&body.name).await?))
}

pub(super) async fn nodes(State(state): State<ApiState>) -> Result<Json<Vec<NodeView>>, ApiError> {
    Ok(Json(state.node.membership.nodes().await?))
}

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
