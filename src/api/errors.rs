//! Errors as the API reports them. The status comes from the error's
//! variant, never from its text: a caller's mistake is 4xx, a fault of this
//! node 5xx, and a peer's failure 502 (or what the peer's refusal says).

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use iris_behaviours::RefusalKind;

use crate::{
    api_types::ErrorBody, datasets::DatasetError, files::FileError, images::ImageError,
    jobs::JobError, membership::MembershipError, network::NetworkError, secagg::SumJobError,
    sessions::SessionError,
};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn from_error(status: StatusCode, error: &impl std::fmt::Display) -> Self {
        Self::new(status, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

fn network_status(error: &NetworkError) -> StatusCode {
    match error {
        NetworkError::NoPeerId(_) => StatusCode::BAD_REQUEST,
        NetworkError::Refused { .. } => StatusCode::CONFLICT,
        NetworkError::PeerRefused { kind, .. } => match kind {
            RefusalKind::Forbidden => StatusCode::FORBIDDEN,
            RefusalKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
            RefusalKind::Invalid => StatusCode::BAD_REQUEST,
            RefusalKind::NotFound => StatusCode::NOT_FOUND,
            RefusalKind::Failed => StatusCode::BAD_GATEWAY,
        },
        NetworkError::WrongKey { .. }
        | NetworkError::Unreachable { .. }
        | NetworkError::NoAnswer { .. }
        | NetworkError::Malformed { .. }
        | NetworkError::BadWelcome { .. } => StatusCode::BAD_GATEWAY,
        NetworkError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        NetworkError::Listen { .. } | NetworkError::Store(_) | NetworkError::Build(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn membership_status(error: &MembershipError) -> StatusCode {
    match error {
        MembershipError::NotInNetwork | MembershipError::AlreadyInNetwork(_) => {
            StatusCode::CONFLICT
        }
        MembershipError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        MembershipError::Invalid(_) => StatusCode::BAD_REQUEST,
        MembershipError::NoSuchNode(_) | MembershipError::NoTarget(_) => StatusCode::NOT_FOUND,
        MembershipError::Forbidden(_) => StatusCode::FORBIDDEN,
        MembershipError::Network(e) => network_status(e),
        MembershipError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn file_status(error: &FileError) -> StatusCode {
    match error {
        FileError::Invalid(_) => StatusCode::BAD_REQUEST,
        FileError::NotFound(_) => StatusCode::NOT_FOUND,
        FileError::Network(e) => network_status(e),
        FileError::Membership(e) => membership_status(e),
        FileError::Transfer(_) => StatusCode::BAD_GATEWAY,
        FileError::Local(_) => StatusCode::INTERNAL_SERVER_ERROR,
        FileError::NoRoom(_) => StatusCode::INSUFFICIENT_STORAGE,
        FileError::Engine(_) => StatusCode::SERVICE_UNAVAILABLE,
        FileError::InTheWay(_) => StatusCode::CONFLICT,
    }
}

impl From<MembershipError> for ApiError {
    fn from(error: MembershipError) -> Self {
        Self::from_error(membership_status(&error), &error)
    }
}

impl From<FileError> for ApiError {
    fn from(error: FileError) -> Self {
        Self::from_error(file_status(&error), &error)
    }
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> Self {
        let status = match &error {
            JobError::NotFound(_) | JobError::NoTask { .. } | JobError::NoMockSample(_) => {
                StatusCode::NOT_FOUND
            }
            JobError::Invalid(_) => StatusCode::BAD_REQUEST,
            JobError::QuorumOverTargets { .. } | JobError::RoundTaken { .. } => {
                StatusCode::CONFLICT
            }
            JobError::Membership(e) => membership_status(e),
            JobError::Logs { source, .. } => membership_status(source),
            JobError::Gather { source, .. } => file_status(source),
        };
        Self::from_error(status, &error)
    }
}

impl From<SumJobError> for ApiError {
    fn from(error: SumJobError) -> Self {
        let status = match &error {
            SumJobError::Invalid(_) => StatusCode::BAD_REQUEST,
            // Too few sites, a refusal or a falsified share: nothing to sum.
            SumJobError::Running(_) | SumJobError::Sum(_) => StatusCode::CONFLICT,
            SumJobError::Keep(e) => file_status(e),
        };
        Self::from_error(status, &error)
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        let status = match &error {
            SessionError::Invalid(_) => StatusCode::BAD_REQUEST,
            SessionError::Membership(e) => membership_status(e),
        };
        Self::from_error(status, &error)
    }
}

impl From<ImageError> for ApiError {
    fn from(error: ImageError) -> Self {
        let status = match &error {
            ImageError::Invalid(_) | ImageError::Refused(_) => StatusCode::BAD_REQUEST,
            ImageError::NotFound(_) => StatusCode::NOT_FOUND,
            ImageError::Local(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ImageError::Engine(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::from_error(status, &error)
    }
}

impl From<DatasetError> for ApiError {
    fn from(error: DatasetError) -> Self {
        let status = match &error {
            DatasetError::Invalid(_) => StatusCode::BAD_REQUEST,
            DatasetError::NotFound(_) | DatasetError::NoDirectory(_) => StatusCode::NOT_FOUND,
            DatasetError::Local(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::from_error(status, &error)
    }
}
