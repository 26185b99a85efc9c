//! [`ChatBuilder`]: backend, config, identity, policy, tokens and origins, with a default for
//! each, turned into the router to mount and the host's [`ChatHandle`]. `redis` (feature
//! `redis`): the Redis backend and its shared token secret in one call. `postgres` (feature
//! `postgres`): the PostgreSQL history archive in one call.

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;

use std::{marker::PhantomData, sync::Arc, time::Duration};

use axum::Router;
use chat_core::{archive::Archive, hooks::Policy, Backend, Chat, ChatConfig, User};

use crate::{
    client_addr::TrustedProxies,
    identity::{resolve::Access, IdentityExtractor, NoIdentity, TokenSigner},
    openapi, router, state, AllowedOrigins, ChatHandle,
};

/// Default lifetime of guest tokens: 7 days.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Builds the chat router for a host whose router state is `S`. Every setting has a default:
/// - backend: [`Backend::memory()`] (one instance, no Redis; with the `redis` feature,
///   `ChatBuilder::redis(url)` connects to Redis and shares the token secret through it);
/// - config: [`ChatConfig::default()`];
/// - identity: [`NoIdentity`], and guest mode on (`POST /guests` gives a name a token); a
///   host that plugs in its own identity has guests off unless it turns them on;
/// - policy: [`chat_core::hooks::DefaultPolicy`];
/// - token secret: random per process (set one shared secret for several instances);
/// - origins: [`AllowedOrigins::SameHost`];
/// - trusted proxies (whose `X-Forwarded-For` names a guest's address): loopback only;
/// - system user (the sender of server-side messages): `{"id": "system", "name": "System"}`;
/// - history archive: none (history is what the backend keeps).
#[must_use]
pub struct ChatBuilder<S = ()> {
    backend: Option<Backend>,
    archive: Option<Arc<dyn Archive>>,
    config: ChatConfig,
    identity: Option<Arc<dyn IdentityExtractor<S>>>,
    policy: Option<Arc<dyn Policy>>,
    guests: Option<bool>,
    proxies: TrustedProxies,
    secret: Option<Vec<u8>>,
    token_ttl: Duration,
    origins: AllowedOrigins,
    system_user: Option<User>,
    host_state: PhantomData<fn(S)>,
}

impl<S: Clone + Send + Sync + 'static> Default for ChatBuilder<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> std::fmt::Debug for ChatBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatBuilder")
            .field("config", &self.config)
            .field("guests", &self.guests)
            .field("proxies", &self.proxies)
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

impl<S: Clone + Send + Sync + 'static> ChatBuilder<S> {
    /// A builder with every default.
    pub fn new() -> Self {
        Self {
            backend: None,
            archive: None,
            config: ChatConfig::default(),
            identity: None,
            policy: None,
            guests: None,
            proxies: TrustedProxies::default(),
            secret: None,
            token_ttl: DEFAULT_TOKEN_TTL,
            origins: AllowedOrigins::default(),
            system_user: None,
            host_state: PhantomData,
        }
    }

    /// The backend (default: in memory).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Keeps room history beyond the backend's caps in `archive` (default: none): see
    /// [`chat_core::archive`]; with the `postgres` feature, [`ChatBuilder::postgres_archive`].
    pub fn archive(mut self, archive: Arc<dyn Archive>) -> Self {
        self.archive = Some(archive);
        self
    }

    /// Limits and timings (default [`ChatConfig::default()`]).
    pub fn config(mut self, config: ChatConfig) -> Self {
        self.config = config;
        self
    }

    /// The host's identity hook (see [`crate::identity`]). Turns guest mode off unless
    /// [`ChatBuilder::guests`] turns it on.
    pub fn identity(mut self, identity: impl IdentityExtractor<S>) -> Self {
        self.identity = Some(Arc::new(identity));
        self
    }

    /// The policy hooks (default: [`chat_core::hooks::DefaultPolicy`]).
    pub fn policy(mut self, policy: impl Policy) -> Self {
        self.policy = Some(Arc::new(policy));
        self
    }

    /// Guest mode: whether anonymous clients may get a token for a display name
    /// (`POST /guests`, and the v1 guest join). Default: on without a host identity, off
    /// with one.
    pub fn guests(mut self, allow: bool) -> Self {
        self.guests = Some(allow);
        self
    }

    /// The proxies in front of the chat whose `X-Forwarded-For` names the client, for the
    /// per-address guest limit ([`ChatConfig::guests_per_minute`]). Default: loopback only (a
    /// proxy on the same host). Behind a load balancer elsewhere, name its network here, or
    /// every guest counts as coming from the load balancer.
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
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

    /// Who server-side messages come from (`chat.room(&id).send(body)` on the
    /// [`ChatHandle`]): clients see this user as their `from`. Pick an id that none of your
    /// users has. Default `{"id": "system", "name": "System"}`; this wins over
    /// [`ChatConfig::system_user`] whichever is set first.
    pub fn system_user(mut self, user: User) -> Self {
        self.system_user = Some(user);
        self
    }

    /// The router to mount (generic over the host's state, so it nests anywhere) and the
    /// handle for server-side sends and shutdown.
    ///
    /// # Panics
    /// Outside a tokio runtime (the chat spawns its dispatcher task), or if the backend was
    /// already used by another chat.
    pub fn build(self) -> (Router<S>, ChatHandle) {
        let mut backend = self.backend.unwrap_or_else(Backend::memory);
        if let Some(archive) = self.archive {
            backend = backend.with_archive(archive);
        }
        let policy = self
            .policy
            .unwrap_or_else(|| Arc::new(chat_core::hooks::DefaultPolicy));
        let mut config = self.config;
        if let Some(user) = self.system_user {
            config.system_user = user;
        }
        let chat = Chat::with_policy(backend, config, policy);
        let tokens = match self.secret {
            Some(secret) => TokenSigner::new(secret, self.token_ttl),
            None => TokenSigner::random(self.token_ttl),
        };
        let state = state::ChatState {
            inner: Arc::new(state::StateInner {
                chat: chat.clone(),
                tokens: tokens.clone(),
                guests: self.guests.unwrap_or(self.identity.is_none()),
                proxies: self.proxies,
                origins: self.origins,
                openapi: openapi::openapi(),
            }),
        };
        let access = Access {
            state,
            identity: self.identity.unwrap_or_else(|| Arc::new(NoIdentity)),
        };
        (router::router(access), ChatHandle::new(chat, tokens))
    }
}
