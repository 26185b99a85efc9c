//! Assembles the routes: the documented API (for the OpenAPI document) and the router the
//! host mounts, where every route but the two documents resolves the caller's identity first.

use axum::{
    routing::{delete, get, post},
    Router,
};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    identity::resolve::{with_identity, Access, TokenIn},
    openapi::ApiDoc,
    rest,
    state::ChatState,
    ws,
};

/// Every route, documented (the OpenAPI document is made from this).
pub(crate) fn api_router() -> OpenApiRouter<ChatState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(rest::guests::create_guest))
        .routes(routes!(rest::rooms::create_room))
        .routes(routes!(rest::join::join_room))
        .routes(routes!(rest::rooms::list_rooms))
        .routes(routes!(rest::rooms::get_room))
        .routes(routes!(rest::members::list_members))
        .routes(routes!(rest::members::leave_room))
        .routes(routes!(rest::members::create_invite))
        .routes(routes!(rest::messages::room_messages))
        .routes(routes!(rest::directs::list_conversations))
        .routes(routes!(rest::directs::direct_messages))
        .routes(routes!(rest::contract::openapi_json))
        .routes(routes!(rest::contract::asyncapi_json))
}

/// The routes, generic over the host's state so that they nest anywhere.
pub(crate) fn router<S>(access: Access<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    use TokenIn::{Header, HeaderOrQuery};
    let state = access.state.clone();
    let a = || access.clone();
    Router::new()
        .route(
            "/guests",
            post(with_identity(a(), Header, rest::guests::create_guest)),
        )
        .route(
            "/create-room",
            post(with_identity(a(), Header, rest::rooms::create_room)),
        )
        .route(
            "/join-room/{roomId}",
            post(with_identity(a(), Header, rest::join::join_room)),
        )
        .route(
            "/rooms",
            get(with_identity(a(), Header, rest::rooms::list_rooms)),
        )
        .route(
            "/rooms/{roomId}",
            get(with_identity(a(), Header, rest::rooms::get_room)),
        )
        .route(
            "/rooms/{roomId}/members",
            get(with_identity(a(), Header, rest::members::list_members)),
        )
        .route(
            "/rooms/{roomId}/members/me",
            delete(with_identity(a(), Header, rest::members::leave_room)),
        )
        .route(
            "/rooms/{roomId}/invites",
            post(with_identity(a(), Header, rest::members::create_invite)),
        )
        .route(
            "/rooms/{roomId}/messages",
            get(with_identity(a(), Header, rest::messages::room_messages)),
        )
        .route(
            "/directs",
            get(with_identity(
                a(),
                Header,
                rest::directs::list_conversations,
            )),
        )
        .route(
            "/directs/{userId}/messages",
            get(with_identity(a(), Header, rest::directs::direct_messages)),
        )
        .route(
            "/ws",
            get(with_identity(a(), HeaderOrQuery, ws::upgrade::ws_handler)),
        )
        .route(
            "/openapi.json",
            get(rest::contract::openapi_json).with_state(state.clone()),
        )
        .route(
            "/asyncapi.json",
            get(rest::contract::asyncapi_json).with_state(state),
        )
        .method_not_allowed_fallback(|| async {
            crate::error::ChatRejection::MethodNotAllowed(
                "this path does not take that method".into(),
            )
        })
        // Unknown paths answer a problem too. Nested under a prefix, this sees only the paths
        // under it; merged at the root, a host's own `fallback` (set after the merge) wins.
        .fallback(|| async { crate::error::ChatRejection::NoSuchPath("no such path".into()) })
}
