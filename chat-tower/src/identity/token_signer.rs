//! [`TokenSigner`]: the HMAC-signed guest tokens that bind a user id to a display name.

use std::time::Duration;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chat_core::{Caller, RoomId, User, UserId};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::ChatRejection;

type HmacSha256 = Hmac<Sha256>;

/// What a user token says. Tokens issued before `guest` existed were all guest tokens;
/// tokens issued before `iat` existed count as issued at `exp` minus the signer's lifetime.
#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    name: String,
    exp: i64,
    #[serde(default = "yes")]
    guest: bool,
    /// When it was issued: Unix seconds with a millisecond fraction (a JWT NumericDate may
    /// have one), so that a token issued right after a revocation is told from one issued
    /// right before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<f64>,
}

/// A verified user token: who it names, and when it was issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Who the token names.
    pub caller: Caller,
    /// When it was issued, Unix milliseconds (for a token without `iat`: its expiry minus
    /// the signer's lifetime).
    pub issued_ms: i64,
}

/// What an invite says: which room it admits to, until when. `typ` keeps an invite from
/// passing for a user token and back.
#[derive(Serialize, Deserialize)]
struct InviteClaims {
    typ: String,
    room: String,
    exp: i64,
}

const INVITE: &str = "invite";

fn yes() -> bool {
    true
}

/// Signs and verifies the chat's tokens, `base64url(claims).base64url(HMAC-SHA256(claims))`:
/// user tokens bind a user id to a display name until an expiry; invites admit their holder
/// to one room until an expiry.
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

    fn sign(&self, claims: &impl Serialize) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// The claims of a token whose signature is right (expiry not checked).
    fn open<T: serde::de::DeserializeOwned>(&self, token: &str) -> Option<T> {
        let (payload, sig) = token.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).ok()?;
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        serde_json::from_slice(&json).ok()
    }

    fn now_s() -> i64 {
        chat_core::protocol::now_ms() / 1000
    }

    /// A token for `caller`, valid for the signer's lifetime, and when it expires (Unix
    /// seconds).
    pub fn issue(&self, caller: &Caller) -> (String, i64) {
        let now_ms = chat_core::protocol::now_ms();
        let exp = now_ms / 1000 + self.ttl.as_secs() as i64;
        let claims = Claims {
            sub: caller.user.id.to_string(),
            name: caller.user.name.clone(),
            exp,
            guest: caller.guest,
            iat: Some(now_ms as f64 / 1000.0),
        };
        (self.sign(&claims), exp)
    }

    /// How long the tokens it issues stay valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Who a token names, if its signature is right and it has not expired. Revocations are
    /// not known here: the chat's routes check them too (see [`TokenSigner::verify_issued`]).
    ///
    /// # Errors
    /// [`ChatRejection::Unauthorized`] for a malformed, forged or expired token.
    pub fn verify(&self, token: &str) -> Result<Caller, ChatRejection> {
        self.verify_issued(token).map(|verified| verified.caller)
    }

    /// Who a token names and when it was issued, if its signature is right and it has not
    /// expired: a token issued at or before a revocation of its user
    /// (`Chat::tokens_revoked_until`) must be refused.
    ///
    /// # Errors
    /// [`ChatRejection::Unauthorized`] for a malformed, forged or expired token.
    pub fn verify_issued(&self, token: &str) -> Result<VerifiedToken, ChatRejection> {
        let claims: Claims = self
            .open(token)
            .ok_or_else(|| ChatRejection::Unauthorized("invalid token".into()))?;
        if claims.exp < Self::now_s() {
            return Err(ChatRejection::Unauthorized("token expired".into()));
        }
        let issued_ms = match claims.iat {
            // Saturating: a nonsense `iat` signed by this chat cannot be anything but ours.
            Some(iat) => (iat * 1000.0).round() as i64,
            None => claims
                .exp
                .saturating_sub(self.ttl.as_secs() as i64)
                .saturating_mul(1000),
        };
        Ok(VerifiedToken {
            caller: Caller {
                user: User {
                    id: UserId::new(claims.sub),
                    name: claims.name,
                },
                guest: claims.guest,
            },
            issued_ms,
        })
    }

    /// An invite to `room`, valid for `ttl`, and when it expires (Unix seconds).
    pub fn invite(&self, room: &RoomId, ttl: Duration) -> (String, i64) {
        let exp = Self::now_s() + ttl.as_secs() as i64;
        let claims = InviteClaims {
            typ: INVITE.into(),
            room: room.to_string(),
            exp,
        };
        (self.sign(&claims), exp)
    }

    /// Whether `invite` is a valid, unexpired invite to `room`.
    pub fn admits(&self, invite: &str, room: &RoomId) -> bool {
        self.open::<InviteClaims>(invite).is_some_and(|claims| {
            claims.typ == INVITE && claims.room == room.as_str() && claims.exp >= Self::now_s()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_forgery_and_expiry() {
        let signer = TokenSigner::new(b"secret".to_vec(), Duration::from_secs(60));
        let user = Caller::guest(User::new("u1", "Ann"));
        let (token, _) = signer.issue(&user);
        assert_eq!(signer.verify(&token).unwrap(), user);
        let host_user = Caller::member(User::new("u2", "Bo"));
        assert_eq!(
            signer.verify(&signer.issue(&host_user).0).unwrap(),
            host_user
        );
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
            guest: true,
            iat: None,
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
    fn tokens_carry_their_issue_time_and_old_ones_count_from_their_expiry() {
        let ttl = Duration::from_secs(60);
        let signer = TokenSigner::new(b"secret".to_vec(), ttl);
        let before = chat_core::protocol::now_ms();
        let (token, exp) = signer.issue(&Caller::guest(User::new("u1", "Ann")));
        let verified = signer.verify_issued(&token).unwrap();
        let after = chat_core::protocol::now_ms();
        assert!(
            (before..=after).contains(&verified.issued_ms),
            "{verified:?}"
        );
        // A token from before `iat`: issued at its expiry minus the lifetime.
        let old = Claims {
            sub: "u".into(),
            name: "n".into(),
            exp,
            guest: false,
            iat: None,
        };
        let verified = signer.verify_issued(&signer.sign(&old)).unwrap();
        assert_eq!(verified.issued_ms, (exp - 60) * 1000);
        assert_eq!(verified.caller, Caller::member(User::new("u", "n")));
    }

    #[test]
    fn invites_admit_to_their_room_only_and_are_not_user_tokens() {
        let signer = TokenSigner::new(b"secret".to_vec(), Duration::from_secs(60));
        let (room, other) = (RoomId::new("r1"), RoomId::new("r2"));
        let (invite, exp) = signer.invite(&room, Duration::from_secs(60));
        assert!(exp > TokenSigner::now_s());
        assert!(signer.admits(&invite, &room));
        assert!(
            !signer.admits(&invite, &other),
            "an invite for another room"
        );
        assert!(
            signer.verify(&invite).is_err(),
            "an invite is no user token"
        );
        let (token, _) = signer.issue(&Caller::guest(User::new("u", "U")));
        assert!(!signer.admits(&token, &room), "a user token is no invite");
        let (expired, _) = signer.invite(&room, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1100));
        assert!(!signer.admits(&expired, &room));
        let forger = TokenSigner::new(b"other".to_vec(), Duration::from_secs(60));
        assert!(!signer.admits(&forger.invite(&room, Duration::from_secs(60)).0, &room));
    }
}
