//! Who is this request? The host's [`IdentityExtractor`], and the chat's [`TokenSigner`].
//!
//! A request's identity is resolved in this order (`resolve`):
//! 1. the host's [`IdentityExtractor`] (any axum extractor of the host with
//!    [`FromExtractor`], an extension with [`FromExtension`], or an async closure with
//!    [`from_fn`]): when it names a user, that is the caller, and a chat token for anybody
//!    else is refused (401). The host's identity is not a token: a user whose access the
//!    host revoked but whom its hook still names is let in; keeping them out is the hook's
//!    business;
//! 2. else a token signed by this chat's [`TokenSigner`] (`Authorization: Bearer`; the
//!    WebSocket also takes `?token=`): valid means that user; invalid, expired, or issued
//!    before the host revoked the user's access (`ChatHandle::revoke_user`) means 401;
//! 3. else nobody: every endpoint but the API documents and, in guest mode, `POST /guests`
//!    (and the v1 guest join) answers 401.
//!
//! Files: `extractor` (the host's hook and its ready-made implementations), `resolve` (the
//! order above, and the handlers' extractors), `token_signer` (user tokens and invites),
//! `presented_token` (where a request carries its token), `jwt` (feature `jwt`: `JwtIdentity`,
//! JWT bearer tokens as the host's identity).

mod extractor;
#[cfg(feature = "jwt")]
mod jwt;
mod presented_token;
pub(crate) mod resolve;
mod token_signer;

pub use extractor::{
    from_fn, FromExtension, FromExtractor, IdentityExtractor, IdentityFn, NoIdentity,
};
#[cfg(feature = "jwt")]
pub use jwt::{JwtAlgorithm, JwtIdentity, JwtKeyError, DEFAULT_LEEWAY, DEFAULT_NAME_CLAIM};
pub(crate) use presented_token::presented_token;
pub use token_signer::{TokenSigner, VerifiedToken};
