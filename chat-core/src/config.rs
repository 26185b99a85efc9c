//! [`ChatConfig`]: limits and timings, each with a documented default.

use std::time::Duration;

use crate::protocol::User;

/// Limits and timings of the chat engine. Start from [`ChatConfig::default()`] and change what
/// you need; every default is stated on its field.
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// Longest message body, in characters (Unicode scalar values). Default 4,000.
    pub max_body_chars: usize,
    /// Largest WebSocket message a client may send, in bytes; a larger one closes the connection
    /// with close code 1009. Default 64 KiB.
    pub max_frame_bytes: usize,
    /// Longest `clientMsgId`, in bytes; longer ones are a `bad_frame`. Default 128.
    pub max_client_msg_id: usize,
    /// How long a sent `clientMsgId` is remembered per sender and target (room, or recipient
    /// of a direct message): a `message` or `direct` sent again with it within this window is
    /// not published again and gets the first one's `ack` (same `id`). Remembered in the
    /// backend (Redis: a key with this TTL, checked in the script that appends and publishes),
    /// so a retry on another instance is caught too. `Duration::ZERO` turns it off. Default
    /// 2 minutes.
    pub dedup_window: Duration,
    /// Frames that may wait in one connection's outgoing queue. A connection whose queue is
    /// full when a frame arrives is closed with close code 4008 (slow consumer) rather than
    /// letting server memory grow. Default 1,024.
    pub outgoing_queue: usize,
    /// Write coalescing: the period of the node's flush tick while the node keeps up. A frame
    /// for a connection that was written less than a period ago waits for the next tick (at
    /// most a period) and leaves with whatever is queued for it meanwhile: one syscall and one
    /// TCP segment instead of one each. The first frame after a quiet spell is written at
    /// once. `Duration::ZERO` writes as frames come (no tick). Default 1 ms.
    pub write_coalesce: Duration,
    /// The period of the flush tick while the node is behind: the dispatcher has a backlog,
    /// its frames are late, or the process's threads wait for a core (see `fanout::tick`).
    /// Longer batches cost fewer syscalls per frame, which is what a node short of CPU needs;
    /// a node with headroom stays at `write_coalesce`, whatever its traffic. Set it to `write_coalesce` (or less) for a
    /// fixed period. Figures in `docs/perf.md` ("Flush tick"). Default 8 ms.
    pub write_coalesce_max: Duration,
    /// How often the server pings an idle connection. Default 20 s.
    pub ping_interval: Duration,
    /// A connection from which nothing (not even a pong) arrived for this long is closed.
    /// Default 60 s.
    pub idle_timeout: Duration,
    /// The per-connection flood guard: sustained frames per second one connection may send,
    /// whatever they are (pings, leaves, bad frames as well as what the per-user limits
    /// below count). Past it the session stops reading that socket until a token is back
    /// (TCP pushes back on the client; nothing is dropped or refused), so no connection can
    /// keep a core busy. Above the per-user limits on purpose: those answer `rate_limited`,
    /// this only paces. Default 50.
    pub rate_per_second: u32,
    /// Frames one connection may send in a burst above [`Self::rate_per_second`].
    /// Default 100.
    pub rate_burst: u32,
    /// Per user, across all of that user's connections on this node (and, with
    /// [`Self::shared_user_limits`], on every node): sustained room messages per second. Over it a `message` is answered `rate_limited` with
    /// `retryAfterMs`. Default 20.
    pub user_messages_per_second: u32,
    /// Per user: room messages in a burst above [`Self::user_messages_per_second`].
    /// Default 40.
    pub user_messages_burst: u32,
    /// Per user, on this node (and every node, see [`Self::shared_user_limits`]): sustained
    /// joins per second, WebSocket `join` and REST
    /// `POST /join-room` alike (`rate_limited` or 429 over it). Default 10.
    pub user_joins_per_second: u32,
    /// Per user: joins in a burst above [`Self::user_joins_per_second`]. Default 20.
    pub user_joins_burst: u32,
    /// A join with `since` costs one join token more per this many messages it replays
    /// (counted after the replay, as a debt the next joins wait for): the default is the
    /// default history page, so catching up through a join costs what a join and the same
    /// pages over REST would; a full replay (about `outgoing_queue` messages) then costs
    /// about one burst of joins. Default 50.
    pub join_replay_per_token: usize,
    /// Per user, on this node (and every node, see [`Self::shared_user_limits`]): sustained
    /// direct messages per second. Lower than room
    /// messages: a direct message lands with one person who did not choose to be in a room
    /// with the sender's traffic. Default 10.
    pub user_directs_per_second: u32,
    /// Per user: direct messages in a burst above [`Self::user_directs_per_second`].
    /// Default 20.
    pub user_directs_burst: u32,
    /// Direct messages kept for a recipient who is not connected anywhere: the sender gets an
    /// `ack` with `held: true`, the sender's other connections their copy, and the recipient
    /// every held message (as `direct` frames, oldest first) when a connection of theirs
    /// opens. Past this many waiting for one recipient, a direct message to them is refused
    /// with `inbox_full` (nothing held is dropped to make room). At most half of
    /// [`Self::outgoing_queue`] (all of them are queued at once for the connection that opens).
    /// `0` keeps nothing: such a message is refused with `recipient_offline`. Default 200.
    pub held_directs_per_user: usize,
    /// Of [`Self::held_directs_per_user`], how many may come from one sender: past it, that
    /// sender's next direct message to the offline recipient is refused with `inbox_full`,
    /// so that one sender cannot fill someone's inbox and shut out everyone else. Default 20.
    pub held_directs_per_sender: usize,
    /// Of [`Self::held_directs_per_user`], how many may come from guests altogether (users the
    /// chat made up for a display name, who cost nothing to make): past it, a guest's direct
    /// message to the offline recipient is refused with `inbox_full`, so that a crowd of
    /// guests in a public room cannot fill someone's inbox for the host's own users. Where
    /// every user is a guest (the demo), this is the inbox. Default 50.
    pub held_directs_from_guests: usize,
    /// Keep direct messages in the history of each conversation (`GET /directs/{userId}/messages`
    /// for either of its two users), with the backend's history caps (per conversation as per
    /// room: its count, its age, and gone after the room TTL without a message). `false`
    /// keeps none: the history is empty. Default `true`.
    pub keep_direct_history: bool,
    /// Per user: the conversations listed by `GET /directs` (with [`Self::keep_direct_history`]),
    /// the most recent first. Past it the least recent one drops out of the list (its
    /// messages stay in its history until they age out); a conversation with no message for
    /// the history's age leaves it too. Default 1,000.
    pub conversations_per_user: usize,
    /// How long a held direct message waits for its recipient; one older than this is not
    /// delivered. At most a year. Default 7 days (how long a user who does not come back
    /// stays known).
    pub held_direct_max_age: Duration,
    /// Per user, on this node (and every node, see [`Self::shared_user_limits`]): rooms a user
    /// may create a minute (a bucket of that many,
    /// refilled evenly over the minute); over it `POST /create-room` is a 429 with
    /// `Retry-After`. Default 10.
    pub user_rooms_per_minute: u32,
    /// Per client address, counted for every instance on the backend (with Redis, in Redis by
    /// its clock): guests created a minute (`POST /guests`, and a v1
    /// guest's `POST /join-room`; a bucket of that many, refilled evenly over the minute; an
    /// IPv6 address counts by its /64 prefix). Over it the request is a 429 with
    /// `Retry-After`. Which address a request comes from is the HTTP layer's to say
    /// (`chat-tower`: the peer, or behind a proxy on the same host its `X-Forwarded-For`).
    /// Default 30.
    pub guests_per_minute: u32,
    /// Count the per-user limits (room messages, joins, direct messages, room creations, open
    /// WebSockets) for every node on the backend as well, so that a user with connections on
    /// several instances gets each limit once, not once per instance: with Redis, in Redis by
    /// its clock, inside the script that publishes a message (three commands more in it, no
    /// round trip more), in one call per join or room creation, and in one per WebSocket
    /// opened or closed (each node records its own count; a dead node's does not count).
    /// Each node checks its own bucket first, so a flood never reaches the backend. `false`:
    /// per node only. Default `true`.
    pub shared_user_limits: bool,
    /// Per user, on this node (and every node, see [`Self::shared_user_limits`]): open
    /// WebSockets. The next upgrade is refused with 429 and
    /// `Retry-After` before upgrading; the open ones carry on. Default 32.
    pub max_connections_per_user: usize,
    /// Messages per history page when the request names no limit. Default 50.
    pub history_page_default: usize,
    /// Largest history page. Default 200.
    pub history_page_max: usize,
    /// Rooms one connection may have joined at once. Default 100.
    pub max_rooms_per_connection: usize,
    /// Members a room may have. A user who is not a member yet is refused with `room_full`
    /// (REST 409, WebSocket `error`) once a room has this many, by `join-room` and by a
    /// WebSocket `join` (the host's `Chat::add_member` is not capped). With rooms that expire
    /// when idle (the backend's `room_ttl`), this bounds what a room's member set holds over
    /// its life; members leave with `DELETE /rooms/{roomId}/members/me`. Default 10,000.
    pub max_members_per_room: usize,
    /// Who server-side messages come from when the host names no sender
    /// ([`crate::Chat::to_room`], [`crate::Chat::to_user`]): clients see it as the `from` of
    /// those messages. Pick an id that none of your users has. Default
    /// `{"id": "system", "name": "System"}`.
    pub system_user: User,
    /// For the host's HTTP server (`chat_tower::serve`, which the demo uses): how long a
    /// client has to send a request's whole header, from the connection's start or the end
    /// of the previous response (so also how long an idle keep-alive connection stays open).
    /// A connection past it is closed. `Duration::ZERO` turns it off. Default 10 s.
    pub http_header_read_timeout: Duration,
    /// For the host's HTTP server: how long a request body may stop arriving, or a write
    /// stay blocked on a client that does not read (a response, or a WebSocket's frames),
    /// before the connection is closed (a stalled body gets no response). A timer runs only
    /// during such a wait, none per idle connection: an idle keep-alive connection is
    /// closed by [`http_header_read_timeout`](Self::http_header_read_timeout), an idle
    /// WebSocket by [`idle_timeout`](Self::idle_timeout). `Duration::ZERO` turns it off.
    /// Default 60 s.
    pub http_idle_timeout: Duration,
    /// For the host's HTTP server: open connections (WebSockets included) at most. Past it
    /// the server stops accepting: new connections wait in the listen backlog until one
    /// closes. Default 50,000.
    pub http_max_connections: usize,
    /// How long [`Chat::drain`](crate::Chat::drain) waits for this instance's connections to
    /// write what is queued, close with 1012 and leave presence, before it gives up on the
    /// rest (a host then exits anyway: its exit is bounded by this). Default 10 s.
    pub drain_timeout: Duration,
}

impl ChatConfig {
    /// Direct messages held per recipient: [`Self::held_directs_per_user`], at most half the
    /// outgoing queue, so that releasing them all to a new connection cannot overflow it.
    pub(crate) fn held_directs(&self) -> usize {
        self.held_directs_per_user.min(self.outgoing_queue / 2)
    }

    /// How long a held direct message waits: [`Self::held_direct_max_age`], at most a year
    /// (a longer one would not fit the backend's expiry).
    pub(crate) fn held_max_age(&self) -> Duration {
        self.held_direct_max_age
            .min(Duration::from_secs(365 * 24 * 3600))
            .max(Duration::from_millis(1))
    }
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            max_body_chars: 4_000,
            max_frame_bytes: 64 * 1024,
            max_client_msg_id: 128,
            dedup_window: Duration::from_secs(120),
            outgoing_queue: 1_024,
            write_coalesce: Duration::from_millis(1),
            write_coalesce_max: Duration::from_millis(8),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            rate_per_second: 50,
            rate_burst: 100,
            user_messages_per_second: 20,
            user_messages_burst: 40,
            user_joins_per_second: 10,
            user_joins_burst: 20,
            join_replay_per_token: 50,
            user_directs_per_second: 10,
            user_directs_burst: 20,
            held_directs_per_user: 200,
            held_directs_per_sender: 20,
            held_directs_from_guests: 50,
            keep_direct_history: true,
            conversations_per_user: 1_000,
            held_direct_max_age: Duration::from_secs(7 * 24 * 3600),
            user_rooms_per_minute: 10,
            guests_per_minute: 30,
            shared_user_limits: true,
            max_connections_per_user: 32,
            history_page_default: 50,
            history_page_max: 200,
            max_rooms_per_connection: 100,
            max_members_per_room: 10_000,
            system_user: User::new("system", "System"),
            http_header_read_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
            http_max_connections: 50_000,
            drain_timeout: Duration::from_secs(10),
        }
    }
}
