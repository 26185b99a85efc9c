//! The backend traits on Redis.

use bytes::Bytes;
use redis::{aio::ConnectionManager, AsyncCommands};

use super::{envelope_header, Shared};
use crate::{
    backend::{
        broker::{
            Broker, BrokerEvent, Envelope, NewRoomMessage, NodeId, Origin, SenderCopy, Topic,
            NO_CONN,
        },
        history::{HistoryPage, HistoryStore},
        store::{PresenceStore, RoomInfo, RoomStore},
        BoxFuture,
    },
    error::BackendError,
    protocol::{
        now_ms, MessageId, RoomId, RoomMessage, ServerFrame, SystemEvent, SystemMessage, User,
        UserId,
    },
};

pub(crate) struct RedisNode {
    pub(crate) shared: std::sync::Arc<Shared>,
}

impl RedisNode {
    fn conn(&self) -> ConnectionManager {
        self.shared.cmd.clone()
    }
}

/// The room message without `"type"` and `"id"`: what the stream stores and the script splices
/// the id into. Starts after the opening `{`.
fn frame_rest(message: &NewRoomMessage) -> String {
    #[derive(serde::Serialize)]
    struct Rest<'a> {
        room: &'a RoomId,
        from: &'a User,
        body: &'a str,
        ts: i64,
    }
    let json = serde_json::to_string(&Rest {
        room: &message.room,
        from: &message.from,
        body: &message.body,
        ts: message.ts,
    })
    .unwrap_or_default();
    json.get(1..).unwrap_or_default().to_owned()
}

/// The Pub/Sub payload of an envelope: origin header, then the frame.
fn payload(envelope: &Envelope) -> Vec<u8> {
    let header = envelope_header(envelope.origin);
    let mut payload = Vec::with_capacity(header.len() + envelope.frame.len());
    payload.extend_from_slice(header.as_bytes());
    payload.extend_from_slice(&envelope.frame);
    payload
}

/// Rebuilds the frame of a stream entry: the same bytes the script published.
fn frame_of(id: &str, rest: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(30 + id.len() + rest.len());
    frame.extend_from_slice(br#"{"type":"message","id":""#);
    frame.extend_from_slice(id.as_bytes());
    frame.extend_from_slice(b"\",");
    frame.extend_from_slice(rest);
    Bytes::from(frame)
}

/// A stream id (`ms-seq`), or `InvalidCursor`.
fn stream_id(id: &MessageId) -> Result<&str, BackendError> {
    let s = id.as_str();
    let (ms, seq) = s.split_once('-').ok_or(BackendError::InvalidCursor)?;
    if ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok() {
        Ok(s)
    } else {
        Err(BackendError::InvalidCursor)
    }
}

type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;

fn entry_frames(entries: Entries) -> Vec<(String, Bytes)> {
    entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let rest = fields.into_iter().find(|(k, _)| k == "r")?.1;
            let frame = frame_of(&id, &rest);
            Some((id, frame))
        })
        .collect()
}

impl Broker for RedisNode {
    fn node_id(&self) -> NodeId {
        self.shared.node
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<usize, BackendError>> {
        Box::pin(async move {
            let channel = self.shared.keys.channel(&envelope.topic);
            let payload = payload(&envelope);
            let reached: usize = self.conn().publish(channel, payload).await?;
            Ok(reached)
        })
    }

    fn publish_room_message(
        &self,
        message: NewRoomMessage,
    ) -> BoxFuture<'_, Result<RoomMessage, BackendError>> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let id: String = self
                .shared
                .scripts
                .append_publish
                .key(keys.room_key(&message.room, "log"))
                .arg(self.shared.config.history_per_room)
                .arg(frame_rest(&message))
                .arg(keys.room_channel(&message.room))
                .arg(envelope_header(message.origin))
                .invoke_async(&mut self.conn())
                .await?;
            Ok(RoomMessage {
                id: MessageId::new(id),
                room: message.room,
                from: message.from,
                body: message.body,
                ts: message.ts,
            })
        })
    }

    fn publish_direct(
        &self,
        envelope: Envelope,
        copy_to: Option<SenderCopy>,
    ) -> BoxFuture<'_, Result<usize, BackendError>> {
        // One round trip instead of two, and the copy only when the recipient was reached and
        // someone will get it (see the script).
        Box::pin(async move {
            let keys = &self.shared.keys;
            let payload = payload(&envelope);
            let reached: usize = self
                .shared
                .scripts
                .direct
                .arg(keys.channel(&envelope.topic))
                .arg(
                    copy_to
                        .as_ref()
                        .map(|copy| keys.channel(&copy.topic))
                        .unwrap_or_default(),
                )
                .arg(payload)
                .arg(u8::from(copy_to.is_some_and(|copy| copy.here)))
                .invoke_async(&mut self.conn())
                .await?;
            Ok(reached)
        })
    }

    fn subscribe(&self, topics: Vec<Topic>) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let channels: Vec<String> =
                topics.iter().map(|t| self.shared.keys.channel(t)).collect();
            self.shared.pubsub.clone().subscribe(channels).await?;
            Ok(())
        })
    }

    fn unsubscribe(&self, topics: Vec<Topic>) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let channels: Vec<String> =
                topics.iter().map(|t| self.shared.keys.channel(t)).collect();
            self.shared.pubsub.clone().unsubscribe(channels).await?;
            Ok(())
        })
    }

    fn take_events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<BrokerEvent>> {
        self.shared
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl RoomStore for RedisNode {
    fn create(&self, room: RoomInfo) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let created_ms = time::OffsetDateTime::parse(
                &room.created_at,
                &time::format_description::well_known::Rfc3339,
            )
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .unwrap_or_else(|_| now_ms());
            let _: () = redis::pipe()
                .atomic()
                .hset_multiple(
                    keys.room_key(&room.room_id, "info"),
                    &[
                        ("name", room.name.as_str()),
                        ("createdAt", room.created_at.as_str()),
                    ],
                )
                .ignore()
                .zadd(keys.rooms(), room.room_id.as_str(), created_ms)
                .ignore()
                .query_async(&mut self.conn())
                .await?;
            Ok(())
        })
    }

    fn get<'a>(
        &'a self,
        room: &'a RoomId,
    ) -> BoxFuture<'a, Result<Option<RoomInfo>, BackendError>> {
        Box::pin(async move {
            let (name, created_at): (Option<String>, Option<String>) = self
                .conn()
                .hmget(
                    self.shared.keys.room_key(room, "info"),
                    &["name", "createdAt"],
                )
                .await?;
            Ok(name.zip(created_at).map(|(name, created_at)| RoomInfo {
                room_id: room.clone(),
                name,
                created_at,
            }))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<RoomInfo>, BackendError>> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let mut conn = self.conn();
            let ids: Vec<String> = conn.zrange(keys.rooms(), 0, -1).await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.hmget(
                    keys.room_key(&RoomId::new(id.as_str()), "info"),
                    &["name", "createdAt"],
                );
            }
            let infos: Vec<(Option<String>, Option<String>)> = pipe.query_async(&mut conn).await?;
            Ok(ids
                .into_iter()
                .zip(infos)
                .filter_map(|(id, (name, created_at))| {
                    Some(RoomInfo {
                        room_id: RoomId::new(id),
                        name: name?,
                        created_at: created_at?,
                    })
                })
                .collect())
        })
    }

    fn add_member<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let added: i64 = self
                .shared
                .scripts
                .add_member
                .key(keys.room_key(room, "info"))
                .key(keys.room_key(room, "members"))
                .key(keys.room_key(room, "order"))
                .key(keys.users())
                .arg(user.id.as_str())
                .arg(&user.name)
                .arg(now_ms())
                .invoke_async(&mut self.conn())
                .await?;
            Ok(added == 1)
        })
    }

    fn is_member<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a UserId,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            Ok(self
                .conn()
                .hexists(self.shared.keys.room_key(room, "members"), user.as_str())
                .await?)
        })
    }

    fn members<'a>(&'a self, room: &'a RoomId) -> BoxFuture<'a, Result<Vec<User>, BackendError>> {
        Box::pin(self.users_with_names(room, "order", "zset"))
    }

    fn remember_user<'a>(&'a self, user: &'a User) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let _: () = self
                .conn()
                .hset(self.shared.keys.users(), user.id.as_str(), &user.name)
                .await?;
            Ok(())
        })
    }

    fn user_known<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            Ok(self
                .conn()
                .hexists(self.shared.keys.users(), user.as_str())
                .await?)
        })
    }
}

impl RedisNode {
    async fn users_with_names(
        &self,
        room: &RoomId,
        source: &str,
        kind: &str,
    ) -> Result<Vec<User>, BackendError> {
        let keys = &self.shared.keys;
        let (ids, names): (Vec<String>, Vec<Option<String>>) = self
            .shared
            .scripts
            .users_with_names
            .key(keys.room_key(room, source))
            .key(keys.room_key(room, "members"))
            .arg(kind)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(ids
            .into_iter()
            .zip(names)
            .map(|(id, name)| User {
                name: name.unwrap_or_else(|| id.clone()),
                id: UserId::new(id),
            })
            .collect())
    }
}

impl PresenceStore for RedisNode {
    fn enter<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        node: NodeId,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            debug_assert_eq!(node, self.shared.node);
            let total = self
                .shared
                .scripts
                .enter(&self.shared, &mut self.conn(), room, user, 1)
                .await?;
            self.shared
                .presence
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry((room.clone(), user.id.clone()))
                .or_insert_with(|| (user.clone(), 0))
                .1 += 1;
            Ok(total == 1)
        })
    }

    fn exit<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        node: NodeId,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            {
                let mut local = self
                    .shared
                    .presence
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let key = (room.clone(), user.id.clone());
                if let Some(entry) = local.get_mut(&key) {
                    entry.1 = entry.1.saturating_sub(1);
                    if entry.1 == 0 {
                        local.remove(&key);
                    }
                }
            }
            let keys = &self.shared.keys;
            let result: i64 = self
                .shared
                .scripts
                .exit
                .key(keys.room_key(room, "presence"))
                .key(keys.room_key(room, "online"))
                .arg(format!("{node}|{}", user.id))
                .arg(user.id.as_str())
                .invoke_async(&mut self.conn())
                .await?;
            Ok(result == 1)
        })
    }

    fn online<'a>(&'a self, room: &'a RoomId) -> BoxFuture<'a, Result<Vec<User>, BackendError>> {
        Box::pin(self.users_with_names(room, "online", "hash"))
    }

    fn online_counts<'a>(
        &'a self,
        rooms: &'a [RoomId],
    ) -> BoxFuture<'a, Result<Vec<usize>, BackendError>> {
        Box::pin(async move {
            if rooms.is_empty() {
                return Ok(Vec::new());
            }
            let mut pipe = redis::pipe();
            for room in rooms {
                pipe.hlen(self.shared.keys.room_key(room, "online"));
            }
            Ok(pipe.query_async(&mut self.conn()).await?)
        })
    }
}

impl HistoryStore for RedisNode {
    fn page<'a>(
        &'a self,
        room: &'a RoomId,
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, BackendError>> {
        Box::pin(async move {
            let end = match before {
                Some(id) => format!("({}", stream_id(id)?),
                None => "+".to_owned(),
            };
            let entries: Entries = self
                .conn()
                .xrevrange_count(self.shared.keys.room_key(room, "log"), end, "-", limit + 1)
                .await?;
            let mut frames = entry_frames(entries);
            let more = frames.len() > limit;
            frames.truncate(limit);
            frames.reverse();
            let next_before = if more {
                frames.first().map(|(id, _)| MessageId::new(id.as_str()))
            } else {
                None
            };
            Ok(HistoryPage {
                messages: frames.into_iter().map(|(_, f)| f).collect(),
                next_before,
            })
        })
    }

    fn after<'a>(
        &'a self,
        room: &'a RoomId,
        after: &'a MessageId,
        limit: usize,
    ) -> BoxFuture<'a, Result<(Vec<Bytes>, bool), BackendError>> {
        Box::pin(async move {
            let start = format!("({}", stream_id(after)?);
            let entries: Entries = self
                .conn()
                .xrange_count(
                    self.shared.keys.room_key(room, "log"),
                    start,
                    "+",
                    limit + 1,
                )
                .await?;
            let mut frames = entry_frames(entries);
            let more = frames.len() > limit;
            frames.truncate(limit);
            Ok((frames.into_iter().map(|(_, f)| f).collect(), more))
        })
    }
}

/// Finds nodes whose heartbeat is older than the TTL, claims each (ZREM: one winner), and
/// removes its connections from presence, publishing `user_left` for users with none left.
pub(crate) async fn reap_dead_nodes(
    shared: &Shared,
    conn: &mut ConnectionManager,
) -> Result<(), BackendError> {
    let keys = &shared.keys;
    let deadline = now_ms() - shared.config.presence_ttl.as_millis() as i64;
    let dead: Vec<String> = conn.zrangebyscore(keys.nodes(), "-inf", deadline).await?;
    for node in dead {
        let claimed: i64 = conn.zrem(keys.nodes(), &node).await?;
        if claimed != 1 {
            continue; // another node is reaping it
        }
        let Ok(node_id) = uuid::Uuid::parse_str(&node).map(NodeId) else {
            continue;
        };
        let rooms_key = keys.node_rooms(node_id);
        let rooms: Vec<String> = conn.smembers(&rooms_key).await?;
        let mut left = 0;
        for room in rooms {
            let room = RoomId::new(room);
            let gone: Vec<String> = shared
                .scripts
                .reap
                .key(keys.room_key(&room, "presence"))
                .key(keys.room_key(&room, "online"))
                .arg(format!("{node}|"))
                .invoke_async(conn)
                .await?;
            for uid in gone {
                let name: Option<String> = conn.hget(keys.room_key(&room, "members"), &uid).await?;
                let user = User {
                    name: name.unwrap_or_else(|| uid.clone()),
                    id: UserId::new(uid),
                };
                let frame = ServerFrame::System(SystemMessage {
                    room: room.clone(),
                    event: SystemEvent::UserLeft,
                    user,
                    ts: now_ms(),
                })
                .encode();
                let mut payload = envelope_header(Origin {
                    node: shared.node,
                    conn: NO_CONN,
                })
                .into_bytes();
                payload.extend_from_slice(&frame);
                let _: usize = conn.publish(keys.room_channel(&room), payload).await?;
                left += 1;
            }
        }
        let _: () = conn.del(&rooms_key).await?;
        tracing::info!(%node, users_left = left, "reaped a dead node");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_frames_match_published_frames() {
        let message = NewRoomMessage {
            origin: Origin {
                node: NodeId::random(),
                conn: 1,
            },
            room: RoomId::new("r"),
            from: User::new("u", "U \"quoted\""),
            body: "hi\n".into(),
            ts: 5,
        };
        let rest = frame_rest(&message);
        let frame = frame_of("1-0", rest.as_bytes());
        let parsed: ServerFrame = serde_json::from_slice(&frame).unwrap();
        assert_eq!(
            parsed,
            ServerFrame::Message(RoomMessage {
                id: MessageId::new("1-0"),
                room: message.room,
                from: message.from,
                body: message.body,
                ts: 5
            })
        );
        assert!(stream_id(&MessageId::new("12-3")).is_ok());
        assert!(stream_id(&MessageId::new("12")).is_err());
        assert!(stream_id(&MessageId::new("a-b")).is_err());
    }
}
