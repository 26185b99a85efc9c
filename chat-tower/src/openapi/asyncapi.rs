//! The WebSocket side of the contract: the JSON Schemas of client and server frames (reshaped
//! by `frames` for generators), and the AsyncAPI 3.1 document built from them.

use serde_json::{json, Map, Value};

use super::frames;

/// JSON Schema of the frames a client sends.
pub fn client_frames_schema() -> schemars::Schema {
    schemars::schema_for!(chat_core::protocol::ClientFrame)
}

/// JSON Schema of the frames the server sends.
pub fn server_frames_schema() -> schemars::Schema {
    schemars::schema_for!(chat_core::protocol::ServerFrame)
}

/// The JSON Schema of the client frames as written to `openapi/ws-client-frames.schema.json`:
/// every frame definition carries its `type` const, enums are `enum`s, no OpenAPI-only formats.
pub fn client_frames_json() -> Value {
    frames::reshape(&client_frames_schema())
}

/// The JSON Schema of the server frames as written to `openapi/ws-server-frames.schema.json`
/// (reshaped like [`client_frames_json`]).
pub fn server_frames_json() -> Value {
    frames::reshape(&server_frames_schema())
}

/// An AsyncAPI 3.1 description of the WebSocket channel: one message per frame type, each
/// with the frame's JSON Schema as its payload.
pub fn asyncapi() -> Value {
    let mut schemas = Map::new();
    let mut messages = Map::new();
    let mut receive = Vec::new();
    let mut send = Vec::new();
    for (schema, is_client) in [(client_frames_json(), true), (server_frames_json(), false)] {
        // schemars puts shared definitions under `$defs`; AsyncAPI wants them in components.
        let text = serde_json::to_string(&schema)
            .unwrap_or_default()
            .replace("#/$defs/", "#/components/schemas/");
        let mut schema: Value = serde_json::from_str(&text).unwrap_or_default();
        let mut defs = match schema.get_mut("$defs").map(Value::take) {
            Some(Value::Object(defs)) => defs,
            _ => Map::new(),
        };
        let variants = schema
            .get("oneOf")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for variant in variants {
            let Some(def) = variant
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            else {
                continue;
            };
            let Some(frame) = defs.get(def) else { continue };
            let Some(tag) = frame
                .pointer("/properties/type/const")
                .and_then(Value::as_str)
            else {
                continue;
            };
            let name = format!("{}_{tag}", if is_client { "client" } else { "server" });
            let summary = frame
                .get("description")
                .and_then(Value::as_str)
                .and_then(|d| d.split("\n\n").next())
                .unwrap_or(tag);
            messages.insert(
                name.clone(),
                json!({
                    "name": tag,
                    "title": tag,
                    "summary": summary,
                    "contentType": "application/json",
                    "payload": { "$ref": format!("#/components/schemas/{def}") }
                }),
            );
            let reference = json!({ "$ref": format!("#/channels/chat/messages/{name}") });
            if is_client {
                receive.push(reference)
            } else {
                send.push(reference)
            }
        }
        schemas.append(&mut defs);
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
        "asyncapi": "3.1.0",
        "info": {
            "title": "roomcast chat WebSocket",
            "version": "2.0.0",
            "description": "JSON text frames tagged by `type` on the chat WebSocket (contract v2). Open it at `/ws?token=...` (relative to where the chat router is mounted) with a token from `POST /guests` or `POST /join-room/{roomId}`, or with `Authorization: Bearer`, or with the host's own identity. Every client frame is answered by exactly one reply (`joined`, `left`, `ack` or `error`); the server also pushes `message`, `direct`, `system` and `resync` frames. A frame larger than the limit closes the connection with 1009; a client that cannot keep up is closed with 4008; shutdown closes with 1001, a draining instance with 1012 (reconnect, to any instance, and rejoin with `since`); the upgrade itself answers a problem+json 401 without an identity, 429 with `Retry-After` when the user already has the most WebSockets open on this instance (default 32), 503 while the instance drains or the backend is down; a user whose access the host revoked is closed with 4401, one the host removed with 4403.",
            "license": { "name": "MIT OR Apache-2.0" }
        },
        "servers": {
            "chat": {
                "host": "{host}",
                "protocol": "ws",
                "description": "Where the chat router is served (`wss` behind TLS); the channel address is relative to the mount prefix.",
                "variables": {
                    "host": { "default": "localhost:8080", "description": "Host and port of the server." }
                },
                "security": [
                    { "$ref": "#/components/securitySchemes/token" },
                    { "$ref": "#/components/securitySchemes/bearer" }
                ]
            }
        },
        "channels": {
            "chat": {
                "address": "/ws",
                "title": "Chat WebSocket",
                "servers": [{ "$ref": "#/servers/chat" }],
                "messages": channel_messages,
                "bindings": { "ws": { "method": "GET", "query": {
                    "type": "object",
                    "properties": { "token": { "type": "string", "description": "A token from `POST /guests` or `POST /join-room/{roomId}`." } }
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
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "token": { "type": "httpApiKey", "name": "token", "in": "query", "description": "A token from `POST /guests` or `POST /join-room/{roomId}` in `?token=` (browsers cannot set headers on a WebSocket)." },
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "roomcast token", "description": "The same token in `Authorization: Bearer`." }
            }
        }
    })
}
