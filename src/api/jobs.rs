//! Routes of jobs: submit, list, show (and wait), cancel, logs, gather.

use std::time::Duration;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};

use super::{ApiError, ApiJson, ApiQuery, ApiState};
use crate::api_types::ErrorBody;
use crate::{
    api_types::{
        Gathered, Job, JobRequest, LogsQuery, SecureSumRequest, TaskLogs, WaitQuery, MAX_WAIT_SECS,
    },
    jobs::JobRecord,
    secagg::SumOutcome,
};

#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = JobRequest, responses((status = 201, body = Job), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn submit(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<JobRequest>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.node.jobs.submit(request).await?.view()),
    ))
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", responses((status = 200, body = Vec<Job>), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn list(State(state): State<ApiState>) -> Json<Vec<Job>> {
    Json(state.node.jobs.jobs().iter().map(JobRecord::view).collect())
}

/// The job; with `?wait=S`, once it has ended or S seconds have passed.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "the job id", pattern = r"^[A-Za-z0-9-]{1,64}$"), WaitQuery), responses((status = 200, body = Job), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
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
    Ok(Json(state.node.jobs.wait(&id, wait).await?.view()))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path, description = "the job id", pattern = r"^[A-Za-z0-9-]{1,64}$")), responses((status = 200, body = Job), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(state.node.jobs.cancel(&id).await?.view()))
}

#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs", params(("id" = String, Path, description = "the job id", pattern = r"^[A-Za-z0-9-]{1,64}$"), LogsQuery), responses((status = 200, body = Vec<TaskLogs>), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn logs(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> Result<Json<Vec<TaskLogs>>, ApiError> {
    Ok(Json(state.node.jobs.logs(&id, &query).await?))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/gather", tag = "jobs", params(("id" = String, Path, description = "the job id", pattern = r"^[A-Za-z0-9-]{1,64}$")), responses((status = 200, body = Gathered), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn gather(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Gathered>, ApiError> {
    Ok(Json(state.node.jobs.gather(&id).await?))
}

/// The secure sum of the tasks' update files, once the job has ended.
#[utoipa::path(post, path = "/v1/jobs/{id}/secure-sum", tag = "jobs", request_body = SecureSumRequest, params(("id" = String, Path, description = "the job id", pattern = r"^[A-Za-z0-9-]{1,64}$")), responses((status = 200, body = SumOutcome), (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn secure_sum(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SecureSumRequest>,
) -> Result<Json<SumOutcome>, ApiError> {
    let job = state.node.jobs.job(&id)?.view();
    let (membership, files) = (&state.node.membership, &state.node.files);
    let sum = crate::secagg::sum_job(membership, &job, &body, files).await?;
    Ok(Json(sum))
}
