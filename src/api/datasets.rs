//! Routes of datasets: the network's cards, and the owner's declarations.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use iris_behaviours::DatasetCard;

use super::{ApiError, ApiJson, ApiQuery, ApiState};
use crate::api_types::{AddDataset, DatasetHolder, DatasetsQuery, ErrorBody};

/// Every dataset of the network, with the node that holds it (this node's
/// included); `?tag=T` keeps those with the tag.
#[utoipa::path(get, path = "/v1/datasets", tag = "datasets", params(DatasetsQuery),
    responses((status = 200, body = Vec<DatasetHolder>),
              (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn list(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<DatasetsQuery>,
) -> Result<Json<Vec<DatasetHolder>>, ApiError> {
    // In no network, the node's own cards are the whole list (below).
    let nodes = state.node.membership.nodes().await.unwrap_or_default();
    let mut holders: Vec<DatasetHolder> = nodes
        .into_iter()
        .flat_map(|node| {
            node.datasets.into_iter().map(move |card| DatasetHolder {
                node: node.name.clone(),
                peer_id: node.peer_id,
                state: node.state,
                card,
            })
        })
        .collect();
    if holders.is_empty() {
        let status = state.node.status().await;
        holders = state
            .node
            .datasets
            .cards()
            .into_iter()
            .map(|card| DatasetHolder {
                node: status.name.clone(),
                peer_id: status.peer_id,
                state: iris_behaviours::Liveness::Alive,
                card,
            })
            .collect();
    }
    if let Some(tag) = &query.tag {
        holders.retain(|h| h.card.tags.iter().any(|t| t == tag));
    }
    holders.sort_by(|a, b| (&a.card.name, &a.node).cmp(&(&b.card.name, &b.node)));
    Ok(Json(holders))
}

/// Declares a dataset of this node: its schema and row count are found
/// from its CSV files and its card is written beside them.
#[utoipa::path(post, path = "/v1/datasets", tag = "datasets", request_body = AddDataset,
    responses((status = 201, body = DatasetCard),
              (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn add(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<AddDataset>,
) -> Result<(StatusCode, Json<DatasetCard>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.node.datasets.add(body).await?),
    ))
}

/// Reads every card of this node again, after its owner edited them.
#[utoipa::path(post, path = "/v1/datasets/reload", tag = "datasets",
    responses((status = 200, body = Vec<DatasetCard>),
              (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn reload(
    State(state): State<ApiState>,
) -> Result<Json<Vec<DatasetCard>>, ApiError> {
    Ok(Json(state.node.datasets.reload().await?))
}

/// Takes a dataset of this node off the network (its data and card stay).
#[utoipa::path(post, path = "/v1/datasets/{name}/rm", tag = "datasets",
    params(("name" = String, Path, description = "the dataset's name", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    responses((status = 200, body = Vec<DatasetCard>),
              (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn remove(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<DatasetCard>>, ApiError> {
    state.node.datasets.remove(&name).await?;
    Ok(Json(state.node.datasets.cards()))
}
