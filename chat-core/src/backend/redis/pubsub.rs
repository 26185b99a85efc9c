//! The Redis broker: Pub/Sub through the node's two connections, room messages through the
//! append-and-publish script, direct messages through one script call.

use redis::AsyncCommands;

use super::{envelope, RedisNode};
use crate::{
    backend::{
        broker::{Broker, Control, Envelope, NewRoomMessage, NodeId, SenderCopy, Topic},
        Reply,
    },
    error::BackendError,
    protocol::{wire, MessageId, RoomMessage},
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
            let id: String = self
                .invoke(
                    self.shared
                        .scripts
                        .append_publish
                        .key(keys.room_key(&message.room, "log"))
                        .key(keys.room_key(&message.room, "info"))
                        .key(keys.room_key(&message.room, "members"))
                        .key(keys.room_key(&message.room, "order"))
                        .key(keys.room_key(&message.room, "presence"))
                        .key(keys.room_key(&message.room, "online"))
                        .arg(self.shared.config.history_per_room)
                        .arg(unnumbered.rest())
                        .arg(keys.room_channel(&message.room))
                        .arg(head)
                        .arg(wire::AFTER_ID)
                        .arg(self.shared.config.room_ttl_ms())
                        .arg(self.shared.config.oldest_entry()),
                )
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

    fn publish_direct(&self, envelope: Envelope, copy_to: Option<SenderCopy>) -> Reply<'_, usize> {
        // One round trip instead of two, and the copy only when the recipient was reached and
        // someone will get it (see the script).
        Box::pin(async move {
            let keys = &self.shared.keys;
            let payload = envelope::payload(envelope.origin, &envelope.frame);
            let reached: usize = self
                .invoke(
                    self.shared
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
                        .arg(u8::from(copy_to.is_some_and(|copy| copy.here))),
                )
                .await?;
            Ok(reached)
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

    fn unsubscribe(&self, topics: Vec<Topic>) -> Reply<'_, ()> {
        self.set_subscribed(topics, false)
    }
}
