//! A broker that can be switched off, to test what users see when the backend is down.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use chat_tower::chat_core::{
    backend::broker::{
        Broker, Control, DirectSent, Envelope, NewDirect, NewRoomMessage, NodeId, Topic,
    },
    protocol::{RoomMessage, UserId},
    Backend, BackendError, BoxFuture,
};

/// Turns the broker off and on.
#[derive(Clone, Default)]
pub struct Switch(Arc<AtomicBool>);

impl Switch {
    pub fn set_down(&self, down: bool) {
        self.0.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), BackendError> {
        if self.0.load(Ordering::SeqCst) {
            Err(BackendError::Unavailable("switched off by the test".into()))
        } else {
            Ok(())
        }
    }
}

/// Wraps another broker; fails every call while its switch is down.
pub struct FlakyBroker {
    inner: Arc<dyn Broker>,
    switch: Switch,
}

impl FlakyBroker {
    /// An in-memory backend whose broker can be switched off.
    pub fn memory() -> (Backend, Switch) {
        let mut backend = Backend::memory();
        let switch = Switch::default();
        backend.broker = Arc::new(FlakyBroker {
            inner: backend.broker.clone(),
            switch: switch.clone(),
        });
        (backend, switch)
    }
}

impl Broker for FlakyBroker {
    fn node_id(&self) -> NodeId {
        self.inner.node_id()
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<usize, BackendError>> {
        Box::pin(async move {
            self.switch.check()?;
            self.inner.publish(envelope).await
        })
    }

    fn publish_room_message(
        &self,
        message: NewRoomMessage,
    ) -> BoxFuture<'_, Result<RoomMessage, BackendError>> {
        Box::pin(async move {
            self.switch.check()?;
            self.inner.publish_room_message(message).await
        })
    }

    fn publish_direct<'a>(
        &'a self,
        direct: NewDirect<'a>,
    ) -> BoxFuture<'a, Result<DirectSent, BackendError>> {
        Box::pin(async move {
            self.switch.check()?;
            self.inner.publish_direct(direct).await
        })
    }

    fn release_held<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<usize, BackendError>> {
        Box::pin(async move {
            self.switch.check()?;
            self.inner.release_held(user).await
        })
    }

    fn publish_control(&self, control: Control) -> BoxFuture<'_, Result<usize, BackendError>> {
        Box::pin(async move {
            self.switch.check()?;
            self.inner.publish_control(control).await
        })
    }

    fn subscribe(&self, topics: Vec<Topic>) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.switch.check()?;
            self.inner.subscribe(topics).await
        })
    }

    fn unsubscribe(&self, topics: Vec<Topic>) -> BoxFuture<'_, Result<(), BackendError>> {
        self.inner.unsubscribe(topics)
    }
}
