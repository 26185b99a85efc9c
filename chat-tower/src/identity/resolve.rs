//! Who a request is: the host's hook first, then the chat's token; the result is put in the
//! request's extensions for the handlers ([`Authenticated`], [`MaybeCaller`]).

use std::sync::Arc;

use axum::{
    extract::{FromRequestParts, Request, State},
    handler::Handler,
    http::request::Parts,
    response::{IntoResponse, Response},
};
use chat_core::{BoxFuture, Caller, Chat};

use super::{presented_token, IdentityExtractor, VerifiedToken};
use crate::{error::ChatRejection, state::ChatState};

/// Where a route accepts the chat's token: REST only in `Authorization: Bearer`; the
/// WebSocket also in `?token=` (browsers cannot set headers there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenIn {
    Header,
    HeaderOrQuery,
}

/// The chat's state and the host's identity hook, for routes generic over the host's state.
pub(crate) struct Access<S> {
    pub(crate) state: ChatState,
    pub(crate) identity: Arc<dyn IdentityExtractor<S>>,
}

impl<S> Clone for Access<S> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            identity: self.identity.clone(),
        }
    }
}

/// What a request resolved to, in its extensions.
#[derive(Clone, Debug)]
struct Resolved(Option<Caller>);

/// When the token that identified a request was issued (Unix ms), in its extensions: the
/// WebSocket checks it again once its connection listens for revocations.
#[derive(Clone, Copy, Debug)]
struct TokenIssued(i64);

impl<S: Send + Sync + 'static> Access<S> {
    /// The request's caller: the host's identity when it names one (a token for anybody else
    /// is refused; revocations are not checked: the host's identity is the host's business),
    /// else the chat's token (refused if the user's access was revoked since it was issued),
    /// else nobody.
    async fn resolve(
        &self,
        parts: &mut Parts,
        host: &S,
        token_in: TokenIn,
    ) -> Result<Option<Caller>, ChatRejection> {
        let from_host = self.identity.identify(parts, host).await?;
        let token = presented_token(parts, token_in == TokenIn::HeaderOrQuery);
        let tokens = &self.state.inner.tokens;
        match (from_host, token) {
            (Some(user), None) => Ok(Some(Caller::member(user))),
            (Some(user), Some(token)) => {
                if tokens.verify(&token)?.user.id != user.id {
                    return Err(ChatRejection::Unauthorized(
                        "the token is another user's than the one logged in".into(),
                    ));
                }
                Ok(Some(Caller::member(user)))
            }
            (None, Some(token)) => {
                let verified = self.verify(&token).await?;
                parts.extensions.insert(TokenIssued(verified.issued_ms));
                Ok(Some(verified.caller))
            }
            (None, None) => Ok(None),
        }
    }

    /// The caller a token names, unless it expired or was issued at or before the last
    /// revocation of the user's access (one store read per token-identified request).
    async fn verify(&self, token: &str) -> Result<VerifiedToken, ChatRejection> {
        let verified = self.state.inner.tokens.verify_issued(token)?;
        not_revoked(&self.state.inner.chat, &verified.caller, verified.issued_ms).await?;
        Ok(verified)
    }
}

/// Refuses a token issued at or before the last revocation of its user's access.
async fn not_revoked(chat: &Chat, caller: &Caller, issued_ms: i64) -> Result<(), ChatRejection> {
    let revoked = chat.tokens_revoked_until(&caller.user.id).await?;
    if revoked.is_some_and(|until| issued_ms <= until) {
        return Err(ChatRejection::Unauthorized(
            "the user's access was revoked: log in again".into(),
        ));
    }
    Ok(())
}

/// Checks the request's token against revocations again (if a token identified it): for the
/// WebSocket, once its connection is subscribed to the user's topic. A revocation recorded
/// before this is caught here; one recorded after it is published after the subscription,
/// so it reaches the connection. Without this, a revocation between the token check and the
/// subscription would miss the connection.
///
/// # Errors
/// [`ChatRejection::Unauthorized`] if the access was revoked meanwhile.
pub(crate) async fn recheck_token(
    parts: &Parts,
    chat: &Chat,
    caller: &Caller,
) -> Result<(), ChatRejection> {
    match parts.extensions.get::<TokenIssued>() {
        Some(TokenIssued(issued_ms)) => not_revoked(chat, caller, *issued_ms).await,
        None => Ok(()),
    }
}

/// `handler` (written against the chat's own state) as a route of the host's router: the
/// request's identity is resolved first, with the host's state.
pub(crate) fn with_identity<S, H, T>(
    access: Access<S>,
    token_in: TokenIn,
    handler: H,
) -> impl Fn(State<S>, Request) -> BoxFuture<'static, Response> + Clone + Send + Sync + 'static
where
    S: Clone + Send + Sync + 'static,
    H: Handler<T, ChatState>,
    T: 'static,
{
    move |State(host): State<S>, request: Request| {
        let (access, handler) = (access.clone(), handler.clone());
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            match access.resolve(&mut parts, &host, token_in).await {
                Ok(caller) => {
                    parts.extensions.insert(Resolved(caller));
                }
                // The body is left unread: close the connection rather than leave its bytes
                // in the way of the client's next request.
                Err(rejection) => {
                    let mut response = rejection.into_response();
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                    return response;
                }
            }
            let state = access.state.clone();
            handler.call(Request::from_parts(parts, body), state).await
        })
    }
}

/// The identified caller of a request; 401 when there is none.
#[derive(Clone, Debug)]
pub(crate) struct Authenticated(pub(crate) Caller);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ChatRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ChatRejection> {
        match parts.extensions.get::<Resolved>() {
            Some(Resolved(Some(caller))) => Ok(Self(caller.clone())),
            _ => Err(ChatRejection::Unauthorized(
                "no identity: send a token as `Authorization: Bearer`, or log in".into(),
            )),
        }
    }
}

/// The caller of a request, if it has one (for the endpoints that make guests).
#[derive(Clone, Debug)]
pub(crate) struct MaybeCaller(pub(crate) Option<Caller>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts.extensions.get::<Resolved>().and_then(|r| r.0.clone()),
        ))
    }
}
