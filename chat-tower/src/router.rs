//! Assembles the routes.

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{openapi::ApiDoc, rest, state::ChatState, ws};

/// Every route, documented.
pub(crate) fn api_router() -> OpenApiRouter<ChatState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(rest::create_room))
        .routes(routes!(rest::join_room))
        .routes(routes!(rest::list_rooms))
        .routes(routes!(rest::get_room))
        .routes(routes!(rest::room_messages))
        .routes(routes!(rest::openapi_json))
        .routes(routes!(rest::asyncapi_json))
        .routes(routes!(ws::ws_handler))
}

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
