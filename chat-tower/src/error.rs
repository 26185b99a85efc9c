//! HTTP errors as RFC 9457 `application/problem+json`, and the crate's error type.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use std::time::Duration;

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
    /// they apply). Documented as the `ProblemCode` enum: every [`ErrorCode`](chat_core::ErrorCode)
    /// and every code of [`HTTP_PROBLEM_CODES`].
    #[schema(schema_with = problem_code_schema)]
    pub code: String,
    /// On a 5xx only (an extension member): the id under which the server logged what
    /// really went wrong; the `detail` is generic and names it too.
    #[serde(
        rename = "correlationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub correlation_id: Option<String>,
}

/// The `code`s of problems that are not WebSocket error codes, with what each means: with
/// every [`ErrorCode`](chat_core::ErrorCode), the `ProblemCode` enum of the OpenAPI document.
pub const HTTP_PROBLEM_CODES: &[(&str, &str)] = &[
    (
        "bad_request",
        "The request is malformed: a bad query, cursor or JSON body.",
    ),
    ("invalid_value", "Well-formed, but a value is out of range."),
    ("unauthorized", "No identity, or a bad or expired token."),
    (
        "method_not_allowed",
        "The path exists, the method does not.",
    ),
    (
        "unsupported_media_type",
        "A body that is not sent as `application/json`.",
    ),
    ("not_found", "No such path."),
    (
        "not_ready",
        "`/readyz` (mounted by the host): the backend is unreachable or the instance is draining.",
    ),
    (
        "internal",
        "A bug or a broken backend; see `correlationId`.",
    ),
];

/// `Problem.code` in the OpenAPI document: a reference to the `ProblemCode` enum, which
/// `openapi::openapi` builds from [`chat_core::ErrorCode`] and [`HTTP_PROBLEM_CODES`].
fn problem_code_schema() -> utoipa::openapi::Ref {
    let mut reference = utoipa::openapi::Ref::from_schema_name("ProblemCode");
    reference.description = "Machine-readable code (an extension member; the same codes as WebSocket errors where they apply).".into();
    reference
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
    /// 415: a request body that is not sent as `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 404: no such room.
    #[error("{0}")]
    NotFound(String),
    /// 404: no such user.
    #[error("{0}")]
    UserNotFound(String),
    /// 404: no such path (the router's fallback).
    #[error("{0}")]
    NoSuchPath(String),
    /// 409: the request conflicts with the chat's state (`code`: `not_in_room`,
    /// `recipient_offline`, `inbox_full`, `room_full`).
    #[error("{detail}")]
    Conflict {
        /// The contract error code.
        code: &'static str,
        /// What happened.
        detail: String,
    },
    /// 429: over a limit; answered with `Retry-After` (whole seconds, rounded up).
    #[error("{detail}")]
    TooManyRequests {
        /// What happened.
        detail: String,
        /// How long until the request would pass.
        retry_after: Duration,
    },
    /// 503: the chat backend is down.
    #[error("{0}")]
    Unavailable(String),
    /// 503: this instance is draining (shutting down): expected, not a failure, so it is
    /// logged at debug level and has no correlation id. Same `code` as [`Self::Unavailable`].
    #[error("{0}")]
    Draining(String),
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
            Self::NoSuchPath(_) => (404, "not_found", "Not found"),
            Self::Conflict { code, .. } => (409, code, "Conflict"),
            Self::TooManyRequests { .. } => (429, "rate_limited", "Too many requests"),
            Self::MethodNotAllowed(_) => (405, "method_not_allowed", "Method not allowed"),
            Self::TooLarge(_) => (413, "body_too_large", "Request body too large"),
            Self::UnsupportedMediaType(_) => {
                (415, "unsupported_media_type", "Unsupported media type")
            }
            Self::Unavailable(_) => (503, "unavailable", "Chat backend unavailable"),
            Self::Draining(_) => (503, "unavailable", "Instance draining"),
            Self::Internal(_) => (500, "internal", "Internal error"),
        }
    }

    /// The problem document for this error. A 5xx's own text (a backend error may name
    /// hosts, keys or Redis internals) is not in it: its `detail` is generic. The response
    /// ([`IntoResponse`]) also logs the real error under a correlation id and names the id.
    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.parts();
        let detail = match self {
            Self::Unavailable(_) => "the chat backend is unavailable; try again".to_owned(),
            Self::Draining(_) => {
                "this instance is shutting down; try again (another instance will answer)"
                    .to_owned()
            }
            Self::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        Problem {
            type_uri: format!("urn:roomcast:problem:{code}"),
            title: title.into(),
            status,
            detail,
            code: code.into(),
            correlation_id: None,
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
            Error::InboxFull(_) => Self::Conflict {
                code: "inbox_full",
                detail,
            },
            Error::RoomFull { .. } => Self::Conflict {
                code: "room_full",
                detail,
            },
            Error::RateLimited { retry_after, .. } => Self::TooManyRequests {
                detail,
                retry_after,
            },
            Error::BadCursor => Self::BadRequest(detail),
            Error::Unavailable(BackendError::InvalidCursor) => {
                Self::BadRequest("`before` is not a message id of this room".into())
            }
            Error::Unavailable(_) => Self::Unavailable(detail),
            Error::ShuttingDown => Self::Draining(detail),
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
        let mut problem = self.problem();
        let retry_after = match &self {
            Self::TooManyRequests { retry_after, .. } => Some(retry_after_secs(*retry_after)),
            _ => None,
        };
        if let Self::Draining(cause) = &self {
            tracing::debug!(%cause, "refused: draining");
        } else if problem.status >= 500 {
            // The real error goes to the log only, under an id the client can quote.
            let id = chat_core::error::new_correlation_id();
            tracing::error!(correlation_id = %id, status = problem.status, cause = %self, "request failed");
            problem.detail = format!("{} (correlation id {id})", problem.detail);
            problem.correlation_id = Some(id);
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
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// `Retry-After` in whole seconds, rounded up so that waiting that long is enough; at least 1.
fn retry_after_secs(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response's problem document as JSON (the body is buffered: read at once).
    fn problem_json(response: Response) -> serde_json::Value {
        let body = futures_util::FutureExt::now_or_never(axum::body::to_bytes(
            response.into_body(),
            usize::MAX,
        ))
        .expect("a buffered body")
        .expect("readable");
        serde_json::from_slice(&body).expect("problem+json")
    }

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
            (ChatRejection::NoSuchPath(s()), StatusCode::NOT_FOUND),
            (
                ChatRejection::Conflict {
                    code: "not_in_room",
                    detail: s(),
                },
                StatusCode::CONFLICT,
            ),
            (
                ChatRejection::Conflict {
                    code: "recipient_offline",
                    detail: s(),
                },
                StatusCode::CONFLICT,
            ),
            (
                ChatRejection::TooManyRequests {
                    detail: s(),
                    retry_after: Duration::from_millis(1),
                },
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                ChatRejection::MethodNotAllowed(s()),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (ChatRejection::TooLarge(s()), StatusCode::PAYLOAD_TOO_LARGE),
            (
                ChatRejection::UnsupportedMediaType(s()),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                ChatRejection::Unavailable(s()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                ChatRejection::Draining(s()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                ChatRejection::Internal(s()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        let documented: Vec<String> = crate::openapi::problem_codes()
            .into_iter()
            .map(|(code, _)| code)
            .collect();
        for (rejection, status) in cases {
            // Every code the server emits is in the documented `ProblemCode` enum.
            let code = rejection.problem().code;
            assert!(documented.contains(&code), "{code} is not documented");
            let response = rejection.into_response();
            assert_eq!(response.status(), status);
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
        }
    }

    #[test]
    fn a_draining_instance_answers_503_unavailable_without_a_correlation_id() {
        let rejection = ChatRejection::from(chat_core::Error::ShuttingDown);
        let problem = rejection.problem();
        assert_eq!(
            (problem.status, problem.code.as_str()),
            (503, "unavailable")
        );
        assert!(
            problem.detail.contains("shutting down"),
            "{}",
            problem.detail
        );
        // Expected during a deploy: not logged as a failure, nothing for support to quote.
        let response = rejection.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let sent = problem_json(response);
        assert_eq!(sent["code"], "unavailable");
        assert!(sent.get("correlationId").is_none(), "{sent}");
        // A backend failure's 503 does name one (the test below): the difference is the point.
        let failure = ChatRejection::from(chat_core::Error::Unavailable(
            chat_core::BackendError::Unavailable("down".into()),
        ))
        .into_response();
        let sent = problem_json(failure);
        assert!(sent["correlationId"].is_string(), "{sent}");
    }

    #[test]
    fn a_backend_failure_reaches_the_client_as_a_correlation_id_only() {
        use chat_core::{BackendError, Error};
        let raw = "redis: Connection refused (os error 111) at 10.0.0.7:6379";
        let rejection =
            ChatRejection::from(Error::Unavailable(BackendError::Unavailable(raw.into())));
        assert!(!rejection.problem().detail.contains("6379"));
        let response = rejection.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = futures_util::FutureExt::now_or_never(axum::body::to_bytes(
            response.into_body(),
            usize::MAX,
        ))
        .and_then(Result::ok)
        .unwrap_or_default();
        let problem: Problem = serde_json::from_slice(&body).unwrap_or_else(|_| Problem {
            type_uri: String::new(),
            title: String::new(),
            status: 0,
            detail: String::new(),
            code: String::new(),
            correlation_id: None,
        });
        assert_eq!(problem.code, "unavailable");
        let id = problem.correlation_id.unwrap_or_default();
        assert_eq!(id.len(), 32);
        assert!(problem.detail.contains(&id));
        assert!(!problem.detail.contains("6379") && !problem.detail.contains("refused"));
    }

    #[test]
    fn a_429_says_how_many_whole_seconds_to_wait_rounded_up() {
        for (wait, header) in [
            (1, "1"),
            (999, "1"),
            (1_000, "1"),
            (1_001, "2"),
            (5_900, "6"),
        ] {
            let rejection = ChatRejection::TooManyRequests {
                detail: String::new(),
                retry_after: Duration::from_millis(wait),
            };
            let response = rejection.into_response();
            assert_eq!(response.headers()[header::RETRY_AFTER], header, "{wait} ms");
        }
        let response = ChatRejection::BadRequest(String::new()).into_response();
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
    }
}
