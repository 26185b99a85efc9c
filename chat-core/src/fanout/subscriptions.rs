//! [`Subscriptions`]: this node's broker subscriptions, ref-counted by local interest, so a
//! topic is subscribed once per node, never once per connection.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::{
    backend::broker::{Broker, Topic},
    error::BackendError,
    sync::lock,
};

/// Local interest per topic.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    /// The tokio mutex serializes subscribe/unsubscribe of one topic (so a leave's
    /// UNSUBSCRIBE can never overtake a later join's SUBSCRIBE); the std mutex around the map
    /// is only held to find or create a topic's slot.
    topics: Mutex<HashMap<Topic, Arc<tokio::sync::Mutex<usize>>>>,
}

impl Subscriptions {
    fn slot(&self, topic: &Topic) -> Arc<tokio::sync::Mutex<usize>> {
        lock(&self.topics).entry(topic.clone()).or_default().clone()
    }

    /// One more local interest in `topic`; subscribes the node on the first.
    pub(crate) async fn acquire(
        &self,
        broker: &dyn Broker,
        topic: &Topic,
    ) -> Result<(), BackendError> {
        let slot = self.slot(topic);
        let mut count = slot.lock().await;
        if *count == 0 {
            broker.subscribe(vec![topic.clone()]).await?;
        }
        *count += 1;
        Ok(())
    }

    /// One less local interest in `topic`; unsubscribes the node after the last.
    pub(crate) async fn release(&self, broker: &dyn Broker, topic: &Topic) {
        let slot = self.slot(topic);
        let mut count = slot.lock().await;
        *count = count.saturating_sub(1);
        if *count > 0 {
            return;
        }
        if let Err(err) = broker.unsubscribe(vec![topic.clone()]).await {
            // The subscription may linger in the broker: its frames then find no local
            // connection and are dropped, which is harmless.
            tracing::warn!(cause = %err, ?topic, "unsubscribe failed");
        }
        drop(count);
        let mut topics = lock(&self.topics);
        // Two references left (the map's and `slot`) means nobody is waiting on this topic, so
        // the entry can go; new acquirers clone under this same lock, so this cannot race.
        if Arc::strong_count(&slot) == 2 {
            if let Some(current) = topics.get(topic) {
                if Arc::ptr_eq(current, &slot) {
                    topics.remove(topic);
                }
            }
        }
    }

    /// Topics with local interest (metrics, tests).
    pub(crate) fn count(&self) -> usize {
        lock(&self.topics).len()
    }
}
