//! Membership: join a room (with an invite for a private one) and get the WebSocket's token.

use axum::{
    extract::{Path, Request, State},
    Json,
};
use chat_core::{RoomId, User};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    body::{check_name, json_request},
    guests::{admit_guest, new_guest, USER_NAME_MAX},
    mount_prefix, TAG,
};
use crate::{
    error::{ChatRejection, Problem},
    identity::resolve::MaybeCaller,
    openapi::problems::{BackendDown, BodyRejected, JoinLimit, NoSuchRoom, Unidentified},
    state::ChatState,
};

/// `POST /join-room/{roomId}` body.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"invite": "eyJ0eXAiOi....c2lnbmF0dXJl"}))]
pub struct JoinRoomRequest {
    /// An invite to this room (`POST /rooms/{roomId}/invites`): needed to join a private room
    /// one is not a member of.
    #[serde(default)]
    pub invite: Option<String>,
    /// v1 guest join: the display name to chat under, when the request carries no identity
    /// (guest mode only). Prefer `POST /guests`.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 32)]
    pub user: Option<String>,
}

/// `POST /join-room/{roomId}` response (named `JoinedRoom` in the documents: generators
/// derive `JoinRoomResponse` from the operation id themselves).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[schema(as = JoinedRoom)]
#[schema(example = json!({"roomId": "0b7a2c1e-6a3f-4f7e-9d2b-5c8e1f4a9b30", "user": {"id": "5f0c9a9e-2d4b-4f1a-8c3e-7b6d5a4c3b21", "name": "alice"}, "token": "eyJzdWIiOi....c2lnbmF0dXJl", "websocketUrl": "/ws?token=eyJzdWIiOi....c2lnbmF0dXJl"}))]
#[serde(rename_all = "camelCase")]
pub struct JoinRoomResponse {
    /// The room joined.
    pub room_id: RoomId,
    /// Who joined.
    pub user: User,
    /// A token that identifies this user on the WebSocket (and on REST calls).
    pub token: String,
    /// Absolute path of the WebSocket, mount prefix included, with the token.
    #[schema(example = "/chat/ws?token=eyJ...")]
    pub websocket_url: String,
}

/// Join a room: become a member and get a token for the WebSocket.
///
/// A private room needs an invite (or membership); without one it answers 404, as for a
/// room that does not exist. v1 guests without an identity may send `{"user": name}`.
#[utoipa::path(post, path = "/join-room/{roomId}", tag = TAG, operation_id = "joinRoom",
    params(("roomId" = RoomId, Path, description = "The room id")),
    request_body(content = JoinRoomRequest, description = "An invite for a private room; v1 guests: the display name", content_type = "application/json"),
    responses(
        (status = 200, description = "Joined", body = JoinRoomResponse),
        BodyRejected,
        Unidentified,
        (status = 403, description = "The policy refuses", body = Problem, content_type = "application/problem+json"),
        NoSuchRoom,
        (status = 409, description = "The room is full (`room_full`: it has `max_members_per_room` members)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The name is not 1 to 32 characters", body = Problem, content_type = "application/problem+json"),
        JoinLimit,
        BackendDown,
    ),
    security(("bearer" = []), ()))]
pub(crate) async fn join_room(
    State(state): State<ChatState>,
    MaybeCaller(caller): MaybeCaller,
    Path(room_id): Path<String>,
    request: Request,
) -> Result<Json<JoinRoomResponse>, ChatRejection> {
    let room = RoomId::new(room_id);
    let (parts, body): (_, JoinRoomRequest) = json_request(request).await?;
    let (caller, token) = match caller {
        Some(caller) => {
            let (token, _) = state.inner.tokens.issue(&caller);
            (caller, token)
        }
        None => match body.user.as_deref().filter(|_| state.inner.guests) {
            Some(name) => {
                let name = check_name("user", name, USER_NAME_MAX)?;
                admit_guest(&state, &parts).await?;
                let (caller, token, _) = new_guest(&state, name);
                (caller, token)
            }
            None => {
                return Err(ChatRejection::Unauthorized(
                    "no identity: send a token as `Authorization: Bearer`".into(),
                ))
            }
        },
    };
    let invited = body
        .invite
        .as_deref()
        .is_some_and(|invite| state.inner.tokens.admits(invite, &room));
    state.chat().join_room(&caller, &room, invited).await?;
    let prefix = mount_prefix(&parts.extensions);
    Ok(Json(JoinRoomResponse {
        room_id: room,
        user: caller.user,
        websocket_url: format!("{prefix}/ws?token={token}"),
        token,
    }))
}
