//! Rooms: create one, list them page by page, get one with its first members.

use axum::{
    extract::{FromRequestParts, Path, Query, Request, State},
    http::request::Parts,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use chat_core::backend::store::{RoomInfo, Visibility};
use chat_core::{RoomDetails, RoomId, RoomPage};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    body::{check_name, json_request},
    TAG,
};
use crate::{
    error::{ChatRejection, Problem},
    identity::resolve::Authenticated,
    openapi::problems::{
        BackendDown, BadPage, BodyRejected, CreationQuota, NoSuchRoom, Unidentified,
    },
    state::ChatState,
};

/// Longest room name, in characters.
const ROOM_NAME_MAX: usize = 64;

/// `POST /create-room` body.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"name": "General", "visibility": "public"}))]
pub struct CreateRoomRequest {
    /// Display name, 1 to 64 characters after trimming and Unicode NFC, without control,
    /// format or private-use characters. Absent or `null`: "Room" and the id's first
    /// characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub name: Option<String>,
    /// Public (listed to everyone, anyone may join; the default) or private (members and
    /// invitees only).
    #[serde(default)]
    pub visibility: Option<Visibility>,
}

/// `?cursor=&limit=` of a paginated list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `nextCursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// A page size from a query: the default when absent, 400 outside 1 to the maximum.
pub(crate) fn page_limit(limit: Option<u32>, state: &ChatState) -> Result<usize, ChatRejection> {
    let config = state.chat().config();
    let max = config.history_page_max;
    match limit {
        None => Ok(config.history_page_default),
        Some(n) if (1..=max as u32).contains(&n) => Ok(n as usize),
        Some(_) => Err(ChatRejection::BadRequest(format!(
            "`limit` must be 1 to {max}"
        ))),
    }
}

/// 400 for a query string that does not deserialize, with a detail a person can act on
/// rather than the deserializer's message (which names Rust types, e.g. `limit=1.5`).
pub(crate) fn bad_query(uri: &axum::http::Uri, state: &ChatState) -> ChatRejection {
    let max = state.chat().config().history_page_max;
    let pairs = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(pairs)| pairs)
        .unwrap_or_default();
    if pairs
        .iter()
        .any(|(key, value)| key == "limit" && value.parse::<u32>().is_err())
    {
        ChatRejection::BadRequest(format!("`limit` must be a whole number from 1 to {max}"))
    } else {
        ChatRejection::BadRequest(
            "the query string is not valid: each parameter at most once, URL-encoded".into(),
        )
    }
}

/// The `?cursor=&limit=` of a list request, checked (400 for a malformed query or a limit
/// out of range).
pub(crate) struct Page {
    pub(crate) cursor: Option<String>,
    pub(crate) limit: usize,
}

impl FromRequestParts<ChatState> for Page {
    type Rejection = ChatRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ChatState,
    ) -> Result<Self, ChatRejection> {
        let Query(query) = Query::<PageQuery>::from_request_parts(parts, state)
            .await
            .map_err(|_| bad_query(&parts.uri, state))?;
        Ok(Self {
            limit: page_limit(query.limit, state)?,
            cursor: query.cursor,
        })
    }
}

/// Create a room; the caller is its owner and first member.
#[utoipa::path(post, path = "/create-room", tag = TAG, operation_id = "createRoom",
    request_body(content = CreateRoomRequest, description = "Optional; an empty body creates a public room with a default name", content_type = "application/json"),
    responses(
        (status = 201, description = "The room was created", body = RoomInfo),
        BodyRejected,
        Unidentified,
        (status = 403, description = "The policy refuses", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The name is not 1 to 64 characters, or holds control, format or private-use characters", body = Problem, content_type = "application/problem+json"),
        CreationQuota,
        BackendDown,
    ),
    security(("bearer" = [])))]
pub(crate) async fn create_room(
    State(state): State<ChatState>,
    Authenticated(caller): Authenticated,
    request: Request,
) -> Result<Response, ChatRejection> {
    let (_, request): (_, CreateRoomRequest) = json_request(request).await?;
    let name = match request.name {
        Some(name) => Some(check_name("name", &name, ROOM_NAME_MAX)?),
        None => None,
    };
    let visibility = request.visibility.unwrap_or_default();
    let room = state.chat().create_room(&caller, name, visibility).await?;
    Ok((StatusCode::CREATED, Json(room)).into_response())
}

/// List rooms, newest first, page by page: the public rooms and the private rooms the caller
/// is a member of, with how many users are online in each (across all instances).
#[utoipa::path(get, path = "/rooms", tag = TAG, operation_id = "listRooms",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of rooms", body = RoomPage),
        BadPage,
        Unidentified,
        BackendDown,
    ),
    security(("bearer" = [])))]
pub(crate) async fn list_rooms(
    State(state): State<ChatState>,
    Authenticated(caller): Authenticated,
    page: Page,
) -> Result<Json<RoomPage>, ChatRejection> {
    let rooms = state
        .chat()
        .rooms(&caller, page.cursor.as_deref(), page.limit)
        .await?;
    Ok(Json(rooms))
}

/// A room with its member count and first 100 members, with who is online. A private room
/// is visible to its members only (404 for everyone else).
#[utoipa::path(get, path = "/rooms/{roomId}", tag = TAG, operation_id = "getRoom",
    params(("roomId" = RoomId, Path, description = "The room id")),
    responses(
        (status = 200, description = "The room", body = RoomDetails),
        Unidentified,
        NoSuchRoom,
        BackendDown,
    ),
    security(("bearer" = [])))]
pub(crate) async fn get_room(
    State(state): State<ChatState>,
    Authenticated(caller): Authenticated,
    Path(room_id): Path<String>,
) -> Result<Json<RoomDetails>, ChatRejection> {
    Ok(Json(
        state.chat().room(&caller, &RoomId::new(room_id)).await?,
    ))
}
