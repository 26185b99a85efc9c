//! [`ChatBuilder`]: backend, config, identity, policy, tokens and origins, with a default for
//! each, turned into the router to mount and the host's [`ChatHandle`].

use std::{sync::Arc, time::Duration};

use axum::Router;
use chat_core::{hooks::Policy, Backend, Chat, ChatConfig};

use crate::{
    identity::{IdentityExtractor, NoIdentity, TokenSigner},
    openapi, router, state, AllowedOrigins, ChatHandle,
};

/// Default lifetime of guest tokens: 7 days.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Builds the chat router. Every setting has a default:
/// - backend: [`Backend::memory()`] (one instance, no Redis);
/// - config: [`ChatConfig::default()`];
/// - identity: [`NoIdentity`] plus guest tokens (guests pick a name at `POST /join-room`);
/// - policy: [`chat_core::hooks::MembersOnly`];
/// - token secret: random per process (set one shared secret for several instances);
/// - origins: [`AllowedOrigins::SameHost`].
#[must_use]
pub struct ChatBuilder {
    backend: Option<Backend>,
    config: ChatConfig,
    identity: Box<dyn IdentityExtractor>,
    policy: Option<Arc<dyn Policy>>,
    guests: bool,
    secret: Option<Vec<u8>>,
    token_ttl: Duration,
    origins: AllowedOrigins,
}

impl Default for ChatBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ChatBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatBuilder")
            .field("config", &self.config)
            .field("guests", &self.guests)
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

impl ChatBuilder {
    /// A builder with every default.
    pub fn new() -> Self {
        Self {
            backend: None,
            config: ChatConfig::default(),
            identity: Box::new(NoIdentity),
            policy: None,
            guests: true,
            secret: None,
            token_ttl: DEFAULT_TOKEN_TTL,
            origins: AllowedOrigins::default(),
        }
    }

    /// The backend (default: in memory).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Limits and timings.
    pub fn config(mut self, config: ChatConfig) -> Self {
        self.config = config;
        self
    }

    /// The host's identity hook.
    pub fn identity(mut self, identity: impl IdentityExtractor) -> Self {
        self.identity = Box::new(identity);
        self
    }

    /// The policy hooks (default: [`chat_core::hooks::MembersOnly`]).
    pub fn policy(mut self, policy: impl Policy) -> Self {
        self.policy = Some(Arc::new(policy));
        self
    }

    /// Whether anonymous clients may pick a name at `POST /join-room` (default: yes).
    pub fn guests(mut self, allow: bool) -> Self {
        self.guests = allow;
        self
    }

    /// The secret that signs tokens; share it between instances of one chat.
    pub fn token_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// How long tokens stay valid (default [`DEFAULT_TOKEN_TTL`]).
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Which browser origins may open the WebSocket.
    pub fn allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.origins = origins;
        self
    }

    /// The router to mount (generic over the host's state, so it nests anywhere) and the
    /// handle for server-side sends and shutdown.
    ///
    /// # Panics
    /// Outside a tokio runtime (the chat spawns its dispatcher task), or if the backend was
    /// already used by another chat.
    pub fn build<S>(self) -> (Router<S>, ChatHandle)
    where
        S: Clone + Send + Sync + 'static,
    {
        let backend = self.backend.unwrap_or_else(Backend::memory);
        let policy = self
            .policy
            .unwrap_or_else(|| Arc::new(chat_core::hooks::MembersOnly));
        let chat = Chat::with_policy(backend, self.config, policy);
        let tokens = match self.secret {
            Some(secret) => TokenSigner::new(secret, self.token_ttl),
            None => TokenSigner::random(self.token_ttl),
        };
        let state = state::ChatState {
            inner: Arc::new(state::StateInner {
                chat: chat.clone(),
                tokens: tokens.clone(),
                identity: self.identity,
                guests: self.guests,
                origins: self.origins,
                openapi: openapi::openapi(),
            }),
        };
        (router::router(state), ChatHandle::new(chat, tokens))
    }
}
