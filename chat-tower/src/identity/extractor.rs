//! [`IdentityExtractor`], the host's identity hook, with [`NoIdentity`], [`FromExtractor`]
//! (any axum extractor of the host), [`FromExtension`], and closures ([`from_fn`]).

use std::{future::Future, marker::PhantomData};

use axum::{extract::FromRequestParts, http::request::Parts};
use chat_core::{BoxFuture, User};

use crate::error::ChatRejection;

/// Resolves the user a request comes from, from its head and the host's state `S`.
///
/// `Ok(None)` means "not identified by the host" (the chat's own tokens may still identify
/// the request); `Err` means the request presented an identity that is not valid (answered
/// with 401). Implemented for [`NoIdentity`], [`FromExtractor`], [`FromExtension`], closures
/// wrapped by [`from_fn`], and any `Fn(&Parts) -> Result<Option<User>, ChatRejection>`.
pub trait IdentityExtractor<S>: Send + Sync + 'static {
    /// The user behind the request, if the host knows one.
    fn identify<'a>(
        &'a self,
        parts: &'a mut Parts,
        state: &'a S,
    ) -> BoxFuture<'a, Result<Option<User>, ChatRejection>>;
}

/// No host identity: only the chat's own tokens identify users (guest mode).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoIdentity;

impl<S> IdentityExtractor<S> for NoIdentity {
    fn identify<'a>(
        &'a self,
        _: &'a mut Parts,
        _: &'a S,
    ) -> BoxFuture<'a, Result<Option<User>, ChatRejection>> {
        Box::pin(async { Ok(None) })
    }
}

/// Any axum extractor of the host that yields its logged-in user: the chat runs `E` on the
/// request head with the host's state. An `E` that rejects means "not logged in".
pub struct FromExtractor<E>(PhantomData<fn() -> E>);

impl<E> FromExtractor<E> {
    /// The identity hook.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<E> Default for FromExtractor<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> std::fmt::Debug for FromExtractor<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FromExtractor")
    }
}

impl<S, E> IdentityExtractor<S> for FromExtractor<E>
where
    S: Send + Sync,
    E: FromRequestParts<S> + Into<User> + 'static,
{
    fn identify<'a>(
        &'a self,
        parts: &'a mut Parts,
        state: &'a S,
    ) -> BoxFuture<'a, Result<Option<User>, ChatRejection>> {
        Box::pin(async move {
            Ok(E::from_request_parts(parts, state)
                .await
                .ok()
                .map(Into::into))
        })
    }
}

/// Reads the identity that the host's auth middleware stored as a request extension of type
/// `T` (any `T: Clone + Into<User>`).
pub struct FromExtension<T>(PhantomData<fn() -> T>);

impl<T> FromExtension<T> {
    /// The identity hook.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for FromExtension<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for FromExtension<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FromExtension")
    }
}

impl<S, T> IdentityExtractor<S> for FromExtension<T>
where
    T: Clone + Into<User> + Send + Sync + 'static,
{
    fn identify<'a>(
        &'a self,
        parts: &'a mut Parts,
        _: &'a S,
    ) -> BoxFuture<'a, Result<Option<User>, ChatRejection>> {
        let user = parts.extensions.get::<T>().cloned().map(Into::into);
        Box::pin(async move { Ok(user) })
    }
}

impl<S, F> IdentityExtractor<S> for F
where
    F: Fn(&Parts) -> Result<Option<User>, ChatRejection> + Send + Sync + 'static,
{
    fn identify<'a>(
        &'a self,
        parts: &'a mut Parts,
        _: &'a S,
    ) -> BoxFuture<'a, Result<Option<User>, ChatRejection>> {
        let result = self(parts);
        Box::pin(async move { result })
    }
}

/// An async closure as the identity hook: it gets a copy of the request head and of the
/// host's state, so that it can await a session store or a database.
///
/// ```
/// # use chat_tower::{identity, ChatBuilder};
/// # use chat_core::User;
/// #[derive(Clone)]
/// struct AppState { /* a session store */ }
/// let builder = ChatBuilder::<AppState>::new().identity(identity::from_fn(
///     |parts: axum::http::request::Parts, _state: AppState| async move {
///         let user = parts.headers.get("x-user").and_then(|v| v.to_str().ok());
///         Ok(user.map(|name| User::new(name, name)))
///     },
/// ));
/// ```
pub fn from_fn<F>(f: F) -> IdentityFn<F> {
    IdentityFn(f)
}

/// The identity hook made by [`from_fn`].
#[derive(Clone, Copy, Debug)]
pub struct IdentityFn<F>(F);

impl<S, F, Fut> IdentityExtractor<S> for IdentityFn<F>
where
    S: Clone + Send + Sync + 'static,
    F: Fn(Parts, S) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<User>, ChatRejection>> + Send + 'static,
{
    fn identify<'a>(
        &'a self,
        parts: &'a mut Parts,
        state: &'a S,
    ) -> BoxFuture<'a, Result<Option<User>, ChatRejection>> {
        Box::pin((self.0)(parts.clone(), state.clone()))
    }
}
