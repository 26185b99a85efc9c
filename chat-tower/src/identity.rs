//! Who is this request? The host's [`IdentityExtractor`], and the guest [`TokenSigner`].
//!
//! A request's identity is resolved in this order:
//! 1. a token (`?token=` or `Authorization: Bearer`) signed by this chat's [`TokenSigner`]:
//!    valid means that user, invalid or expired means 401;
//! 2. the host's [`IdentityExtractor`] (for example [`FromExtension`], reading what the
//!    host's auth middleware put in the request extensions);
//! 3. nobody: the WebSocket answers 401, and `POST /join-room/{roomId}` in guest mode creates a
//!    new user from the name in its body.

use std::{marker::PhantomData, time::Duration};

use axum::http::{header, request::Parts};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chat_core::{BoxFuture, User, UserId};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

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

type HmacSha256 = Hmac<Sha256>;

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    name: String,
    exp: i64,
}

/// Signs and verifies guest tokens: `base64url(claims).base64url(HMAC-SHA256(claims))`,
/// binding a user id to a display name until an expiry.
///
/// Every instance of one chat must share the secret, so that a token issued by one is
/// accepted by all (a load balancer may send the REST call and the WebSocket to different
/// instances).
#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
    ttl: Duration,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A signer with this secret (use at least 32 random bytes) and token lifetime.
    pub fn new(secret: impl Into<Vec<u8>>, ttl: Duration) -> Self {
        Self {
            key: secret.into(),
            ttl,
        }
    }

    /// A signer with a random secret: fine for one instance, wrong for several.
    pub fn random(ttl: Duration) -> Self {
        let mut key = Vec::with_capacity(32);
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self::new(key, ttl)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        HmacSha256::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    /// A token for `user`, valid for the signer's lifetime.
    pub fn issue(&self, user: &User) -> String {
        let exp = chat_core::protocol::now_ms() / 1000 + self.ttl.as_secs() as i64;
        let claims = Claims {
            sub: user.id.to_string(),
            name: user.name.clone(),
            exp,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// The user a token names, if its signature is right and it has not expired.
    ///
    /// # Errors
    /// [`ChatRejection::Unauthorized`] for a malformed, forged or expired token.
    pub fn verify(&self, token: &str) -> Result<User, ChatRejection> {
        let bad = || ChatRejection::Unauthorized("invalid token".into());
        let (payload, sig) = token.split_once('.').ok_or_else(bad)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| bad())?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).map_err(|_| bad())?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(bad)?;
        if claims.exp < chat_core::protocol::now_ms() / 1000 {
            return Err(ChatRejection::Unauthorized("token expired".into()));
        }
        Ok(User {
            id: UserId::new(claims.sub),
            name: claims.name,
        })
    }
}

/// The token a request presents: `?token=` or `Authorization: Bearer`.
pub(crate) fn presented_token(parts: &Parts) -> Option<String> {
    let from_query = parts.uri.query().and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == "token").then(|| percent_decode(v))
        })
    });
    from_query.or_else(|| {
        parts
            .headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_owned())
    })
}

/// Tokens are base64url plus `.`, which need no escaping; decode `%XX` anyway for clients
/// that escape everything.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_forgery_and_expiry() {
        let signer = TokenSigner::new(b"secret".to_vec(), Duration::from_secs(60));
        let user = User::new("u1", "Ann");
        let token = signer.issue(&user);
        assert_eq!(signer.verify(&token).unwrap(), user);
        let other = TokenSigner::new(b"other".to_vec(), Duration::from_secs(60));
        assert!(other.verify(&token).is_err());
        let (payload, sig) = token.split_once('.').unwrap();
        let forged = format!("{}A.{sig}", payload);
        assert!(signer.verify(&forged).is_err());
        assert!(signer.verify("garbage").is_err());
        let expired = TokenSigner::new(b"secret".to_vec(), Duration::ZERO);
        let old = Claims {
            sub: "u".into(),
            name: "n".into(),
            exp: 1,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&old).unwrap());
        let mut mac = expired.mac();
        mac.update(payload.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert!(matches!(
            expired.verify(&format!("{payload}.{sig}")),
            Err(ChatRejection::Unauthorized(m)) if m == "token expired"
        ));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Eb"), "a.b");
        assert_eq!(percent_decode("abc%"), "abc%");
        assert_eq!(percent_decode("abc%4"), "abc%4");
        assert_eq!(percent_decode("é%é"), "é%é");
    }
}
