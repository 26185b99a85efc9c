//! [`JwtIdentity`] (feature `jwt`): JWT bearer tokens from the host's identity provider as the
//! chat's identity hook.
//!
//! The algorithm comes from the key the host configures, never from a token's header, so
//! `alg: none` and algorithm confusion (an RS256 public key used as an HS256 secret) are
//! refused. The chat's own tokens (two base64url segments, one `.`) pass through untouched:
//! only a token shaped like a JWT (three segments) is this hook's to verify.

use std::{fmt, str::FromStr, time::Duration};

use axum::http::{header, request::Parts, uri::PathAndQuery, Uri};
use chat_core::{BoxFuture, User, UserId};
use jsonwebtoken::{crypto::CryptoProvider, errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{presented_token, IdentityExtractor};
use crate::{
    error::ChatRejection,
    rest::{body::check_name, guests::USER_NAME_MAX},
};

/// How far past `exp` (or before `nbf`) a token is still accepted, for clock skew: 30 s.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The claim read as the display name unless [`JwtIdentity::name_claim`] says otherwise.
pub const DEFAULT_NAME_CLAIM: &str = "name";

/// Longest `sub` accepted as a user id, in bytes (ids are stored and sent with every message).
const SUB_MAX: usize = 255;

/// The signature algorithms [`JwtIdentity`] verifies; each key fixes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256, a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, an RSA public key.
    Rs256,
    /// ECDSA on P-256 with SHA-256, an EC public key.
    Es256,
    /// Ed25519, an Ed25519 public key.
    EdDsa,
}

impl JwtAlgorithm {
    /// The JOSE name: `HS256`, `RS256`, `ES256` or `EdDSA`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    fn jose(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JwtAlgorithm {
    type Err = JwtKeyError;

    /// The JOSE name, in any case (`RS256`, `es256`, `EdDSA`...).
    fn from_str(s: &str) -> Result<Self, JwtKeyError> {
        [Self::Hs256, Self::Rs256, Self::Es256, Self::EdDsa]
            .into_iter()
            .find(|alg| alg.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| JwtKeyError::UnknownAlgorithm(s.to_owned()))
    }
}

/// Why a [`JwtIdentity`] could not be made from a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtKeyError {
    /// The HS256 secret is empty.
    #[error("the JWT secret is empty")]
    EmptySecret,
    /// A private key where the public key belongs.
    #[error("a private key: give the public key (openssl pkey -in KEY -pubout)")]
    PrivateKey,
    /// Not a PEM public key of a supported type.
    #[error("not a PEM public key for RS256 (RSA), ES256 (P-256 EC) or EdDSA (Ed25519)")]
    UnsupportedKey,
    /// The key does not fit the algorithm asked for.
    #[error("the key does not fit {0}")]
    WrongKeyType(JwtAlgorithm),
    /// An algorithm name that is not one of `HS256`, `RS256`, `ES256`, `EdDSA`.
    #[error("unknown JWT algorithm {0:?} (HS256, RS256, ES256 or EdDSA)")]
    UnknownAlgorithm(String),
}

/// The host's identity as a JWT bearer token, signed by its identity provider (feature `jwt`).
///
/// - The key fixes the algorithm: [`JwtIdentity::hs256`] takes a shared secret,
///   [`JwtIdentity::from_public_key_pem`] an RSA, P-256 or Ed25519 public key (RS256, ES256,
///   EdDSA). A token whose header names another algorithm (`none` included) is refused.
/// - `exp` and `sub` are required; `sub` is the user id; the display name is the claim
///   [`DEFAULT_NAME_CLAIM`] (see [`JwtIdentity::name_claim`]), falling back to `sub` when it
///   is absent or not a valid display name (1 to 32 characters, no control, format or
///   private-use characters). `nbf` is checked when present; `iss` and `aud` when
///   configured ([`JwtIdentity::issuer`], [`JwtIdentity::audience`]), and then required.
///   Clock skew: [`DEFAULT_LEEWAY`] ([`JwtIdentity::leeway`]).
/// - It reads `Authorization: Bearer` and, on the WebSocket (`.../ws`), `?token=`. A token
///   that is not shaped like a JWT is left to the chat's own token check (so the tokens that
///   `POST /join-room` hands out keep working); a JWT that fails verification is a 401 with
///   a short reason. A verified JWT is taken out of the request head, so that the chat's
///   token check does not read it again.
///
/// Plugging it in turns guest mode off (see [`crate::ChatBuilder::identity`]).
///
/// ```
/// use std::time::Duration;
/// use chat_tower::{identity::JwtIdentity, ChatBuilder};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let identity = JwtIdentity::hs256(b"the identity provider's secret")?
///     .issuer("https://login.example.com")
///     .audience("chat")
///     .name_claim("preferred_username")
///     .leeway(Duration::from_secs(10));
/// let builder = ChatBuilder::<()>::new().identity(identity);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JwtIdentity {
    algorithm: JwtAlgorithm,
    key: DecodingKey,
    validation: Validation,
    name_claim: String,
}

impl fmt::Debug for JwtIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtIdentity")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .field("name_claim", &self.name_claim)
            .field("leeway_s", &self.validation.leeway)
            .finish_non_exhaustive()
    }
}

/// The display name for a token without a valid name claim: its `sub` if that is a valid
/// name, else `sub` without its control, format and private-use characters (cut to the
/// longest name), else `user`. `sub` is the identity provider's, and a name must not carry
/// a bidi override or a zero-width character to the other users.
fn name_from_sub(sub: &str) -> String {
    use chat_core::protocol::text;
    if let Ok(name) = check_name("sub", sub, USER_NAME_MAX) {
        return name;
    }
    let cleaned: String = sub
        .chars()
        .filter(|&c| !c.is_control() && !text::is_format(c) && !text::is_private_use(c))
        .collect();
    check_name(
        "sub",
        &cleaned.chars().take(USER_NAME_MAX).collect::<String>(),
        USER_NAME_MAX,
    )
    .unwrap_or_else(|_| "user".to_owned())
}

impl JwtIdentity {
    /// Verifies HS256 tokens signed with `secret` (use at least 32 random bytes).
    ///
    /// # Errors
    /// [`JwtKeyError::EmptySecret`].
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, JwtKeyError> {
        let key =
            DecodingKey::from_secret(secret.as_ref()).map_err(|_| JwtKeyError::EmptySecret)?;
        Ok(Self::with_key(JwtAlgorithm::Hs256, key))
    }

    /// Verifies tokens signed with the private half of this PEM public key
    /// (`-----BEGIN PUBLIC KEY-----`, or `RSA PUBLIC KEY`); the key's type fixes the
    /// algorithm: RSA → RS256, P-256 EC → ES256, Ed25519 → EdDSA.
    ///
    /// # Errors
    /// [`JwtKeyError::PrivateKey`], or [`JwtKeyError::UnsupportedKey`] for anything else that
    /// is not a public key of those types.
    pub fn from_public_key_pem(pem: impl AsRef<[u8]>) -> Result<Self, JwtKeyError> {
        let pem = pem.as_ref();
        [
            JwtAlgorithm::Rs256,
            JwtAlgorithm::Es256,
            JwtAlgorithm::EdDsa,
        ]
        .into_iter()
        .find_map(|alg| Self::from_public_key_pem_for(alg, pem).ok())
        .ok_or_else(|| match public_only(pem) {
            Err(private) => private,
            Ok(()) => JwtKeyError::UnsupportedKey,
        })
    }

    /// Like [`JwtIdentity::from_public_key_pem`], with the algorithm named, for a host that
    /// wants a key of another type refused rather than accepted.
    ///
    /// # Errors
    /// [`JwtKeyError::PrivateKey`]; [`JwtKeyError::WrongKeyType`] when the key does not fit
    /// `algorithm` (HS256 takes a secret: [`JwtIdentity::hs256`]).
    pub fn from_public_key_pem_for(
        algorithm: JwtAlgorithm,
        pem: impl AsRef<[u8]>,
    ) -> Result<Self, JwtKeyError> {
        let pem = pem.as_ref();
        public_only(pem)?;
        let wrong = || JwtKeyError::WrongKeyType(algorithm);
        let key = match algorithm {
            JwtAlgorithm::Hs256 => return Err(wrong()),
            JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(pem),
            JwtAlgorithm::Es256 => DecodingKey::from_ec_pem(pem).and_then(|key| {
                // A P-256 point: 0x04 ‖ x ‖ y, or compressed 0x02/0x03 ‖ x. A P-384 key would
                // parse too, and then fail every ES256 signature.
                match key.try_get_as_bytes()?.len() {
                    65 | 33 => Ok(key),
                    _ => Err(ErrorKind::InvalidEcdsaKey.into()),
                }
            }),
            JwtAlgorithm::EdDsa => DecodingKey::from_ed_pem(pem),
        }
        .map_err(|_| wrong())?;
        ensure_provider();
        // Let the crypto provider parse the key now, so that a damaged key fails here rather
        // than on every request: a probe signature only ever fails to verify (`Ok(false)`).
        jsonwebtoken::crypto::verify("AAAA", b"probe", &key, algorithm.jose())
            .map_err(|_| wrong())?;
        Ok(Self::with_key(algorithm, key))
    }

    fn with_key(algorithm: JwtAlgorithm, key: DecodingKey) -> Self {
        ensure_provider();
        let mut validation = Validation::new(algorithm.jose());
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = DEFAULT_LEEWAY.as_secs();
        validation.validate_nbf = true;
        // Without an expected audience, `aud` is not this chat's concern (the library would
        // refuse every token that has one).
        validation.validate_aud = false;
        Self {
            algorithm,
            key,
            validation,
            name_claim: DEFAULT_NAME_CLAIM.to_owned(),
        }
    }

    /// Only tokens whose `iss` is `issuer` (and then `iss` is required).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.validation.set_issuer(&[issuer.into()]);
        self.validation.required_spec_claims.insert("iss".into());
        self
    }

    /// Only tokens whose `aud` is or contains `audience` (and then `aud` is required).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.validation.set_audience(&[audience.into()]);
        self.validation.validate_aud = true;
        self.validation.required_spec_claims.insert("aud".into());
        self
    }

    /// The claim that holds the display name (default [`DEFAULT_NAME_CLAIM`]); `sub` when the
    /// token has no usable one.
    pub fn name_claim(mut self, claim: impl Into<String>) -> Self {
        self.name_claim = claim.into();
        self
    }

    /// How far past `exp` (or before `nbf`) a token is still accepted (default
    /// [`DEFAULT_LEEWAY`]; whole seconds).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.validation.leeway = leeway.as_secs();
        self
    }

    /// The algorithm this identity verifies, as fixed by its key.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// The user a JWT names, if it verifies.
    ///
    /// # Errors
    /// [`ChatRejection::Unauthorized`] with a short reason (the token is never part of it).
    pub fn verify(&self, token: &str) -> Result<User, ChatRejection> {
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|err| {
                let reason = reason(err.kind());
                tracing::debug!(reason, "JWT refused");
                ChatRejection::Unauthorized(reason.into())
            })?
            .claims;
        let sub = match claims.get("sub").and_then(Value::as_str) {
            Some(sub) if !sub.is_empty() && sub.len() <= SUB_MAX => sub,
            _ => {
                return Err(ChatRejection::Unauthorized(format!(
                    "the token's `sub` must be 1 to {SUB_MAX} bytes"
                )))
            }
        };
        let name = claims
            .get(&self.name_claim)
            .and_then(Value::as_str)
            .and_then(|name| check_name(&self.name_claim, name, USER_NAME_MAX).ok())
            .unwrap_or_else(|| name_from_sub(sub));
        Ok(User {
            id: UserId::new(sub),
            name,
        })
    }

    /// The request's JWTs, verified, and taken out of its head.
    fn identify_parts(&self, parts: &mut Parts) -> Result<Option<User>, ChatRejection> {
        let websocket = parts.uri.path().ends_with("/ws");
        let header = presented_token(parts, false).filter(|t| is_jwt_shaped(t));
        // On the WebSocket the query's token comes first (else the header's again).
        let query = presented_token(parts, websocket)
            .filter(|t| websocket && is_jwt_shaped(t) && Some(t) != header.as_ref());
        let mut user: Option<User> = None;
        for token in [&header, &query].into_iter().flatten() {
            let found = self.verify(token)?;
            if user.as_ref().is_some_and(|u| u.id != found.id) {
                return Err(ChatRejection::Unauthorized(
                    "two tokens for different users".into(),
                ));
            }
            user = Some(found);
        }
        if header.is_some() {
            parts.headers.remove(header::AUTHORIZATION);
        }
        if websocket && presented_token(parts, true).is_some_and(|t| is_jwt_shaped(&t)) {
            parts.uri = without_query_token(&parts.uri)
                .ok_or_else(|| ChatRejection::Unauthorized("malformed request URI".into()))?;
        }
        Ok(user)
    }
}

impl<S> IdentityExtractor<S> for JwtIdentity {
    fn identify<'a>(
        &'a self,
        parts: &'a mut Parts,
        _: &'a S,
    ) -> BoxFuture<'a, Result<Option<User>, ChatRejection>> {
        // Verification is a few microseconds of CPU (tens for RSA): no need to leave the task.
        let result = self.identify_parts(parts);
        Box::pin(async move { result })
    }
}

/// Three non-empty segments, as a JWS in compact form has; the chat's tokens have two.
fn is_jwt_shaped(token: &str) -> bool {
    let mut segments = token.split('.');
    segments.clone().count() == 3 && segments.all(|s| !s.is_empty())
}

/// `Err(PrivateKey)` for a PEM that holds a private key (which `jsonwebtoken` would read as
/// a "public" one that verifies nothing).
fn public_only(pem: &[u8]) -> Result<(), JwtKeyError> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("PRIVATE KEY-----") {
        return Err(JwtKeyError::PrivateKey);
    }
    Ok(())
}

/// The process-wide crypto provider of `jsonwebtoken`: picked from its features when only
/// one is on; when a host enables both, ours is installed rather than panicking later.
fn ensure_provider() {
    if CryptoProvider::try_get_default().is_none() {
        // Losing the race to another installer is fine: a provider is installed either way.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    }
}

/// `uri` without its `token=` query pairs.
fn without_query_token(uri: &Uri) -> Option<Uri> {
    let kept: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(k, _)| k != "token"))
        .collect();
    let path_and_query = if kept.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut uri_parts = uri.clone().into_parts();
    uri_parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(uri_parts).ok()
}

/// A short reason for a refused JWT (never the token, nor the library's wording of it).
fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not valid yet",
        ErrorKind::InvalidSignature => "invalid token signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            "token algorithm not accepted"
        }
        ErrorKind::InvalidIssuer => "wrong token issuer",
        ErrorKind::InvalidAudience => "wrong token audience",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "token without `exp`",
            "sub" => "token without `sub`",
            "iss" => "token without `iss`",
            "aud" => "token without `aud`",
            _ => "token without a required claim",
        },
        ErrorKind::InvalidClaimFormat(_) => "token with a malformed claim",
        _ => "invalid token",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sub_is_a_name_only_without_format_characters() {
        assert_eq!(name_from_sub("alice"), "alice");
        assert_eq!(name_from_sub("evil\u{202E}gpj.exe"), "evilgpj.exe");
        assert_eq!(name_from_sub("\u{200B}\u{2060}\u{FEFF}"), "user");
        assert_eq!(
            name_from_sub(&"x".repeat(40)).chars().count(),
            USER_NAME_MAX
        );
    }

    #[test]
    fn shapes_and_names() {
        assert!(is_jwt_shaped("a.b.c"));
        assert!(!is_jwt_shaped("a.b"), "the chat's own tokens");
        assert!(!is_jwt_shaped("a..c"));
        assert!(!is_jwt_shaped("a.b.c.d.e"), "JWE is not verified here");
        assert_eq!(
            "eddsa".parse::<JwtAlgorithm>().unwrap(),
            JwtAlgorithm::EdDsa
        );
        assert!("none".parse::<JwtAlgorithm>().is_err());
    }

    #[test]
    fn query_tokens_are_taken_out() {
        let uri: Uri = "/chat/ws?a=1&token=x.y.z&b=2".parse().unwrap();
        assert_eq!(without_query_token(&uri).unwrap(), "/chat/ws?a=1&b=2");
        let uri: Uri = "/ws?token=x.y.z".parse().unwrap();
        assert_eq!(without_query_token(&uri).unwrap(), "/ws");
    }

    #[test]
    fn keys_fix_the_algorithm() {
        assert!(matches!(
            JwtIdentity::hs256(b""),
            Err(JwtKeyError::EmptySecret)
        ));
        assert!(matches!(
            JwtIdentity::from_public_key_pem(
                b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"
            ),
            Err(JwtKeyError::PrivateKey)
        ));
        assert!(matches!(
            JwtIdentity::from_public_key_pem(b"not a key"),
            Err(JwtKeyError::UnsupportedKey)
        ));
        assert_eq!(
            JwtIdentity::hs256(b"s").unwrap().algorithm(),
            JwtAlgorithm::Hs256
        );
    }
}
