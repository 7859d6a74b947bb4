//! Routes of jobs: submit, list, show (and wait), cancel, logs, gather.

use std::time::Duration;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};

use super::{ApiError, ApiJson, ApiQuery, ApiState};
use crate::{
    api_types::{
        Gathered, Job, JobRequest, LogsQuery, SecureSumRequest, TaskLogs, WaitQuery, MAX_WAIT_SECS,
    },
    secagg::SumOutcome,
};

pub(super) async fn submit(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<JobRequest>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.node.jobs.submit(request).await?),
    ))
}

pub(super) async fn list(State(state): State<ApiState>) -> Json<Vec<Job>> {
    Json(state.node.jobs.jobs())
}

/// The job; with `?wait=S`, once it has ended or S seconds have passed.
pub(super) async fn show(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<WaitQuery>,
) -> Result<Json<Job>, ApiError> {
    let wait = match query.wait {
        None => Duration::ZERO,
        Some(secs) if secs.is_finite() && (0.0..=MAX_WAIT_SECS).contains(&secs) => {
            Duration::from_secs_f64(secs)
        }
        Some(secs) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("wait={secs}: give seconds from 0 to {MAX_WAIT_SECS}"),
            ))
        }
    };
    Ok(Json(state.node.jobs.wait(&id, wait).await?))
}

pub(super) async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(state.node.jobs.cancel(&id).await?))
}

pub(super) async fn logs(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> Result<Json<Vec<TaskLogs>>, ApiError> {
    Ok(Json(state.node.jobs.logs(&id, &query).await?))
}

pub(super) async fn gather(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Gathered>, ApiError> {
    Ok(Json(state.node.jobs.gather(&id).await?))
}

/// The secure sum of the tasks' update files, once the job has ended.
pub(super) async fn secure_sum(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SecureSumRequest>,
) -> Result<Json<SumOutcome>, ApiError> {
    let job = state.node.jobs.job(&id)?;
    let sum = state
        .node
        .sums
        .sum_job(&job, &body.file, &state.node.files)
        .await?;
    Ok(Json(sum))
}
