//! The Redis broker: Pub/Sub through the node's two connections, room messages through the
//! append-and-publish script, direct messages through one script call.

use redis::AsyncCommands;

use super::{envelope, RedisNode};
use crate::{
    backend::{
        broker::{Broker, Envelope, NewRoomMessage, NodeId, SenderCopy, Topic},
        BoxFuture,
    },
    error::BackendError,
    protocol::{wire, MessageId, RoomMessage},
};

impl Broker for RedisNode {
    fn node_id(&self) -> NodeId {
        self.shared.node
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<usize, BackendError>> {
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

    fn publish_room_message(
        &self,
        message: NewRoomMessage,
    ) -> BoxFuture<'_, Result<RoomMessage, BackendError>> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let unnumbered =
                wire::Unnumbered::new(&message.room, &message.from, &message.body, message.ts);
            let mut head = envelope::header(message.origin);
            head.push_str(wire::BEFORE_ID);
            let id: String = self
                .shared
                .scripts
                .append_publish
                .key(keys.room_key(&message.room, "log"))
                .arg(self.shared.config.history_per_room)
                .arg(unnumbered.rest())
                .arg(keys.room_channel(&message.room))
                .arg(head)
                .arg(wire::AFTER_ID)
                .invoke_async(&mut self.conn())
                .await
                .map_err(BackendError::redis)?;
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
            let payload = envelope::payload(envelope.origin, &envelope.frame);
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
                .await
                .map_err(BackendError::redis)?;
            Ok(reached)
        })
    }

    fn subscribe(&self, topics: Vec<Topic>) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let channels: Vec<String> =
                topics.iter().map(|t| self.shared.keys.channel(t)).collect();
            self.shared
                .pubsub
                .clone()
                .subscribe(channels)
                .await
                .map_err(BackendError::redis)?;
            Ok(())
        })
    }

    fn unsubscribe(&self, topics: Vec<Topic>) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let channels: Vec<String> =
                topics.iter().map(|t| self.shared.keys.channel(t)).collect();
            self.shared
                .pubsub
                .clone()
                .unsubscribe(channels)
                .await
                .map_err(BackendError::redis)?;
            Ok(())
        })
    }
}
