//! [`Subscriptions`]: this node's broker subscriptions, ref-counted by local interest, so a
//! topic is subscribed once per node, never once per connection.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use crate::{
    backend::broker::{Broker, Topic},
    error::BackendError,
    logs::UNSUBSCRIBE_FAILURES,
    sync::lock,
};

/// Local interest per topic.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    /// The tokio mutex serializes subscribe/unsubscribe of one topic (so a leave's
    /// UNSUBSCRIBE can never overtake a later join's SUBSCRIBE); the std mutex around the map
    /// is only held to find or create a topic's slot.
    topics: Mutex<HashMap<Topic, Arc<tokio::sync::Mutex<usize>>>>,
    /// Topics whose last release could not unsubscribe (the broker was away): tried again by
    /// [`Subscriptions::retry_stale`]. Without it a Redis connection that resubscribes what
    /// it still tracks would keep them forever (found by the soak test).
    stale: Mutex<HashSet<Topic>>,
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
            if let Err(err) = broker.subscribe(vec![topic.clone()]).await {
                // Nobody holds it: the slot goes, or it would count as a subscription forever
                // (the soak test met one after a connect during a Redis outage).
                drop(count);
                self.forget_if_idle(topic, &slot);
                return Err(err);
            }
            // Wanted again: no stale unsubscribe may run for it (it takes this slot's lock).
            lock(&self.stale).remove(topic);
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
            // Meanwhile its frames find no local connection and are dropped; it is tried
            // again until the broker takes it.
            match UNSUBSCRIBE_FAILURES.admit() {
                Some(held_back) => tracing::warn!(
                    cause = %err,
                    ?topic,
                    more_since_last_line = held_back,
                    "unsubscribe failed; retrying it later"
                ),
                None => tracing::debug!(cause = %err, ?topic, "unsubscribe failed; retrying"),
            }
            lock(&self.stale).insert(topic.clone());
        }
        drop(count);
        self.forget_if_idle(topic, &slot);
    }

    /// Tries again the unsubscribes that failed; each under its topic's lock, and only if
    /// nobody acquired the topic since. Returns how many are still pending.
    pub(crate) async fn retry_stale(&self, broker: &dyn Broker) -> usize {
        let stale: Vec<Topic> = lock(&self.stale).iter().cloned().collect();
        for topic in stale {
            let slot = self.slot(&topic);
            let count = slot.lock().await;
            if *count == 0 {
                match broker.unsubscribe(vec![topic.clone()]).await {
                    Ok(()) => {
                        lock(&self.stale).remove(&topic);
                    }
                    Err(_) => {
                        drop(count);
                        self.forget_if_idle(&topic, &slot);
                        break; // still away: the next round
                    }
                }
            } else {
                lock(&self.stale).remove(&topic);
            }
            drop(count);
            self.forget_if_idle(&topic, &slot);
        }
        lock(&self.stale).len()
    }

    /// Drops `topic`'s slot from the map when nobody else holds or waits on it.
    fn forget_if_idle(&self, topic: &Topic, slot: &Arc<tokio::sync::Mutex<usize>>) {
        let mut topics = lock(&self.topics);
        // Two references left (the map's and `slot`) means nobody is waiting on this topic, so
        // the entry can go; new acquirers clone under this same lock, so this cannot race.
        if Arc::strong_count(slot) == 2 {
            if let Some(current) = topics.get(topic) {
                if Arc::ptr_eq(current, slot) {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::{
        backend::{
            broker::{Control, Envelope, NewRoomMessage, NodeId},
            Reply,
        },
        protocol::{RoomId, RoomMessage},
    };

    /// A broker that only (un)subscribes, and fails while `away`.
    #[derive(Default)]
    struct Topics {
        away: AtomicBool,
        subscribed: Mutex<HashSet<Topic>>,
    }

    impl Topics {
        fn set(&self, topics: Vec<Topic>, on: bool) -> Reply<'_, ()> {
            let result = if self.away.load(Ordering::SeqCst) {
                Err(BackendError::Unavailable("away".into()))
            } else {
                let mut subscribed = lock(&self.subscribed);
                for topic in topics {
                    if on {
                        subscribed.insert(topic);
                    } else {
                        subscribed.remove(&topic);
                    }
                }
                Ok(())
            };
            Box::pin(std::future::ready(result))
        }
    }

    fn unused<T: Send + 'static>() -> Reply<'static, T> {
        Box::pin(std::future::ready(Err(BackendError::Unavailable(
            "not in this test".into(),
        ))))
    }

    impl Broker for Topics {
        fn node_id(&self) -> NodeId {
            NodeId(uuid::Uuid::nil())
        }
        fn publish(&self, _: Envelope) -> Reply<'_, usize> {
            unused()
        }
        fn publish_room_message(&self, _: NewRoomMessage) -> Reply<'_, RoomMessage> {
            unused()
        }
        fn publish_control(&self, _: Control) -> Reply<'_, usize> {
            unused()
        }
        fn subscribe(&self, topics: Vec<Topic>) -> Reply<'_, ()> {
            self.set(topics, true)
        }
        fn unsubscribe(&self, topics: Vec<Topic>) -> Reply<'_, ()> {
            self.set(topics, false)
        }
    }

    #[tokio::test]
    async fn an_unsubscribe_that_failed_is_retried_unless_the_topic_is_wanted_again() {
        let broker = Topics::default();
        let subs = Subscriptions::default();
        let (a, b) = (
            Topic::Room(RoomId::new("a".to_owned())),
            Topic::Room(RoomId::new("b".to_owned())),
        );
        subs.acquire(&broker, &a).await.unwrap();
        subs.acquire(&broker, &b).await.unwrap();
        broker.away.store(true, Ordering::SeqCst);
        subs.release(&broker, &a).await;
        subs.release(&broker, &b).await;
        assert_eq!(subs.retry_stale(&broker).await, 2, "still away");
        broker.away.store(false, Ordering::SeqCst);
        // `b` is wanted again before the retry: it must stay subscribed.
        subs.acquire(&broker, &b).await.unwrap();
        assert_eq!(subs.retry_stale(&broker).await, 0);
        let subscribed = lock(&broker.subscribed).clone();
        assert_eq!(subscribed, HashSet::from([b.clone()]));
        assert_eq!(subs.count(), 1);
    }

    #[tokio::test]
    async fn a_subscribe_that_failed_leaves_no_subscription_behind() {
        let broker = Topics::default();
        let subs = Subscriptions::default();
        let a = Topic::Room(RoomId::new("a".to_owned()));
        broker.away.store(true, Ordering::SeqCst);
        assert!(subs.acquire(&broker, &a).await.is_err());
        assert_eq!(subs.count(), 0, "no topic with local interest");
        broker.away.store(false, Ordering::SeqCst);
        subs.acquire(&broker, &a).await.unwrap();
        subs.release(&broker, &a).await;
        assert_eq!(subs.count(), 0);
        assert!(lock(&broker.subscribed).is_empty());
    }
}
