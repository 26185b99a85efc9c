//! [`IdentityExtractor`], the host's identity hook, with [`NoIdentity`], closures and
//! [`FromExtension`].

use std::marker::PhantomData;

use axum::http::request::Parts;
use chat_core::{BoxFuture, User};

use crate::error::ChatRejection;

/// Resolves the user a request comes from, from its parts (headers, extensions, URI).
///
/// `Ok(None)` means "anonymous"; `Err` means the request presented an identity that is not
/// valid (answered with 401). Implemented for [`FromExtension`], [`NoIdentity`] and any
/// `Fn(&Parts) -> Result<Option<User>, ChatRejection>`.
pub trait IdentityExtractor: Send + Sync + 'static {
    /// The user behind the request, if any.
    fn extract<'a>(
        &'a self,
        parts: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<User>, ChatRejection>>;
}

/// No host identity: only guest tokens identify users.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoIdentity;

impl IdentityExtractor for NoIdentity {
    fn extract<'a>(&'a self, _: &'a Parts) -> BoxFuture<'a, Result<Option<User>, ChatRejection>> {
        Box::pin(async { Ok(None) })
    }
}

impl<F> IdentityExtractor for F
where
    F: Fn(&Parts) -> Result<Option<User>, ChatRejection> + Send + Sync + 'static,
{
    fn extract<'a>(
        &'a self,
        parts: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<User>, ChatRejection>> {
        let result = self(parts);
        Box::pin(async move { result })
    }
}

/// Reads the identity that the host's auth middleware stored as a request extension of type
/// `T` (any `T: Clone + Into<User>`).
pub struct FromExtension<T>(PhantomData<fn() -> T>);

impl<T> FromExtension<T> {
    /// The extractor.
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

impl<T> IdentityExtractor for FromExtension<T>
where
    T: Clone + Into<User> + Send + Sync + 'static,
{
    fn extract<'a>(
        &'a self,
        parts: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<User>, ChatRejection>> {
        let user = parts.extensions.get::<T>().cloned().map(Into::into);
        Box::pin(async move { Ok(user) })
    }
}
