//! Who is this request? The host's [`IdentityExtractor`], and the guest [`TokenSigner`].
//!
//! A request's identity is resolved in this order:
//! 1. a token (`?token=` or `Authorization: Bearer`) signed by this chat's [`TokenSigner`]:
//!    valid means that user, invalid or expired means 401;
//! 2. the host's [`IdentityExtractor`] (for example [`FromExtension`], reading what the
//!    host's auth middleware put in the request extensions);
//! 3. nobody: the WebSocket answers 401, and `POST /join-room/{roomId}` in guest mode creates a
//!    new user from the name in its body.
//!
//! Files: `extractor` (the host's hook and its ready-made implementations), `token_signer`
//! (guest tokens), `presented_token` (where a request carries its token).

mod extractor;
mod presented_token;
mod token_signer;

pub use extractor::{FromExtension, IdentityExtractor, NoIdentity};
pub(crate) use presented_token::presented_token;
pub use token_signer::TokenSigner;
