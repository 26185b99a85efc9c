//! Rooms: create one, list them, get one with its members.

use axum::{
    extract::{Path, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use chat_core::backend::store::RoomInfo;
use chat_core::{RoomDetails, RoomId, RoomSummary};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    body::{check_len, json_body, read_body},
    TAG,
};
use crate::{
    error::{ChatRejection, Problem},
    openapi::problems::{BackendDown, BodyRejected, NoSuchRoom},
    state::ChatState,
};

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

/// Create a room.
#[utoipa::path(post, path = "/create-room", tag = TAG,
    request_body(content = CreateRoomRequest, description = "Optional; an empty body creates a room with a default name", content_type = "application/json"),
    responses(
        (status = 201, description = "The room was created", body = RoomInfo),
        BodyRejected,
        (status = 422, description = "The name is not 1 to 64 characters", body = Problem, content_type = "application/problem+json"),
        BackendDown,
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

/// List rooms, oldest first, with how many users are online in each (across all instances).
#[utoipa::path(get, path = "/rooms", tag = TAG,
    responses(
        (status = 200, description = "All rooms", body = [RoomSummary]),
        BackendDown,
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
        NoSuchRoom,
        BackendDown,
    ))]
pub(crate) async fn get_room(
    State(state): State<ChatState>,
    Path(room_id): Path<String>,
) -> Result<Json<RoomDetails>, ChatRejection> {
    Ok(Json(state.chat().room(&RoomId::new(room_id)).await?))
}
