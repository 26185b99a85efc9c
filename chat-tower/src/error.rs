//! HTTP errors as RFC 9457 `application/problem+json`, and the crate's error type.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An RFC 9457 problem document, as every REST error is answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:roomcast:problem:room_not_found",
    "title": "Room not found",
    "status": 404,
    "detail": "room 0b7a... not found",
    "code": "room_not_found"
}))]
pub struct Problem {
    /// A URI identifying the problem type.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short, human-readable summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// Machine-readable code (an extension member; the same codes as WebSocket errors where
    /// they apply).
    pub code: String,
}

/// What a chat HTTP endpoint can fail with; renders as [`Problem`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatRejection {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 422: well-formed, but a value is out of range.
    #[error("{0}")]
    Unprocessable(String),
    /// 401: no identity, or a bad or expired token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: not allowed (e.g. a WebSocket from an origin that is not allowed).
    #[error("{0}")]
    Forbidden(String),
    /// 405: the path exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 413: the request body is too large.
    #[error("{0}")]
    TooLarge(String),
    /// 404: no such room.
    #[error("{0}")]
    NotFound(String),
    /// 503: the chat backend is down.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or a broken backend.
    #[error("{0}")]
    Internal(String),
}

impl ChatRejection {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", "Bad request"),
            Self::Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_value",
                "Invalid value",
            ),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "room_not_found", "Room not found"),
            Self::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            Self::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "Request body too large",
            ),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Chat backend unavailable",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.parts();
        Problem {
            type_uri: format!("urn:roomcast:problem:{code}"),
            title: title.into(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: code.into(),
        }
    }
}

impl From<chat_core::Error> for ChatRejection {
    fn from(err: chat_core::Error) -> Self {
        use chat_core::{BackendError, Error};
        match err {
            Error::RoomNotFound(_) => Self::NotFound(err.to_string()),
            Error::Unavailable(BackendError::InvalidCursor) => {
                Self::BadRequest("`before` is not a message id of this room".into())
            }
            Error::Unavailable(_) | Error::ShuttingDown => Self::Unavailable(err.to_string()),
            Error::Forbidden(_) => Self::Forbidden(err.to_string()),
            Error::BadFrame(_) | Error::EmptyBody | Error::BodyTooLarge { .. } => {
                Self::Unprocessable(err.to_string())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ChatRejection {
    fn into_response(self) -> Response {
        let problem = self.problem();
        if problem.status >= 500 {
            tracing::error!(detail = %problem.detail, "request failed");
        }
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
