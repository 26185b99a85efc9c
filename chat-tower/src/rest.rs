//! The REST endpoints of contract v1, each documented for OpenAPI.

use axum::{
    body::Bytes,
    extract::{NestedPath, Path, Query, Request, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use chat_core::backend::store::RoomInfo;
use chat_core::{MessageId, RoomDetails, RoomId, RoomSummary, User, UserId};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    error::{ChatRejection, Problem},
    state::ChatState,
};

/// The OpenAPI tag of the REST endpoints.
pub const TAG: &str = "chat";

/// Largest REST request body accepted.
const MAX_BODY: usize = 16 * 1024;

/// `POST /create-room` body.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"name": "General"}))]
pub struct CreateRoomRequest {
    /// Display name, 1 to 64 characters. Absent or `null`: "Room" and the id's first
    /// characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub name: Option<String>,
}

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

/// Parses an optional JSON body: empty or `null` means `T::default()`.
fn json_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ChatRejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|err| {
            if err.is_data() {
                ChatRejection::Unprocessable(format!("invalid body: {err}"))
            } else {
                ChatRejection::BadRequest(format!("body is not JSON: {err}"))
            }
        })
}

async fn read_body(body: axum::body::Body) -> Result<Bytes, ChatRejection> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ChatRejection::TooLarge(format!("the body is larger than {MAX_BODY} bytes")))
}

fn check_len(what: &str, value: &str, max: usize) -> Result<String, ChatRejection> {
    let trimmed = value.trim();
    let chars = trimmed.chars().count();
    if chars == 0 || chars > max || trimmed.chars().any(char::is_control) {
        return Err(ChatRejection::Unprocessable(format!(
            "`{what}` must be 1 to {max} characters, without control characters"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Create a room.
#[utoipa::path(post, path = "/create-room", tag = TAG,
    request_body(content = CreateRoomRequest, description = "Optional; an empty body creates a room with a default name", content_type = "application/json"),
    responses(
        (status = 201, description = "The room was created", body = RoomInfo),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The name is not 1 to 64 characters", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The chat backend is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_room(
    State(state): State<ChatState>,
    request: Request,
) -> Result<Response, ChatRejection> {
    let request: CreateRoomRequest = json_body(&read_body(request.into_body()).await?)?;
    let name = match request.name {
        Some(name) => Some(check_len("name", &name, 64)?),
        None => None,
    };
    let room = state.chat().create_room(name).await?;
    Ok((StatusCode::CREATED, Json(room)).into_response())
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
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No identity, or a bad or expired token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such room", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The name is not 1 to 32 characters", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The chat backend is down", body = Problem, content_type = "application/problem+json"),
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
    let prefix = parts
        .extensions
        .get::<NestedPath>()
        .map(|p| p.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    Ok(Json(JoinRoomResponse {
        room_id: room,
        user,
        websocket_url: format!("{prefix}/ws?token={token}"),
        token,
    }))
}

/// List rooms, oldest first, with how many users are online in each (across all instances).
#[utoipa::path(get, path = "/rooms", tag = TAG,
    responses(
        (status = 200, description = "All rooms", body = [RoomSummary]),
        (status = 503, description = "The chat backend is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_rooms(
    State(state): State<ChatState>,
) -> Result<Json<Vec<RoomSummary>>, ChatRejection> {
    Ok(Json(state.chat().rooms().await?))
}

/// A room and its members, with who is online.
#[utoipa::path(get, path = "/rooms/{roomId}", tag = TAG,
    params(("roomId" = String, Path, description = "The room id")),
    responses(
        (status = 200, description = "The room", body = RoomDetails),
        (status = 404, description = "No such room", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The chat backend is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_room(
    State(state): State<ChatState>,
    Path(room_id): Path<String>,
) -> Result<Json<RoomDetails>, ChatRejection> {
    Ok(Json(state.chat().room(&RoomId::new(room_id)).await?))
}

/// A page of a room's history, oldest first. Page backwards with `before=nextBefore`.
#[utoipa::path(get, path = "/rooms/{roomId}/messages", tag = TAG,
    params(("roomId" = String, Path, description = "The room id"), HistoryQuery),
    responses(
        (status = 200, description = "A page of history", body = HistoryResponse),
        (status = 400, description = "Bad `before` or `limit`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such room", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The chat backend is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn room_messages(
    State(state): State<ChatState>,
    Path(room_id): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ChatRejection> {
    let Query(query) = query.map_err(|e| ChatRejection::BadRequest(e.body_text()))?;
    let chat = state.chat();
    let max = chat.config().history_page_max;
    let limit = match query.limit {
        None => chat.config().history_page_default,
        Some(n) if n >= 1 && n as usize <= max => n as usize,
        Some(_) => {
            return Err(ChatRejection::BadRequest(format!(
                "`limit` must be 1 to {max}"
            )))
        }
    };
    let before = query.before.filter(|b| !b.is_empty()).map(MessageId::new);
    let page = chat
        .history(&RoomId::new(room_id), before.as_ref(), limit)
        .await?;
    // The frames are stored serialized: splice them into the response as they are.
    let mut body =
        Vec::with_capacity(64 + page.messages.iter().map(|m| m.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"messages\":[");
    for (i, frame) in page.messages.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(frame);
    }
    body.extend_from_slice(b"],\"nextBefore\":");
    body.extend_from_slice(
        &serde_json::to_vec(&page.next_before).unwrap_or_else(|_| b"null".to_vec()),
    );
    body.push(b'}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The AsyncAPI 3.0 document of the WebSocket: every frame type with its JSON Schema.
#[utoipa::path(get, path = "/asyncapi.json", tag = TAG,
    responses((status = 200, description = "The AsyncAPI document", content_type = "application/json", body = Object)))]
pub(crate) async fn asyncapi_json() -> Response {
    static DOC: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let body =
        DOC.get_or_init(|| serde_json::to_vec(&crate::openapi::asyncapi()).unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = TAG,
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub(crate) async fn openapi_json(State(state): State<ChatState>, request: Request) -> Response {
    let mut doc = state.inner.openapi.clone();
    let base = request
        .extensions()
        .get::<NestedPath>()
        .map(|p| p.as_str().trim_end_matches('/').to_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    doc.servers = Some(vec![utoipa::openapi::Server::new(base)]);
    Json(doc).into_response()
}
