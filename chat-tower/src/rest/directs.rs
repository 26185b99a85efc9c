//! Direct-message history: the caller's conversations, the most recent first, and pages of
//! one conversation, oldest first.

use axum::{
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Response},
};
use chat_core::{
    backend::history::{Conversation, ConversationCursor},
    MessageId, User, UserId,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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

/// `GET /directs` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationsQuery {
    /// Return the conversations after this place in the list (the previous page's
    /// `nextBefore`; opaque).
    pub before: Option<String>,
    /// How many conversations, 1 to 200. Default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// One of the caller's conversations.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSummary {
    /// The other user, with the name the chat last saw them with (their id when it has not
    /// seen them within the room TTL and the last message is the caller's).
    pub user: User,
    /// The conversation's last direct message, either way.
    pub last_message: DirectHistoryMessage,
}

/// `GET /directs` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationsResponse {
    /// The caller's conversations, the one with the most recent message first.
    pub conversations: Vec<ConversationSummary>,
    /// Pass as `before` for the next page; `null` at the end of the list.
    #[schema(required = true)]
    pub next_before: Option<String>,
}

/// The caller's conversations: each user a direct message was kept with (either way) and the
/// last one, the most recent first. Page on with `before=nextBefore`. At most 1,000 are
/// listed by default (the least recent drop out), none whose last message is older than the
/// history keeps.
#[utoipa::path(get, path = "/directs", tag = TAG, operation_id = "listConversations",
    params(ConversationsQuery),
    responses(
        (status = 200, description = "A page of the caller's conversations", body = ConversationsResponse),
        (status = 400, description = "Bad `before` or `limit`", body = Problem, content_type = "application/problem+json"),
        Unidentified,
        BackendDown,
    ),
    security(("bearer" = [])))]
pub(crate) async fn list_conversations(
    State(state): State<ChatState>,
    Authenticated(caller): Authenticated,
    uri: axum::http::Uri,
    query: Result<Query<ConversationsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ChatRejection> {
    let Query(query) = query.map_err(|_| super::rooms::bad_query(&uri, &state))?;
    let limit = super::rooms::page_limit(query.limit, &state)?;
    let before = query
        .before
        .as_deref()
        .map(ConversationCursor::parse)
        .transpose()
        .map_err(|_| ChatRejection::BadRequest("`before` is not a place in this list".into()))?;
    let page = state
        .chat()
        .conversations(&caller, before.as_ref(), limit)
        .await?;
    Ok(conversations_body(
        &page.conversations,
        page.next_before.as_ref(),
    ))
}

/// The response as bytes, each last message's stored frame spliced in as it is.
fn conversations_body(
    conversations: &[Conversation],
    next_before: Option<&ConversationCursor>,
) -> Response {
    let mut body = Vec::with_capacity(
        64 + conversations
            .iter()
            .map(|c| c.last.len() + 96)
            .sum::<usize>(),
    );
    body.extend_from_slice(b"{\"conversations\":[");
    for (i, conversation) in conversations.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"user\":");
        let user = User {
            name: peer_name(conversation),
            id: conversation.peer.clone(),
        };
        body.extend_from_slice(&serde_json::to_vec(&user).unwrap_or_default());
        body.extend_from_slice(b",\"lastMessage\":");
        body.extend_from_slice(&conversation.last);
        body.push(b'}');
    }
    body.extend_from_slice(b"],\"nextBefore\":");
    let next = next_before.map(ToString::to_string);
    body.extend_from_slice(&serde_json::to_vec(&next).unwrap_or_else(|_| b"null".to_vec()));
    body.push(b'}');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The other user's name: as the chat last saw them, else as their last message says, else
/// their id (as the members list does).
fn peer_name(conversation: &Conversation) -> String {
    if let Some(name) = &conversation.peer_name {
        return name.clone();
    }
    serde_json::from_slice::<DirectHistoryMessage>(&conversation.last)
        .ok()
        .filter(|last| last.from.id == conversation.peer)
        .map_or_else(
            || conversation.peer.as_str().to_owned(),
            |last| last.from.name,
        )
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
