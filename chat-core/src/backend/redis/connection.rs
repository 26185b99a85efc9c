//! The connections to Redis: fail-fast settings, the watchdog that keeps them reconnecting,
//! and the Pub/Sub connection's pushes turned into broker events.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    PushInfo, PushKind, Value,
};
use tracing::{debug, info, warn};

use super::{envelope, keys::Keys};
use crate::backend::{broker::BrokerEvent, events::EventSender};

/// Connection settings that make a sender hear `unavailable` within about a second while
/// Redis is down, instead of waiting.
pub(super) fn fast_failing() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(250)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200))
}

/// Turns the Pub/Sub connection's pushes into broker events: messages become envelopes; a
/// disconnection followed by the automatic resubscription becomes one
/// [`BrokerEvent::Reconnected`]. Runs on the redis crate's task, so it never waits.
pub(super) struct Pushes {
    keys: Keys,
    events: EventSender,
    /// Set from the loss of the Pub/Sub connection until its resubscription (shared with the
    /// readiness probe).
    disconnected: Arc<AtomicBool>,
}

impl Pushes {
    pub(super) fn new(keys: Keys, events: EventSender, disconnected: Arc<AtomicBool>) -> Self {
        Self {
            keys,
            events,
            disconnected,
        }
    }

    /// `Err` once the chat is gone (nobody reads the events any more).
    pub(super) fn handle(&self, push: PushInfo) -> Result<(), ()> {
        match push.kind {
            PushKind::Message => {
                let (channel, payload) = match message_parts(push.data) {
                    Ok(parts) => parts,
                    Err(data) => {
                        warn!(?data, "malformed pub/sub message");
                        return Ok(());
                    }
                };
                match envelope::parse(&self.keys, &channel, payload) {
                    Some(event) => self.events.send(event).map_err(|_| ()),
                    None => {
                        debug!(channel = %String::from_utf8_lossy(&channel), "ignored a message that is not ours");
                        Ok(())
                    }
                }
            }
            PushKind::Disconnection => {
                warn!("redis pub/sub connection lost; resubscribing when it is back");
                self.disconnected.store(true, Ordering::Relaxed);
                Ok(())
            }
            PushKind::Subscribe if self.disconnected.swap(false, Ordering::Relaxed) => {
                info!("redis pub/sub connection restored");
                self.events.send(BrokerEvent::Reconnected).map_err(|_| ())
            }
            _ => Ok(()),
        }
    }
}

/// Keeps a connection trying to reconnect while Redis is away: the connection manager gives
/// up after its retry budget and only tries again when something uses it, which would leave
/// the Pub/Sub connection unsubscribed and the first command after an outage failing.
pub(super) async fn watchdog(mut conn: ConnectionManager) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let _: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
    }
}

/// A pushed message's channel and payload, taken out of the push without copying them; the
/// values as they came when the push is not `[channel, payload]` (for the log).
fn message_parts(data: Vec<Value>) -> Result<(Vec<u8>, Vec<u8>), Vec<Value>> {
    fn bytes(value: Value) -> Result<Vec<u8>, Value> {
        match value {
            Value::BulkString(bytes) => Ok(bytes),
            Value::SimpleString(text) => Ok(text.into_bytes()),
            other => Err(other),
        }
    }
    let [channel, payload] = <[Value; 2]>::try_from(data)?;
    match (bytes(channel), bytes(payload)) {
        (Ok(channel), Ok(payload)) => Ok((channel, payload)),
        (channel, payload) => Err(vec![
            channel.map_or_else(|v| v, Value::BulkString),
            payload.map_or_else(|v| v, Value::BulkString),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_push_is_channel_and_payload() {
        assert_eq!(
            message_parts(vec![
                Value::BulkString(b"p:room:{x}".to_vec()),
                Value::SimpleString("a:1\n{}".into()),
            ]),
            Ok((b"p:room:{x}".to_vec(), b"a:1\n{}".to_vec()))
        );
        assert_eq!(message_parts(vec![Value::Nil]), Err(vec![Value::Nil]));
        let odd = vec![Value::BulkString(b"c".to_vec()), Value::Int(1)];
        assert_eq!(message_parts(odd.clone()), Err(odd));
    }
}
