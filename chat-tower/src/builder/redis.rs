//! The Redis backend in one call (feature `redis`): connect, and sign tokens with the secret
//! that every instance of the chat shares through Redis.

use chat_core::{
    backend::redis::{RedisBackend, RedisConfig},
    BackendError,
};

use super::ChatBuilder;

impl<S: Clone + Send + Sync + 'static> ChatBuilder<S> {
    /// Runs the chat on the Redis at `url` (default [`RedisConfig`]), so that several
    /// instances behind a load balancer are one chat: see [`ChatBuilder::redis_backend`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), chat_tower::chat_core::BackendError> {
    /// let (chat_router, chat) = chat_tower::ChatBuilder::<()>::new()
    ///     .redis("redis://127.0.0.1:6379/")
    ///     .await?
    ///     .build();
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`BackendError::Redis`] if the URL is invalid or Redis cannot be reached.
    pub async fn redis(self, url: &str) -> Result<Self, BackendError> {
        self.redis_with(url, RedisConfig::default()).await
    }

    /// [`ChatBuilder::redis`] with a [`RedisConfig`] (key prefix, presence TTL, history
    /// length).
    ///
    /// # Errors
    /// As [`ChatBuilder::redis`].
    pub async fn redis_with(self, url: &str, config: RedisConfig) -> Result<Self, BackendError> {
        let backend = RedisBackend::connect(url, config).await?;
        self.redis_backend(backend).await
    }

    /// Runs the chat on a connected [`RedisBackend`]. Unless a secret was set before with
    /// [`ChatBuilder::token_secret`], tokens are signed with the secret the instances share
    /// through Redis ([`RedisBackend::shared_secret`]), so that a token issued by one instance
    /// is accepted by all. Set a secret of your own where tokens must survive Redis losing
    /// its data.
    ///
    /// # Errors
    /// [`BackendError::Redis`] if Redis cannot be reached for the secret.
    pub async fn redis_backend(mut self, backend: RedisBackend) -> Result<Self, BackendError> {
        if self.secret.is_none() {
            self.secret = Some(backend.shared_secret().await?);
        }
        Ok(self.backend(backend.into_backend()))
    }
}
