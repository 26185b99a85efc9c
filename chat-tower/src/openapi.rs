//! The machine-readable contract: the OpenAPI document of the REST endpoints and the JSON
//! Schemas of the WebSocket frames. `cargo run -p chat-tower --example gen-openapi` writes them
//! to `openapi/`; a test fails when the checked-in files differ from what the code generates.

use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::rest::TAG;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("token"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("roomcast guest token")
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
        version = "1.0.0",
        description = "REST endpoints of the roomcast chat (contract v1). Real-time traffic goes over the WebSocket at `/ws`; its frames are described by the AsyncAPI 3 document at `/asyncapi.json` (JSON Schema of every frame).",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0")
    ),
    modifiers(&Security),
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
    doc
}

/// JSON Schema of the frames a client sends.
pub fn client_frames_schema() -> schemars::Schema {
    schemars::schema_for!(chat_core::protocol::ClientFrame)
}

/// JSON Schema of the frames the server sends.
pub fn server_frames_schema() -> schemars::Schema {
    schemars::schema_for!(chat_core::protocol::ServerFrame)
}

/// An AsyncAPI 3.0 description of the WebSocket channel: one message per frame type, each
/// with the frame's JSON Schema as its payload.
pub fn asyncapi() -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut schemas = Map::new();
    let mut messages = Map::new();
    let mut receive = Vec::new();
    let mut send = Vec::new();
    for (schema, is_client) in [
        (client_frames_schema(), true),
        (server_frames_schema(), false),
    ] {
        // schemars puts shared definitions under `$defs`; AsyncAPI wants them in components.
        let text = serde_json::to_string(&schema)
            .unwrap_or_default()
            .replace("#/$defs/", "#/components/schemas/");
        let mut schema: Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(Value::Object(defs)) = schema.get_mut("$defs").map(Value::take) {
            schemas.extend(defs);
        }
        let variants = schema
            .get("oneOf")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for variant in variants {
            let Some(tag) = variant
                .pointer("/properties/type/const")
                .and_then(Value::as_str)
            else {
                continue;
            };
            let name = format!("{}_{tag}", if is_client { "client" } else { "server" });
            let summary = variant.get("description").cloned().unwrap_or(Value::Null);
            messages.insert(
                name.clone(),
                json!({ "name": tag, "title": tag, "summary": summary, "contentType": "application/json", "payload": variant }),
            );
            let reference = json!({ "$ref": format!("#/channels/chat/messages/{name}") });
            if is_client {
                receive.push(reference)
            } else {
                send.push(reference)
            }
        }
    }
    let channel_messages: Map<String, Value> = messages
        .keys()
        .map(|name| {
            (
                name.clone(),
                json!({ "$ref": format!("#/components/messages/{name}") }),
            )
        })
        .collect();
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "roomcast chat WebSocket",
            "version": "1.0.0",
            "description": "JSON text frames tagged by `type` on the chat WebSocket (contract v1). Open it at `/ws?token=...` (relative to where the chat router is mounted) with the token from `POST /join-room/{roomId}`. Every client frame is answered by exactly one reply (`joined`, `left`, `ack` or `error`); the server also pushes `message`, `direct`, `system` and `resync` frames. A frame larger than the limit closes the connection with 1009; a client that cannot keep up is closed with 4008; shutdown closes with 1001.",
            "license": { "name": "MIT OR Apache-2.0" }
        },
        "channels": {
            "chat": {
                "address": "/ws",
                "title": "Chat WebSocket",
                "messages": channel_messages,
                "bindings": { "ws": { "method": "GET", "query": {
                    "type": "object",
                    "properties": { "token": { "type": "string", "description": "From POST /join-room/{roomId}" } }
                } } }
            }
        },
        "operations": {
            "receiveClientFrames": {
                "action": "receive",
                "summary": "Frames a client sends: join, leave, message, direct.",
                "channel": { "$ref": "#/channels/chat" },
                "messages": receive
            },
            "sendServerFrames": {
                "action": "send",
                "summary": "Frames the server sends: replies and pushed events.",
                "channel": { "$ref": "#/channels/chat" },
                "messages": send
            }
        },
        "components": { "schemas": schemas, "messages": messages }
    })
}

/// Every generated contract file: `(file name in openapi/, contents)`.
pub fn contract_files() -> Vec<(&'static str, String)> {
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    let doc = serde_json::to_value(openapi()).unwrap_or_default();
    vec![
        ("openapi.json", pretty(&doc)),
        (
            "ws-client-frames.schema.json",
            pretty(&serde_json::to_value(client_frames_schema()).unwrap_or_default()),
        ),
        (
            "ws-server-frames.schema.json",
            pretty(&serde_json::to_value(server_frames_schema()).unwrap_or_default()),
        ),
        ("asyncapi.json", pretty(&asyncapi())),
    ]
}
