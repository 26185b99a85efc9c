//! Direct-message history: pages of the caller's conversation with one user, oldest first.

use axum::{
    extract::{Path, Query, State},
    response::Response,
};
use chat_core::{MessageId, User, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{messages::HistoryQuery, TAG};
use crate::{
    error::{ChatRejection, Problem},
    identity::resolve::Authenticated,
    openapi::problems::{BackendDown, Unidentified},
    state::ChatState,
};

/// A direct message in history (the same JSON as the WebSocket `direct` frame).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"type": "direct", "id": "019ad5e2-7c1a-7b3e-9f40-2d6c8e1a5b37", "from": {"id": "5f0c9a9e-2d4b-4f1a-8c3e-7b6d5a4c3b21", "name": "alice"}, "to": "8e2f4c6a-1b3d-4e5f-a7b9-c1d3e5f7a9b0", "body": "see you at noon", "ts": 1795946218367i64}))]
pub struct DirectHistoryMessage {
    /// Always `direct`.
    #[serde(rename = "type")]
    pub kind: DirectType,
    /// The message's id (the `id` of the sender's `ack`).
    pub id: MessageId,
    /// The sender.
    pub from: User,
    /// The recipient's user id.
    pub to: UserId,
    /// The text.
    pub body: String,
    /// Unix epoch milliseconds.
    pub ts: i64,
}

/// The `type` of a direct message frame.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DirectType {
    /// A direct message.
    Direct,
}

/// `GET /directs/{userId}/messages` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectHistoryResponse {
    /// Direct message frames of both users, oldest first.
    pub messages: Vec<DirectHistoryMessage>,
    /// Pass as `before` for the previous page; `null` at the start of the conversation.
    #[schema(required = true)]
    pub next_before: Option<MessageId>,
}

/// A page of the caller's direct messages with one user (sent and received), oldest first.
/// Page backwards with `before=nextBefore`. Kept with the same caps as a room's history; a
/// user the caller never wrote with has an empty history.
#[utoipa::path(get, path = "/directs/{userId}/messages", tag = TAG, operation_id = "listDirectMessages",
    params(("userId" = String, Path, description = "The other user's id"), HistoryQuery),
    responses(
        (status = 200, description = "A page of the conversation", body = DirectHistoryResponse),
        (status = 400, description = "Bad `before` or `limit`", body = Problem, content_type = "application/problem+json"),
        Unidentified,
        BackendDown,
    ),
    security(("bearer" = [])))]
pub(crate) async fn direct_messages(
    State(state): State<ChatState>,
    Authenticated(caller): Authenticated,
    Path(user_id): Path<String>,
    uri: axum::http::Uri,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ChatRejection> {
    let Query(query) = query.map_err(|_| super::rooms::bad_query(&uri, &state))?;
    let limit = super::rooms::page_limit(query.limit, &state)?;
    let before = query.before.map(MessageId::new);
    let page = state
        .chat()
        .direct_history(&caller, &UserId::new(user_id), before.as_ref(), limit)
        .await?;
    Ok(super::messages::page_body(
        &page.messages,
        page.next_before.as_ref(),
    ))
}

/// Keeps the compiler honest about the schema matching the frame the engine stores.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_type_reads_a_stored_direct_frame() {
        let frame = chat_core::protocol::ServerFrame::Direct(chat_core::protocol::DirectMessage {
            id: MessageId::new("019ad5e2-7c1a-7b3e-9f40-2d6c8e1a5b37"),
            from: User::new("a", "Ann"),
            to: UserId::new("b"),
            body: "hi".into(),
            ts: 5,
        })
        .encode();
        let read: DirectHistoryMessage = serde_json::from_slice(&frame).unwrap();
        assert_eq!((read.body.as_str(), read.ts), ("hi", 5));
    }
}
