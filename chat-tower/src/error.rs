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
    /// 404: no such user.
    #[error("{0}")]
    UserNotFound(String),
    /// 409: the request conflicts with the chat's state (`code`: `not_in_room`,
    /// `recipient_offline`, `room_full`).
    #[error("{detail}")]
    Conflict {
        /// The contract error code.
        code: &'static str,
        /// What happened.
        detail: String,
    },
    /// 429: over a limit.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503: the chat backend is down.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or a broken backend.
    #[error("{0}")]
    Internal(String),
}

impl ChatRejection {
    /// Status code, machine-readable code and title: the table behind [`Self::problem`].
    fn parts(&self) -> (u16, &'static str, &'static str) {
        match self {
            Self::BadRequest(_) => (400, "bad_request", "Bad request"),
            Self::Unprocessable(_) => (422, "invalid_value", "Invalid value"),
            Self::Unauthorized(_) => (401, "unauthorized", "Unauthorized"),
            Self::Forbidden(_) => (403, "forbidden", "Forbidden"),
            Self::NotFound(_) => (404, "room_not_found", "Room not found"),
            Self::UserNotFound(_) => (404, "user_not_found", "User not found"),
            Self::Conflict { code, .. } => (409, code, "Conflict"),
            Self::TooManyRequests(_) => (429, "rate_limited", "Too many requests"),
            Self::MethodNotAllowed(_) => (405, "method_not_allowed", "Method not allowed"),
            Self::TooLarge(_) => (413, "body_too_large", "Request body too large"),
            Self::Unavailable(_) => (503, "unavailable", "Chat backend unavailable"),
            Self::Internal(_) => (500, "internal", "Internal error"),
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.parts();
        Problem {
            type_uri: format!("urn:roomcast:problem:{code}"),
            title: title.into(),
            status,
            detail: self.to_string(),
            code: code.into(),
        }
    }
}

impl From<chat_core::Error> for ChatRejection {
    fn from(err: chat_core::Error) -> Self {
        use chat_core::{BackendError, Error};
        let detail = err.to_string();
        match err {
            Error::RoomNotFound(_) => Self::NotFound(detail),
            Error::UserNotFound(_) => Self::UserNotFound(detail),
            Error::NotInRoom(_) => Self::Conflict {
                code: "not_in_room",
                detail,
            },
            Error::RecipientOffline(_) => Self::Conflict {
                code: "recipient_offline",
                detail,
            },
            Error::RoomFull { .. } => Self::Conflict {
                code: "room_full",
                detail,
            },
            Error::RateLimited { .. } => Self::TooManyRequests(detail),
            Error::BadCursor => Self::BadRequest(detail),
            Error::Unavailable(BackendError::InvalidCursor) => {
                Self::BadRequest("`before` is not a message id of this room".into())
            }
            Error::Unavailable(_) | Error::ShuttingDown => Self::Unavailable(detail),
            Error::Forbidden(_) => Self::Forbidden(detail),
            Error::BadFrame(_) | Error::EmptyBody | Error::BodyTooLarge { .. } => {
                Self::Unprocessable(detail)
            }
            _ => Self::Internal(detail),
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
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rejection_answers_its_status_as_problem_json() {
        let s = String::new;
        let cases = [
            (ChatRejection::BadRequest(s()), StatusCode::BAD_REQUEST),
            (
                ChatRejection::Unprocessable(s()),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (ChatRejection::Unauthorized(s()), StatusCode::UNAUTHORIZED),
            (ChatRejection::Forbidden(s()), StatusCode::FORBIDDEN),
            (ChatRejection::NotFound(s()), StatusCode::NOT_FOUND),
            (ChatRejection::UserNotFound(s()), StatusCode::NOT_FOUND),
            (
                ChatRejection::Conflict {
                    code: "not_in_room",
                    detail: s(),
                },
                StatusCode::CONFLICT,
            ),
            (
                ChatRejection::TooManyRequests(s()),
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                ChatRejection::MethodNotAllowed(s()),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (ChatRejection::TooLarge(s()), StatusCode::PAYLOAD_TOO_LARGE),
            (
                ChatRejection::Unavailable(s()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                ChatRejection::Internal(s()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (rejection, status) in cases {
            let response = rejection.into_response();
            assert_eq!(response.status(), status);
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
        }
    }
}
