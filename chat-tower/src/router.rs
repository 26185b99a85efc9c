//! Assembles the routes.

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{openapi::ApiDoc, rest, state::ChatState, ws};

/// Every route, documented.
pub(crate) fn api_router() -> OpenApiRouter<ChatState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(rest::rooms::create_room))
        .routes(routes!(rest::join::join_room))
        .routes(routes!(rest::rooms::list_rooms))
        .routes(routes!(rest::rooms::get_room))
        .routes(routes!(rest::messages::room_messages))
        .routes(routes!(rest::contract::openapi_json))
        .routes(routes!(rest::contract::asyncapi_json))
        .routes(routes!(ws::upgrade::ws_handler))
}

/// The routes bound to `state`, generic over the host's state so that they nest anywhere.
pub(crate) fn router<S>(state: ChatState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let (router, _doc) = api_router().split_for_parts();
    router
        .method_not_allowed_fallback(|| async {
            crate::error::ChatRejection::MethodNotAllowed(
                "this path does not take that method".into(),
            )
        })
        .with_state(state)
}
