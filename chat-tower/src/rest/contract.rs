//! The contract documents, served by the router: `/openapi.json` (with the mount prefix as
//! its server) and `/asyncapi.json`.

use axum::{
    extract::{Request, State},
    http::header,
    response::{IntoResponse, Response},
    Json,
};

use super::{mount_prefix, TAG};
use crate::state::ChatState;

/// The AsyncAPI 3.1 document of the WebSocket: every frame type with its JSON Schema.
#[utoipa::path(get, path = "/asyncapi.json", tag = TAG, operation_id = "getAsyncApi", security(()),
    responses((status = 200, description = "The AsyncAPI document", content_type = "application/json", body = Object)))]
pub(crate) async fn asyncapi_json() -> Response {
    static DOC: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let body =
        DOC.get_or_init(|| serde_json::to_vec(&crate::openapi::asyncapi()).unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = TAG, operation_id = "getOpenApi", security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub(crate) async fn openapi_json(State(state): State<ChatState>, request: Request) -> Response {
    let mut doc = state.inner.openapi.clone();
    // At the root the document is served as generated (its server is `/`, as in the
    // checked-in file); nested, the server is the mount prefix.
    let prefix = mount_prefix(request.extensions());
    if !prefix.is_empty() {
        for server in doc.servers.iter_mut().flatten() {
            server.url = prefix.clone();
        }
    }
    Json(doc).into_response()
}
