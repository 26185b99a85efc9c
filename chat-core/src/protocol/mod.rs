//! The wire protocol, v2: identifiers, users and the WebSocket frames.
//!
//! Frames are JSON text frames tagged by `type` (see `CONTRACT.md`). Every type here derives
//! [`schemars::JsonSchema`], which is where the checked-in `openapi/ws-*.schema.json` files come
//! from. Unknown fields in client frames are ignored, so that newer clients can talk to older
//! servers; a client can never set a field the server owns (`from`, `id`, `ts`).
//!
//! - `ids`: [`RoomId`], [`UserId`], [`MessageId`], [`User`];
//! - `client`: [`ClientFrame`], what a client sends;
//! - `server`: [`ServerFrame`], what the server sends;
//! - `codes`: [`ErrorCode`] and [`close_code`];
//! - [`text`]: what bodies and names may hold (blank bodies, misleading names);
//! - `wire`: frames as bytes ([`ServerFrame::encode`], and a room message encoded around its
//!   id, which both backends use to put their history's id into the frame).

mod client;
mod codes;
mod ids;
mod server;
pub mod text;
pub(crate) mod wire;

pub use client::{ClientFrame, JoinFrame, LeaveFrame, SendDirectFrame, SendMessageFrame};
pub use codes::{close_code, ErrorCode};
pub use ids::{MessageId, RoomId, User, UserId};
pub use server::{
    AckFrame, DirectMessage, ErrorFrame, JoinedFrame, LeftFrame, ResyncFrame, RoomMessage,
    ServerFrame, SystemEvent, SystemMessage,
};
pub(crate) use wire::message_key;

/// Unix epoch milliseconds now.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}
