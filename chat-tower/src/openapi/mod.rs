//! The machine-readable contract: the OpenAPI document of the REST endpoints and the JSON
//! Schemas of the WebSocket frames. `cargo run -p chat-tower --example gen-openapi` writes them
//! to `openapi/`; a test fails when the checked-in files differ from what the code generates.
//!
//! This file holds the OpenAPI document (its paths come from the router) and the list of
//! contract files; `asyncapi` the WebSocket side: frame schemas and the AsyncAPI document.

use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::rest::TAG;

mod asyncapi;
mod frames;
mod polish;
pub(crate) mod problems;

pub use asyncapi::{
    asyncapi, client_frames_json, client_frames_schema, server_frames_json, server_frames_schema,
};
pub use polish::problem_codes;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("roomcast token")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document's static part; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "roomcast chat API",
        version = "2.0.0",
        description = "REST endpoints of the roomcast chat (contract v2: every endpoint but the two API documents needs an identity). Real-time traffic goes over the WebSocket at `/ws`; its frames are described by the AsyncAPI 3 document at `/asyncapi.json` (JSON Schema of every frame).",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0")
    ),
    // The shared `problems` responses refer to `Problem` without registering it.
    components(schemas(crate::Problem)),
    modifiers(&Security),
    // The served document names the mount prefix; at the root (as the demo serves it) that is
    // `/`, which is what the checked-in file says.
    servers((url = "/", description = "Where the chat router is mounted")),
    tags((name = TAG, description = "Rooms, membership and history"))
)]
pub(crate) struct ApiDoc;

/// The OpenAPI 3.1 document of the chat router.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = crate::router::api_router().split_for_parts().1;
    // Both POST bodies are optional (an empty body is fine); utoipa marks a body required
    // unless it is an `Option`, which would document `null` as a second shape instead.
    for path in ["/create-room", "/join-room/{roomId}"] {
        if let Some(op) = doc
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.post.as_mut())
        {
            if let Some(utoipa::openapi::RefOr::T(body)) = op.request_body.as_mut() {
                body.required = Some(utoipa::openapi::Required::False);
            }
        }
    }
    polish::polish(&mut doc);
    doc
}

/// Every generated contract file: `(file name in openapi/, contents)`.
pub fn contract_files() -> Vec<(&'static str, String)> {
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    let doc = serde_json::to_value(openapi()).unwrap_or_default();
    vec![
        ("openapi.json", pretty(&doc)),
        (
            "ws-client-frames.schema.json",
            pretty(&client_frames_json()),
        ),
        (
            "ws-server-frames.schema.json",
            pretty(&server_frames_json()),
        ),
        ("asyncapi.json", pretty(&asyncapi())),
    ]
}
