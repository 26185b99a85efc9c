//! Guest mode: a display name gets a user id and a token (`POST /guests`).

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::atomic::{AtomicBool, Ordering},
};

use axum::{
    extract::{Request, State},
    http::{request::Parts, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use chat_core::{Caller, User, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    body::{check_name, json_request},
    TAG,
};
use crate::{
    client_addr::{client_address, ClientAddress},
    error::{ChatRejection, Problem},
    openapi::problems::{BackendDown, BodyRejected, GuestLimit},
    state::ChatState,
};

/// Longest user name, in characters.
pub(crate) const USER_NAME_MAX: usize = 32;

/// `POST /guests` body.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"name": "alice"}))]
pub struct GuestRequest {
    /// The display name to chat under: 1 to 32 characters after trimming and Unicode NFC,
    /// without control, format or private-use characters.
    #[schema(min_length = 1, max_length = 32)]
    pub name: String,
}

/// `POST /guests` response.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"user": {"id": "5f0c9a9e-2d4b-4f1a-8c3e-7b6d5a4c3b21", "name": "alice"}, "token": "eyJzdWIiOi....c2lnbmF0dXJl", "expiresAt": "2026-12-07T10:00:00Z"}))]
#[serde(rename_all = "camelCase")]
pub struct GuestResponse {
    /// The new user.
    pub user: User,
    /// Its token: send it as `Authorization: Bearer` (REST and WebSocket) or `?token=`
    /// (WebSocket).
    pub token: String,
    /// When the token expires, RFC 3339.
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// A new guest user for a display name, with its token (guest mode only).
pub(crate) fn new_guest(state: &ChatState, name: String) -> (Caller, String, i64) {
    let caller = Caller::guest(User {
        id: UserId::new(uuid::Uuid::new_v4().to_string()),
        name,
    });
    let (token, exp) = state.inner.tokens.issue(&caller);
    (caller, token, exp)
}

/// Takes one guest creation from the per-address limit of the client `parts` came from
/// (`ChatConfig::guests_per_minute`; see `client_addr` for which address that is). A local
/// process that no proxy forwarded is not limited. Counted for every instance on the backend.
pub(crate) async fn admit_guest(state: &ChatState, parts: &Parts) -> Result<(), ChatRejection> {
    let address = match client_address(parts, &state.inner.proxies) {
        ClientAddress::Remote(address) => address,
        ClientAddress::Local => return Ok(()),
        ClientAddress::Unknown => {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "a guest from an unknown address: all such guests share one limit \
                     (serve with chat_tower::serve or axum's ConnectInfo, and name the proxies \
                     in front with ChatBuilder::trusted_proxies)"
                );
            }
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
    };
    Ok(state.chat().admit_guest(address).await?)
}

/// Become a guest: a display name gets a new user id and a token (guest mode only: 404
/// where the host identifies users itself).
#[utoipa::path(post, path = "/guests", tag = TAG, operation_id = "createGuest",
    request_body(content = GuestRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The guest and its token", body = GuestResponse),
        BodyRejected,
        (status = 404, description = "Guest mode is off", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The name is not 1 to 32 characters, or holds control, format or private-use characters", body = Problem, content_type = "application/problem+json"),
        GuestLimit,
        BackendDown,
    ),
    security(()))]
pub(crate) async fn create_guest(
    State(state): State<ChatState>,
    request: Request,
) -> Result<Response, ChatRejection> {
    if !state.inner.guests {
        return Err(ChatRejection::NotFound("guest mode is off".into()));
    }
    let (parts, body): (_, GuestRequest) = json_request(request).await?;
    let name = check_name("name", &body.name, USER_NAME_MAX)?;
    admit_guest(&state, &parts).await?;
    let (caller, token, exp) = new_guest(&state, name);
    state.chat().remember(&caller.user).await?;
    let response = GuestResponse {
        user: caller.user,
        token,
        expires_at: rfc3339(exp),
    };
    Ok((StatusCode::CREATED, Json(response)).into_response())
}

/// Unix seconds as RFC 3339.
pub(crate) fn rfc3339(unix_s: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_s)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
