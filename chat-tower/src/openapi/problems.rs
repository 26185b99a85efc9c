//! Problem responses that several operations document alike, written once. Each type is an
//! [`IntoResponses`] to list in an operation's `responses(...)` beside its own tuples; the
//! document comes out the same as with the tuples written out.

use std::collections::BTreeMap;

use utoipa::{
    openapi::{
        header::HeaderBuilder, schema::Type, ContentBuilder, ObjectBuilder, Ref, RefOr, Response,
        ResponseBuilder,
    },
    IntoResponses,
};

/// One `application/problem+json` response whose body is a [`crate::Problem`].
fn problem(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

/// Declares unit types whose [`IntoResponses`] are the given `(status, description)` problems.
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident: $(($status:literal, $description:literal)),+;)+) => {$(
        $(#[$doc])*
        pub(crate) struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                BTreeMap::from([$(($status.to_string(), problem($description))),+])
            }
        }
    )+};
}

problem_responses! {
    /// 400, 413 and 415: an endpoint that reads a JSON body (see `rest::body`).
    BodyRejected: (400, "The body is not JSON"), (413, "The body is larger than 16 KiB"), (415, "A body (or a `Content-Type`) that is not `application/json`");
    /// 401: neither a valid token nor a host identity.
    Unidentified: (401, "No identity, or a bad or expired token");
    /// 404: the path names a room that does not exist, or one the caller may not see.
    NoSuchRoom: (404, "No such room (or a private room the caller may not see)");
    /// 400: a paginated list's `cursor` or `limit` is not valid.
    BadPage: (400, "Bad `cursor` or `limit`");
    /// 503: the backend (e.g. Redis) cannot be reached.
    BackendDown: (503, "The chat backend is down");
}

/// 429: over one of the caller's limits (`description`), with `Retry-After`.
fn rate_limited(description: &str) -> BTreeMap<String, RefOr<Response>> {
    let seconds = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1));
    let retry_after = HeaderBuilder::new()
        .schema(Some(seconds))
        .description(Some(
            "Seconds to wait before the request would pass (rounded up)",
        ))
        .build();
    let response = ResponseBuilder::new()
        .description(description)
        .header("Retry-After", retry_after)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build();
    BTreeMap::from([("429".to_string(), response.into())])
}

/// 429 on `POST /create-room`: the caller's room-creation quota.
pub(crate) struct CreationQuota;

impl IntoResponses for CreationQuota {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        rate_limited("Over the caller's room-creation quota (`rate_limited`; default 10 a minute)")
    }
}

/// 429 on a join: the caller's joins.
pub(crate) struct JoinLimit;

impl IntoResponses for JoinLimit {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        rate_limited("Over the caller's join rate (`rate_limited`; default 10 a second, burst 20, shared with the WebSocket `join`), or for a v1 guest join, its address's guest creations (default 30 a minute)")
    }
}

/// 429 on `POST /guests`: guests created from the client's address.
pub(crate) struct GuestLimit;

impl IntoResponses for GuestLimit {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        rate_limited("Too many guests created from the client's address (`rate_limited`; default 30 a minute; an IPv6 client by its /64)")
    }
}
