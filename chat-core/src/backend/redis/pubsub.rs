//! The Redis broker: Pub/Sub through the node's two connections, room messages through the
//! append-and-publish script, direct messages through one script call.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use redis::AsyncCommands;

use super::{envelope, evalsha, keys, micros, RedisNode};
use crate::{
    backend::{
        broker::{
            Broker, Control, Dedup, DirectSent, Envelope, NewDirect, NewRoomMessage, NodeId, Topic,
        },
        history::{conversation, direct_floor, millis},
        Reply,
    },
    error::BackendError,
    limits::Quota,
    protocol::{now_ms, wire, MessageId, RoomId, RoomMessage, UserId},
    sync::lock,
};

impl RedisNode {
    /// (Un)subscribes the node's Pub/Sub connection to the topics' channels.
    fn set_subscribed(&self, topics: Vec<Topic>, on: bool) -> Reply<'_, ()> {
        let channels: Vec<String> = topics.iter().map(|t| self.shared.keys.channel(t)).collect();
        let mut pubsub = self.shared.pubsub.clone();
        Box::pin(async move {
            let done = if on {
                pubsub.subscribe(channels).await
            } else {
                pubsub.unsubscribe(channels).await
            };
            done.map_err(BackendError::redis)
        })
    }
}

impl Broker for RedisNode {
    fn node_id(&self) -> NodeId {
        self.shared.node
    }

    fn publish(&self, envelope: Envelope) -> Reply<'_, usize> {
        Box::pin(async move {
            let channel = self.shared.keys.channel(&envelope.topic);
            let payload = envelope::payload(envelope.origin, &envelope.frame);
            let reached: usize = self
                .conn()
                .publish(channel, payload)
                .await
                .map_err(BackendError::redis)?;
            Ok(reached)
        })
    }

    fn publish_room_message(&self, message: NewRoomMessage) -> Reply<'_, RoomMessage> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let unnumbered =
                wire::Unnumbered::new(&message.room, &message.from, &message.body, message.ts);
            let mut head = envelope::header(message.origin);
            head.push_str(wire::BEFORE_ID);
            let room = &message.room;
            let dedup = message.dedup.as_ref().map(|dedup| {
                (
                    dedup,
                    keys::sent_extra(&message.from.id, &dedup.client_msg_id),
                )
            });
            // The room's names are built in one buffer and the command straight from it: this
            // runs once per message, with six or seven keys (see `RedisNode::eval`).
            let mut names = keys.room_names(
                room,
                dedup.map_or(keys::NODE_CONNS_EXTRA, |(_, extra)| {
                    extra.max(keys::NODE_CONNS_EXTRA)
                }),
            );
            let script = &self.shared.scripts.append_publish;
            // A message is activity: the script gives the room's keys the room TTL again and
            // trims entries older than `history_max_age`, all in this one call, once per
            // upkeep period and room on this node. Only then does the call name the five keys
            // the upkeep touches besides the stream: the other messages send a third fewer
            // bytes for Redis to parse (~330 of ~1,090 in W1).
            let upkeep = lock(&self.shared.upkeep).due(room, self.shared.config.upkeep_period());
            // The user's quota for every node: from this node's lease if it holds a token,
            // else from the bucket in the script, with a lease for the next messages.
            let now = std::time::Instant::now();
            let quota = message.quota.and_then(|quota| {
                let want = self
                    .shared
                    .leases
                    .spend(&message.from.id, &quota, now)
                    .err()?;
                Some((quota, keys.quota(&message.from.id, quota.limit), want))
            });
            let numkeys = if upkeep { 6 } else { 1 }
                + usize::from(dedup.is_some())
                + usize::from(quota.is_some());
            // Eight keys at most, each no longer than the buffer but the quota's; twelve
            // arguments, two of them the frame's parts and the other ones short.
            let bytes = numkeys * names.capacity()
                + quota.as_ref().map_or(0, |(_, key, _)| key.len())
                + unnumbered.rest().len()
                + head.len()
                + 160;
            let mut cmd = evalsha(script, numkeys, 20, bytes);
            cmd.arg(names.key("log"));
            if upkeep {
                for what in ["info", "members", "order", "online"] {
                    cmd.arg(names.key(what));
                }
                cmd.arg(names.node_conns(self.shared.node));
            }
            if let Some((dedup, _)) = dedup {
                cmd.arg(names.sent(&message.from.id, &dedup.client_msg_id));
            }
            if let Some((_, key, _)) = &quota {
                cmd.arg(key);
            }
            cmd.arg(self.shared.config.history_per_room)
                .arg(unnumbered.rest())
                .arg(names.channel())
                .arg(head)
                .arg(wire::AFTER_ID)
                // 0: this node did the upkeep for the room less than a period ago.
                .arg(if upkeep {
                    self.shared.config.room_ttl_ms()
                } else {
                    0
                })
                .arg(self.shared.config.oldest_entry())
                .arg(message.ts)
                .arg(dedup.map_or(0, |(dedup, _)| window_ms(dedup)));
            match &quota {
                Some((quota, _, want)) => cmd
                    .arg(micros(quota.interval).max(1))
                    .arg(micros(quota.tolerance()))
                    .arg(*want),
                None => cmd.arg(0).arg(0).arg(0),
            };
            let reply: Result<(String, i64, u32), _> = self.eval(script, &cmd).await;
            if let Some((_, _, want)) = &quota {
                let taken = reply.as_ref().map_or(0, |(_, _, taken)| *taken);
                self.shared.leases.took(&message.from.id, *want, taken, now);
            }
            let (id, ts, _) = reply?;
            if let (true, Some((quota, _, _))) = (id.is_empty(), quota) {
                return Err(over_quota(quota, ts));
            }
            Ok(RoomMessage {
                id: MessageId::new(id),
                room: message.room,
                from: message.from,
                body: message.body,
                ts,
            })
        })
    }

    fn publish_direct<'a>(&'a self, direct: NewDirect<'a>) -> Reply<'a, DirectSent> {
        // One round trip instead of two, and the copy only when the recipient was reached (or
        // the message is held for them) and someone will get it (see the script).
        Box::pin(async move {
            let NewDirect {
                envelope,
                copy_to,
                dedup,
                hold,
                keep,
                charge,
            } = direct;
            let keys = &self.shared.keys;
            let config = &self.shared.config;
            let payload = envelope::payload(envelope.origin, &envelope.frame);
            let script = &self.shared.scripts.direct;
            // Built straight into the command, as for room messages (`RedisNode::eval`): the
            // sent key (with a `clientMsgId`), the held list's keys (when holding) and the
            // conversation's log (when keeping), then the channels, the payload and the flags.
            let sent = dedup.map(|d| (d, keys.direct_sent(d.from, d.to, &d.dedup.client_msg_id)));
            let held = hold.map(|h| {
                (
                    h,
                    [
                        keys.user_key(h.to, "held"),
                        keys.user_seen(h.to),
                        keys.legacy_users(),
                        keys.user_key(h.to, "held:senders"),
                        keys.user_key(h.to, "held:guests"),
                    ],
                )
            });
            let log = keep.map(|k| {
                let (a, b) = conversation(k.from, k.to);
                (
                    k,
                    [
                        keys.direct_log(a, b),
                        keys.conversations(k.from),
                        keys.conversations(k.to),
                    ],
                )
            });
            let charge = charge.map(|c| (c.quota, keys.quota(c.user, c.quota.limit)));
            let copy_channel = copy_to
                .as_ref()
                .map(|copy| keys.channel(&copy.topic))
                .unwrap_or_default();
            let channel = keys.channel(&envelope.topic);
            let bytes = sent.as_ref().map_or(0, |(_, key)| key.len())
                + held.as_ref().map_or(0, |(h, k)| {
                    k.iter().map(String::len).sum::<usize>()
                        + h.to.as_str().len()
                        + h.from.as_str().len()
                })
                + log.as_ref().map_or(0, |(k, keys)| {
                    keys.iter().map(String::len).sum::<usize>()
                        + k.from.as_str().len()
                        + k.to.as_str().len()
                        + 96
                })
                + charge.as_ref().map_or(0, |(_, key)| key.len())
                + channel.len()
                + copy_channel.len()
                + payload.len()
                + 200;
            let numkeys = usize::from(sent.is_some())
                + if held.is_some() { 5 } else { 0 }
                + if log.is_some() { 3 } else { 0 }
                + usize::from(charge.is_some());
            let mut cmd = evalsha(script, numkeys, 27, bytes);
            if let Some((_, key)) = &sent {
                cmd.arg(key);
            }
            if let Some((_, held_keys)) = &held {
                cmd.arg(&held_keys[..]);
            }
            if let Some((_, log_keys)) = &log {
                cmd.arg(&log_keys[..]);
            }
            if let Some((_, key)) = &charge {
                cmd.arg(key);
            }
            cmd.arg(channel)
                .arg(copy_channel)
                .arg(payload)
                .arg(u8::from(copy_to.is_some_and(|copy| copy.here)));
            let id = sent
                .as_ref()
                .map(|(d, _)| d.id)
                .or(log.as_ref().map(|(k, _)| k.id))
                .map_or("", MessageId::as_str);
            match &sent {
                Some((d, _)) => cmd.arg(id).arg(d.ts).arg(window_ms(d.dedup)),
                None => cmd.arg(id).arg(0).arg(0),
            };
            match &held {
                Some((h, _)) => cmd
                    .arg(h.max)
                    .arg(h.until())
                    .arg(millis(h.max_age).max(1))
                    .arg(h.to.as_str()),
                None => cmd.arg(0).arg(0).arg(0).arg(""),
            };
            cmd.arg(u8::from(sent.is_some()));
            match &held {
                Some((h, _)) => cmd.arg(h.from.as_str()).arg(h.max_per_sender),
                None => cmd.arg("").arg(0),
            };
            match &log {
                // The script cuts the frame out of the payload: sent once.
                Some((k, _)) => cmd
                    .arg(1)
                    .arg(k.ts)
                    .arg(config.history_per_room.max(1))
                    .arg(direct_floor(config.history_max_age))
                    .arg(config.room_ttl_ms())
                    .arg(k.from.as_str())
                    .arg(k.to.as_str())
                    .arg(k.listed.max(1))
                    .arg(now_ms().saturating_sub(millis(config.history_max_age))),
                None => cmd
                    .arg(0)
                    .arg(0)
                    .arg(0)
                    .arg("")
                    .arg(0)
                    .arg("")
                    .arg("")
                    .arg(0)
                    .arg(0),
            };
            match &held {
                Some((h, _)) => cmd.arg(u8::from(h.guest)).arg(h.max_from_guests),
                None => cmd.arg(0).arg(0),
            };
            match &charge {
                Some((quota, _)) => cmd
                    .arg(micros(quota.interval).max(1))
                    .arg(micros(quota.tolerance())),
                None => cmd.arg(0).arg(0),
            };
            // -1: a duplicate, with the first one's id and ts; -2: the held list is full;
            // -3: held; -4: over the quota, `ts` the ms to wait.
            let (reached, id, ts, held): (i64, String, i64, i64) = self.eval(script, &cmd).await?;
            if let (-4, Some((quota, _))) = (reached, charge) {
                return Err(over_quota(quota, ts));
            }
            Ok(match reached {
                -1 => DirectSent::Duplicate {
                    id: MessageId::new(id),
                    ts,
                    held: held == 1,
                },
                -2 => DirectSent::InboxFull,
                -3 => DirectSent::Held,
                reached => DirectSent::Published(usize::try_from(reached).unwrap_or(0)),
            })
        })
    }

    fn release_held<'a>(&'a self, user: &'a UserId) -> Reply<'a, usize> {
        // Each held message carries its own deadline ("until"), set from the hold time.
        Box::pin(async move {
            let keys = &self.shared.keys;
            let script = &self.shared.scripts.release_held;
            let held = keys.user_key(user, "held");
            let senders = keys.user_key(user, "held:senders");
            let guests = keys.user_key(user, "held:guests");
            let channel = keys.channel(&Topic::User(user.clone()));
            let bytes = held.len() + senders.len() + guests.len() + channel.len() + 24;
            let mut cmd = evalsha(script, 3, 5, bytes);
            cmd.arg(held)
                .arg(senders)
                .arg(guests)
                .arg(channel)
                .arg(now_ms());
            self.eval(script, &cmd).await
        })
    }

    fn publish_control(&self, control: Control) -> Reply<'_, usize> {
        Box::pin(async move {
            let channel = self.shared.keys.channel(&control.topic());
            let reached: usize = self
                .conn()
                .publish(channel, envelope::control_payload(&control))
                .await
                .map_err(BackendError::redis)?;
            Ok(reached)
        })
    }

    fn subscribe(&self, topics: Vec<Topic>) -> Reply<'_, ()> {
        self.set_subscribed(topics, true)
    }

    fn ready(&self, subscribed: bool) -> Reply<'_, ()> {
        Box::pin(async move {
            for conn in [self.shared.cmd.clone(), self.shared.pubsub.clone()] {
                let mut conn = conn;
                let _: String = redis::cmd("PING")
                    .query_async(&mut conn)
                    .await
                    .map_err(BackendError::redis)?;
            }
            if subscribed
                && self
                    .shared
                    .pubsub_lost
                    .load(std::sync::atomic::Ordering::Relaxed)
            {
                return Err(BackendError::Unavailable(
                    "pub/sub subscriptions not restored yet".into(),
                ));
            }
            Ok(())
        })
    }

    fn unsubscribe(&self, topics: Vec<Topic>) -> Reply<'_, ()> {
        self.set_subscribed(topics, false)
    }
}

/// A dedup window in milliseconds for PEXPIRE (at least 1: 0 is refused).
/// A script's "over the quota, wait `ms`".
fn over_quota(quota: Quota, ms: i64) -> BackendError {
    BackendError::OverQuota {
        limit: quota.limit,
        retry_after: Duration::from_millis(u64::try_from(ms).unwrap_or(0).max(1)),
    }
}

fn window_ms(dedup: &Dedup) -> u64 {
    u64::try_from(dedup.window.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Which rooms had their upkeep (the room TTL given again, history trimmed by age) from a
/// message of this node in the current period. A room's first message in a period does it;
/// the others skip it, which saves 7 of the script's 12 calls. The set is emptied when a period
/// ends, so it holds at most the rooms that had messages here within one period.
#[derive(Debug)]
pub(super) struct Upkeep {
    since: Instant,
    rooms: HashSet<RoomId>,
}

impl Default for Upkeep {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            rooms: HashSet::new(),
        }
    }
}

impl Upkeep {
    /// Whether a message in `room` should do the upkeep now (and, if so, records it).
    pub(super) fn due(&mut self, room: &RoomId, period: Duration) -> bool {
        let now = Instant::now();
        if now.duration_since(self.since) >= period {
            self.rooms.clear();
            self.since = now;
        }
        if self.rooms.contains(room) {
            return false;
        }
        self.rooms.insert(room.clone());
        true
    }
}

#[cfg(test)]
mod upkeep_tests {
    use super::*;

    #[test]
    fn a_room_does_its_upkeep_once_per_period() {
        let (a, b) = (RoomId::new("a"), RoomId::new("b"));
        let mut upkeep = Upkeep::default();
        let hour = Duration::from_secs(3600);
        assert!(upkeep.due(&a, hour));
        assert!(!upkeep.due(&a, hour));
        assert!(upkeep.due(&b, hour));
        // A zero period (or a period that ended) starts over: every room is due again.
        assert!(upkeep.due(&a, Duration::ZERO));
        assert!(upkeep.due(&a, Duration::ZERO));
    }
}
