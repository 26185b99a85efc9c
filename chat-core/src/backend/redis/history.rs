//! The Redis history store: each room's stream (`:log`), entry ids as message ids.

use bytes::Bytes;
use redis::AsyncCommands;

use super::RedisNode;
use crate::{
    backend::{
        history::{
            conversation, direct_floor, direct_id, millis, Conversation, ConversationCursor,
            ConversationPage, HistoryPage, HistoryStore,
        },
        Reply,
    },
    error::BackendError,
    protocol::{now_ms, wire, MessageId, RoomId, UserId},
};

/// A stream id as Redis issues them (`ms-seq`, both decimal `u64` without sign or leading
/// zero), or `InvalidCursor`. `0-0` and `MAX-MAX` are refused too: Redis never issues them,
/// and as the exclusive bound of a range (`(0-0`, `(MAX-MAX`) they are a Redis error, which
/// would turn a client's bad cursor into a 5xx.
fn stream_id(id: &MessageId) -> Result<&str, BackendError> {
    let s = id.as_str();
    let (ms, seq) = s.split_once('-').ok_or(BackendError::InvalidCursor)?;
    let part = |p: &str| p.parse::<u64>().ok().filter(|n| n.to_string() == p);
    match (part(ms), part(seq)) {
        (Some(0), Some(0)) | (Some(u64::MAX), Some(u64::MAX)) => Err(BackendError::InvalidCursor),
        (Some(_), Some(_)) => Ok(s),
        _ => Err(BackendError::InvalidCursor),
    }
}

/// The milliseconds of a stream id (checked by `stream_id`).
fn entry_ms(id: &str) -> u64 {
    id.split_once('-')
        .and_then(|(ms, _)| ms.parse().ok())
        .unwrap_or(0)
}

/// A stream id's two numbers, which order ids: `(ms, seq)`.
fn id_parts(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;

fn entry_frames(entries: Entries) -> Vec<(String, Bytes)> {
    entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let rest = fields.into_iter().find(|(k, _)| k == "r")?.1;
            let frame = wire::splice(&id, &rest);
            Some((id, frame))
        })
        .collect()
}

impl HistoryStore for RedisNode {
    fn page<'a>(
        &'a self,
        room: &'a RoomId,
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> Reply<'a, HistoryPage> {
        Box::pin(async move {
            let end = match before {
                Some(id) => format!("({}", stream_id(id)?),
                None => "+".to_owned(),
            };
            // Nothing older than `history_max_age`, trimmed or not yet.
            let oldest = self.shared.config.oldest_entry();
            let entries: Entries = self
                .conn()
                .xrevrange_count(
                    self.shared.keys.room_key(room, "log"),
                    end,
                    oldest,
                    limit + 1,
                )
                .await
                .map_err(BackendError::redis)?;
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
    ) -> Reply<'a, (Vec<Bytes>, bool)> {
        Box::pin(async move {
            let after = stream_id(after)?;
            let oldest = self.shared.config.oldest_entry();
            // The later of the two: after `after`, and nothing older than `history_max_age`.
            let aged_out = entry_ms(after) < entry_ms(&oldest);
            let start = if aged_out {
                oldest
            } else {
                format!("({after}")
            };
            let log = self.shared.keys.room_key(room, "log");
            // The replay, and the oldest entry the stream still has: if `after` is older, it
            // was trimmed, and so perhaps were the messages right after it (ids are not
            // consecutive: no way to tell how many), so the client is told to reload.
            let (entries, oldest_kept): (Entries, Entries) = redis::pipe()
                .xrange_count(&log, &start, "+", limit + 1)
                .xrange_count(&log, "-", "+", 1)
                .query_async(&mut self.conn())
                .await
                .map_err(BackendError::redis)?;
            let trimmed = oldest_kept
                .first()
                .and_then(|(id, _)| id_parts(id))
                .zip(id_parts(after))
                .is_some_and(|(oldest, after)| oldest > after);
            let mut frames = entry_frames(entries);
            let more = frames.len() > limit || aged_out || trimmed;
            frames.truncate(limit);
            Ok((frames.into_iter().map(|(_, f)| f).collect(), more))
        })
    }

    fn direct_page<'a>(
        &'a self,
        a: &'a UserId,
        b: &'a UserId,
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> Reply<'a, HistoryPage> {
        Box::pin(async move {
            let max = match before {
                Some(id) => format!("({}", direct_id(id)?),
                None => "+".to_owned(),
            };
            let min = format!("[{}", direct_floor(self.shared.config.history_max_age));
            let (a, b) = conversation(a, b);
            let members: Vec<Vec<u8>> = redis::cmd("ZREVRANGEBYLEX")
                .arg(self.shared.keys.direct_log(a, b))
                .arg(max)
                .arg(min)
                .arg("LIMIT")
                .arg(0)
                .arg(limit + 1)
                .query_async(&mut self.conn())
                .await
                .map_err(BackendError::redis)?;
            let more = members.len() > limit;
            let mut page: Vec<(String, Bytes)> = members
                .into_iter()
                .take(limit)
                .filter_map(|member| {
                    let at = member.iter().position(|b| *b == b' ')?;
                    let id = String::from_utf8(member[..at].to_vec()).ok()?;
                    let frame = Bytes::copy_from_slice(&member[at + 1..]);
                    Some((id, frame))
                })
                .collect();
            page.reverse();
            Ok(HistoryPage {
                next_before: more
                    .then(|| page.first().map(|(id, _)| MessageId::new(id.as_str())))
                    .flatten(),
                messages: page.into_iter().map(|(_, frame)| frame).collect(),
            })
        })
    }

    fn conversations<'a>(
        &'a self,
        user: &'a UserId,
        before: Option<&'a ConversationCursor>,
        limit: usize,
    ) -> Reply<'a, ConversationPage> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let max_age = self.shared.config.history_max_age;
            let floor_ms = now_ms().saturating_sub(millis(max_age));
            // Two round trips: the page of the list, then each conversation's last message
            // and the other user's name (keys in other slots, named from the first reply).
            let listed: Vec<(String, i64)> = self
                .invoke(
                    self.shared
                        .scripts
                        .conversations
                        .key(keys.conversations(user))
                        .arg(floor_ms)
                        .arg(before.map_or_else(String::new, |c| c.at.to_string()))
                        .arg(limit + 1),
                )
                .await?;
            let mut places: Vec<ConversationCursor> = listed
                .into_iter()
                .map(|(peer, at)| ConversationCursor {
                    at,
                    peer: UserId::new(peer),
                })
                .filter(|place| before.is_none_or(|cursor| place < cursor))
                .take(limit + 1)
                .collect();
            let more = places.len() > limit;
            places.truncate(limit);
            let next_before = if more { places.last().cloned() } else { None };
            if places.is_empty() {
                return Ok(ConversationPage::default());
            }
            let floor = format!("[{}", direct_floor(max_age));
            let mut pipe = redis::pipe();
            for place in &places {
                let (a, b) = conversation(user, &place.peer);
                pipe.cmd("ZREVRANGEBYLEX")
                    .arg(keys.direct_log(a, b))
                    .arg("+")
                    .arg(&floor)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(1)
                    .get(keys.user_seen(&place.peer));
            }
            let replies: Vec<redis::Value> = pipe
                .query_async(&mut self.conn())
                .await
                .map_err(BackendError::redis)?;
            let mut conversations = Vec::with_capacity(places.len());
            for (place, reply) in places.into_iter().zip(replies.chunks(2)) {
                let [last, seen] = reply else { continue };
                let last: Vec<Vec<u8>> =
                    redis::from_redis_value_ref(last).map_err(|e| BackendError::redis(e.into()))?;
                let seen: Option<String> =
                    redis::from_redis_value_ref(seen).map_err(|e| BackendError::redis(e.into()))?;
                // A conversation whose messages have all aged out is not listed.
                let Some(member) = last.into_iter().next() else {
                    continue;
                };
                let Some(at) = member.iter().position(|b| *b == b' ') else {
                    continue;
                };
                conversations.push(Conversation {
                    peer: place.peer.clone(),
                    peer_name: seen.as_deref().and_then(super::keys::seen_name),
                    last: Bytes::copy_from_slice(&member[at + 1..]),
                    cursor: place,
                });
            }
            Ok(ConversationPage {
                conversations,
                next_before,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_stream_ids() {
        assert!(stream_id(&MessageId::new("12-3")).is_ok());
        assert!(stream_id(&MessageId::new("12")).is_err());
        assert!(stream_id(&MessageId::new("a-b")).is_err());
        let max = u64::MAX;
        for bad in [
            "0-0".to_owned(),
            format!("{max}-{max}"),
            "18446744073709551616-0".into(),
            "01-0".into(),
            "+1-0".into(),
            "1-".into(),
            "".into(),
            "1-2-3".into(),
            "9".repeat(5000),
        ] {
            assert!(stream_id(&MessageId::new(bad.clone())).is_err(), "{bad}");
        }
        assert!(stream_id(&MessageId::new("0-1")).is_ok());
    }
}
