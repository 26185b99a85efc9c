//! History: pages of a room's messages, oldest first.

use axum::{
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Response},
};
use chat_core::{MessageId, RoomId, User};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::TAG;
use crate::{
    error::{ChatRejection, Problem},
    identity::resolve::Authenticated,
    openapi::problems::{BackendDown, NoSuchRoom, Unidentified},
    state::ChatState,
};

/// `GET /rooms/{roomId}/messages` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Return messages older than this message id (the previous page's `nextBefore`).
    pub before: Option<String>,
    /// How many messages, 1 to 200. Default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// A room message frame in history (the same JSON as the WebSocket `message` frame).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"type": "message", "id": "1795946218367-0", "room": "0b7a2c1e-6a3f-4f7e-9d2b-5c8e1f4a9b30", "from": {"id": "5f0c9a9e-2d4b-4f1a-8c3e-7b6d5a4c3b21", "name": "alice"}, "body": "hello", "ts": 1795946218367i64}))]
pub struct HistoryMessage {
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: MessageType,
    /// Unique within the room; opaque.
    pub id: MessageId,
    /// The room.
    pub room: RoomId,
    /// The sender.
    pub from: User,
    /// The text.
    pub body: String,
    /// Unix epoch milliseconds.
    pub ts: i64,
}

/// The `type` of a room message frame.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    /// A room message.
    Message,
}

/// `GET /rooms/{roomId}/messages` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"messages": [{"type": "message", "id": "1795946218367-0", "room": "0b7a2c1e-6a3f-4f7e-9d2b-5c8e1f4a9b30", "from": {"id": "5f0c9a9e-2d4b-4f1a-8c3e-7b6d5a4c3b21", "name": "alice"}, "body": "hello", "ts": 1795946218367i64}], "nextBefore": null}))]
#[serde(rename_all = "camelCase")]
pub struct HistoryResponse {
    /// Room message frames, oldest first.
    pub messages: Vec<HistoryMessage>,
    /// Pass as `before` for the previous page; `null` at the start of the history.
    #[schema(required = true)]
    pub next_before: Option<MessageId>,
}

/// A page of a room's history, oldest first. Page backwards with `before=nextBefore`.
#[utoipa::path(get, path = "/rooms/{roomId}/messages", tag = TAG, operation_id = "listRoomMessages",
    params(("roomId" = RoomId, Path, description = "The room id"), HistoryQuery),
    responses(
        (status = 200, description = "A page of history", body = HistoryResponse),
        (status = 400, description = "Bad `before` or `limit`", body = Problem, content_type = "application/problem+json"),
        Unidentified,
        NoSuchRoom,
        BackendDown,
    ),
    security(("bearer" = [])))]
pub(crate) async fn room_messages(
    State(state): State<ChatState>,
    Authenticated(caller): Authenticated,
    Path(room_id): Path<String>,
    uri: axum::http::Uri,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ChatRejection> {
    let Query(query) = query.map_err(|_| super::rooms::bad_query(&uri, &state))?;
    let chat = state.chat();
    let limit = super::rooms::page_limit(query.limit, &state)?;
    // An empty `before=` is a malformed cursor like any other (400), not "no cursor".
    let before = query.before.map(MessageId::new);
    let page = chat
        .history(&caller, &RoomId::new(room_id), before.as_ref(), limit)
        .await?;
    Ok(page_body(&page.messages, page.next_before.as_ref()))
}

/// `{"messages": [...], "nextBefore": ...}` of a history page. The frames are stored
/// serialized: they are spliced into the response as they are.
pub(super) fn page_body(messages: &[bytes::Bytes], next_before: Option<&MessageId>) -> Response {
    let mut body = Vec::with_capacity(64 + messages.iter().map(|m| m.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"messages\":[");
    for (i, frame) in messages.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(frame);
    }
    body.extend_from_slice(b"],\"nextBefore\":");
    body.extend_from_slice(&serde_json::to_vec(&next_before).unwrap_or_else(|_| b"null".to_vec()));
    body.push(b'}');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
