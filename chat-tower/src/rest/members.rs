//! A room's members: list them page by page, leave for good, invite others.

use std::time::Duration;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use chat_core::{MemberPage, RoomId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    guests::rfc3339,
    rooms::{Page, PageQuery},
    TAG,
};
use crate::{
    error::ChatRejection,
    identity::resolve::Authenticated,
    openapi::problems::{BackendDown, BadPage, NoSuchRoom, Unidentified},
    state::ChatState,
};

/// How long an invite admits its holder: 7 days.
pub const INVITE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// `POST /rooms/{roomId}/invites` response.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"invite": "eyJ0eXAiOi....c2lnbmF0dXJl", "expiresAt": "2026-12-07T10:00:00Z"}))]
#[serde(rename_all = "camelCase")]
pub struct InviteResponse {
    /// An opaque, signed code that admits its holder to this room
    /// (`POST /join-room/{roomId}` with `{"invite": ...}`), on every instance.
    pub invite: String,
    /// When it stops admitting, RFC 3339.
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// A page of a room's members, in the order they joined, with who is online. A private
/// room's members are visible to its members only (404 for everyone else).
#[utoipa::path(get, path = "/rooms/{roomId}/members", tag = TAG, operation_id = "listRoomMembers",
    params(("roomId" = RoomId, Path, description = "The room id"), PageQuery),
    responses(
        (status = 200, description = "A page of members", body = MemberPage),
        BadPage,
        Unidentified,
        NoSuchRoom,
        BackendDown,
    ),
    security(("bearer" = [])))]
pub(crate) async fn list_members(
    State(state): State<ChatState>,
    Authenticated(caller): Authenticated,
    Path(room_id): Path<String>,
    page: Page,
) -> Result<Json<MemberPage>, ChatRejection> {
    let room = RoomId::new(room_id);
    let members = state
        .chat()
        .members(&caller, &room, page.cursor.as_deref(), page.limit)
        .await?;
    Ok(Json(members))
}

/// Leave a room for good: the caller stops being a member (the WebSocket `leave` only stops
/// the live feed).
#[utoipa::path(delete, path = "/rooms/{roomId}/members/me", tag = TAG, operation_id = "leaveRoom",
    params(("roomId" = RoomId, Path, description = "The room id")),
    responses(
        (status = 204, description = "No longer a member"),
        Unidentified,
        NoSuchRoom,
        BackendDown,
    ),
    security(("bearer" = [])))]
pub(crate) async fn leave_room(
    State(state): State<ChatState>,
    Authenticated(caller): Authenticated,
    Path(room_id): Path<String>,
) -> Result<Response, ChatRejection> {
    state
        .chat()
        .leave_room(&caller, &RoomId::new(room_id))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An invite to a room, for a member to share: it admits its holder to the room (needed for
/// private rooms) for 7 days.
#[utoipa::path(post, path = "/rooms/{roomId}/invites", tag = TAG, operation_id = "createInvite",
    params(("roomId" = RoomId, Path, description = "The room id")),
    responses(
        (status = 201, description = "The invite", body = InviteResponse),
        Unidentified,
        (status = 404, description = "No such room, or the caller is not a member", body = crate::Problem, content_type = "application/problem+json"),
        BackendDown,
    ),
    security(("bearer" = [])))]
pub(crate) async fn create_invite(
    State(state): State<ChatState>,
    Authenticated(caller): Authenticated,
    Path(room_id): Path<String>,
) -> Result<Response, ChatRejection> {
    let room = RoomId::new(room_id);
    state.chat().membership(&caller, &room).await?;
    let (invite, exp) = state.inner.tokens.invite(&room, INVITE_TTL);
    let response = InviteResponse {
        invite,
        expires_at: rfc3339(exp),
    };
    Ok((StatusCode::CREATED, Json(response)).into_response())
}
