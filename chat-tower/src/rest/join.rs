//! Membership: join a room and get the token for the WebSocket (guests pick a name here).

use axum::{
    extract::{Path, Request, State},
    Json,
};
use chat_core::{RoomId, User, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    body::{check_len, json_body, read_body},
    mount_prefix, TAG,
};
use crate::{
    error::{ChatRejection, Problem},
    openapi::problems::{BackendDown, BodyRejected, NoSuchRoom, Unidentified},
    state::ChatState,
};

/// `POST /join-room/{roomId}` body.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"user": "alice"}))]
pub struct JoinRoomRequest {
    /// Guest mode: the display name to chat under, 1 to 32 characters. Ignored when the
    /// request already carries an identity. `null` is the same as absent.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 32)]
    pub user: Option<String>,
}

/// `POST /join-room/{roomId}` response.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
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
/// In guest mode a client without an identity picks a display name (`user`) and gets a new
/// user id bound to it by the token. With a host identity (or a token) the body may be empty.
#[utoipa::path(post, path = "/join-room/{roomId}", tag = TAG,
    params(("roomId" = String, Path, description = "The room id")),
    request_body(content = JoinRoomRequest, description = "Guest mode: the display name (optional with a token or host identity)", content_type = "application/json"),
    responses(
        (status = 200, description = "Joined", body = JoinRoomResponse),
        BodyRejected,
        Unidentified,
        NoSuchRoom,
        (status = 422, description = "The name is not 1 to 32 characters", body = Problem, content_type = "application/problem+json"),
        BackendDown,
    ),
    security((), ("token" = []), ("bearer" = [])))]
pub(crate) async fn join_room(
    State(state): State<ChatState>,
    Path(room_id): Path<String>,
    request: Request,
) -> Result<Json<JoinRoomResponse>, ChatRejection> {
    let (parts, body) = request.into_parts();
    let room = RoomId::new(room_id);
    let chat = state.chat();
    // 404 before the identity and body checks, as documented.
    chat.room_info(&room).await?;
    let body: JoinRoomRequest = json_body(&read_body(body).await?)?;
    let user = match state.identify(&parts).await? {
        Some(user) => user,
        None if state.inner.guests => {
            let name = body.user.as_deref().ok_or_else(|| {
                ChatRejection::Unauthorized(
                    "no identity: send {\"user\": \"a display name\"} to join as a guest, or a token".into(),
                )
            })?;
            User {
                id: UserId::new(uuid::Uuid::new_v4().to_string()),
                name: check_len("user", name, 32)?,
            }
        }
        None => return Err(ChatRejection::Unauthorized("no identity".into())),
    };
    chat.add_member(&room, &user).await?;
    let token = state.inner.tokens.issue(&user);
    let prefix = mount_prefix(&parts.extensions);
    Ok(Json(JoinRoomResponse {
        room_id: room,
        user,
        websocket_url: format!("{prefix}/ws?token={token}"),
        token,
    }))
}
