//! The host app of `host-app`: its own cookie login, its own extractor for the logged-in
//! user, and the chat mounted under `/chat` with that identity and the host's policy.
//!
//! Routes: `POST /login` `{"user","password"}` (sets the `session` cookie), `POST /logout`,
//! `GET /me`, `POST /announce` `{"room","text"}` (staff: a message from the chat's system
//! user), `GET /transcript/{roomId}` (the room's history as text), and the chat under `/chat`
//! (REST, `/chat/ws`, `/chat/openapi.json`), where the cookie is all a browser needs.
//! Also compiled into `tests/tests/host_app.rs`, which drives it end to end.

use std::{collections::HashMap, fmt::Write as _, sync::Arc};

use axum::{
    extract::{FromRef, FromRequestParts, Path, State},
    http::{header, request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use chat_tower::{
    chat_core::{
        hooks::{CreateRoomEvent, Decision, Hooks, MessageEvent, Moderation},
        RoomId, RoomMessage, User,
    },
    ChatBuilder, ChatHandle, ChatRejection, FromExtractor,
};
use serde::Deserialize;
use tokio::sync::RwLock;

/// The session cookie's name.
const COOKIE: &str = "session";

/// One of the host's accounts.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    id: String,
    name: String,
    password: String,
    staff: bool,
}

/// The host's user directory (a database in a real app).
#[derive(Clone, Debug)]
pub(crate) struct Accounts(Arc<HashMap<String, Account>>);

impl Accounts {
    /// Two demo accounts: `alice` (staff) and `bob`, password `<name>-pw`. A real app
    /// stores password hashes.
    pub(crate) fn demo() -> Self {
        let account = |id: &str, name: &str, staff| Account {
            id: id.into(),
            name: name.into(),
            password: format!("{id}-pw"),
            staff,
        };
        let all = [
            account("alice", "Alice", true),
            account("bob", "Bob", false),
        ];
        Self(Arc::new(
            all.into_iter().map(|a| (a.id.clone(), a)).collect(),
        ))
    }

    fn is_staff(&self, id: &str) -> bool {
        self.0.get(id).is_some_and(|a| a.staff)
    }
}

/// Logged-in sessions: cookie value → account, in memory.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sessions(Arc<RwLock<HashMap<String, Account>>>);

/// The host's router state: its own things, and the chat's handle for server-side sends.
#[derive(Clone, FromRef)]
pub(crate) struct AppState {
    accounts: Accounts,
    sessions: Sessions,
    chat: ChatHandle,
}

// ---- identity: the host's own extractor, and how the chat reads it ----

/// The logged-in user: the account behind the request's session cookie; 401 without one.
pub(crate) struct CurrentUser(Account);

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser
where
    Sessions: FromRef<S>,
{
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, StatusCode> {
        let id = session_id(&parts.headers).ok_or(StatusCode::UNAUTHORIZED)?;
        let sessions = Sessions::from_ref(state);
        let account = sessions.0.read().await.get(id).cloned();
        account.map(Self).ok_or(StatusCode::UNAUTHORIZED)
    }
}

/// What the chat needs of the host's user: a stable id and a display name.
impl From<CurrentUser> for User {
    fn from(CurrentUser(account): CurrentUser) -> Self {
        User::new(account.id, account.name)
    }
}

/// The `session` cookie's value, if the request carries one.
fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

// ---- policy: who may create rooms, and moderation ----

/// Only staff create rooms; "darn" is spelled "d**n".
fn policy(accounts: Accounts) -> Hooks {
    Hooks::new()
        .on_create_room(move |event: CreateRoomEvent, _chat| {
            let staff = accounts.is_staff(event.caller.user.id.as_str());
            async move {
                if staff {
                    Decision::Allow
                } else {
                    Decision::Deny("only staff create rooms".into())
                }
            }
        })
        .on_moderate(|event: MessageEvent, _chat| async move {
            Moderation::Rewrite(event.body.replace("darn", "d**n"))
        })
}

/// The host's app: its routes, and the chat under `/chat`. Keep the handle to shut the chat
/// down (closes every WebSocket with 1001).
pub(crate) fn app() -> (Router, ChatHandle) {
    let accounts = Accounts::demo();
    let (chat_router, chat) = ChatBuilder::<AppState>::new()
        .identity(FromExtractor::<CurrentUser>::new())
        .policy(policy(accounts.clone()))
        .build();
    let state = AppState {
        accounts,
        sessions: Sessions::default(),
        chat: chat.clone(),
    };
    let app = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/announce", post(announce))
        .route("/transcript/{room}", get(transcript))
        .nest("/chat", chat_router)
        .with_state(state);
    (app, chat)
}

#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
}

/// Checks the password, opens a session, sets its cookie.
async fn login(State(state): State<AppState>, Json(login): Json<Login>) -> Response {
    let Some(account) = state.accounts.0.get(&login.user) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    if account.password != login.password {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax");
    state.sessions.0.write().await.insert(id, account.clone());
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// Ends the session (whether or not there was one) and clears the cookie.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        state.sessions.0.write().await.remove(id);
    }
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// Who is logged in.
async fn me(CurrentUser(account): CurrentUser) -> Json<serde_json::Value> {
    Json(serde_json::json!({"id": account.id, "name": account.name, "staff": account.staff}))
}

#[derive(Deserialize)]
struct Announcement {
    room: String,
    text: String,
}

/// Staff post an announcement into a room; it comes from the chat's system user.
async fn announce(
    State(state): State<AppState>,
    CurrentUser(account): CurrentUser,
    Json(announcement): Json<Announcement>,
) -> Result<(StatusCode, Json<RoomMessage>), ChatRejection> {
    if !account.staff {
        return Err(ChatRejection::Forbidden("only staff announce".into()));
    }
    let room = RoomId::new(announcement.room);
    let message = state.chat.room(&room).send(announcement.text).await?;
    Ok((StatusCode::CREATED, Json(message)))
}

/// The last 50 messages of a room as `name: body` lines, for any logged-in user (the host
/// reads history with its own authority: it decides who may).
async fn transcript(
    State(state): State<AppState>,
    _: CurrentUser,
    Path(room): Path<String>,
) -> Result<String, ChatRejection> {
    let room = RoomId::new(room);
    let page = state.chat.room(&room).history(None, 50).await?;
    let mut text = String::new();
    for message in page.messages {
        let _ = writeln!(text, "{}: {}", message.from.name, message.body);
    }
    Ok(text)
}
