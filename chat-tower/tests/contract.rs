//! The checked-in machine-readable contract (`openapi/`) must be what the code generates.

#[test]
fn contract_is_up_to_date() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi");
    let mut stale = Vec::new();
    let files = chat_tower::openapi::contract_files();
    for (name, expected) in &files {
        let actual = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        if &actual != expected {
            stale.push(*name);
        }
    }
    // Every JSON file in openapi/ is generated: none may be left over.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") && !files.iter().any(|(n, _)| *n == name) {
            stale.push(Box::leak(name.into_boxed_str()));
        }
    }
    assert!(
        stale.is_empty(),
        "openapi/ differs from the code in {stale:?}: run `cargo run -p chat-tower --example gen-openapi` and commit"
    );
}

#[test]
fn the_document_is_complete() {
    let doc = serde_json::to_value(chat_tower::openapi::openapi()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["license"]["identifier"], "MIT OR Apache-2.0");
    for path in [
        "/create-room",
        "/join-room/{roomId}",
        "/rooms",
        "/rooms/{roomId}",
        "/rooms/{roomId}/messages",
        "/openapi.json",
        "/asyncapi.json",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    // The WebSocket is AsyncAPI's: as a REST operation it could only fail.
    assert!(doc["paths"].get("/ws").is_none());
    assert_eq!(doc["servers"][0]["url"], "/");
    for method in doc["paths"].as_object().unwrap().values() {
        for op in method.as_object().unwrap().values() {
            for (status, response) in op["responses"].as_object().unwrap() {
                assert!(
                    response["description"].is_string(),
                    "{status} without description"
                );
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{status} is not problem+json: {response}"
                    );
                }
            }
        }
    }
    let client = chat_tower::openapi::client_frames_json();
    let server = chat_tower::openapi::server_frames_json();
    assert_eq!(client["oneOf"].as_array().unwrap().len(), 4);
    assert!(server["oneOf"].as_array().unwrap().len() >= 7);
    for schema in doc["components"]["schemas"].as_object().unwrap().values() {
        if schema["type"] == "object" {
            assert!(schema["examples"][0].is_object() || schema.get("properties").is_some());
        }
    }
    let asyncapi = chat_tower::openapi::asyncapi();
    assert_eq!(asyncapi["asyncapi"], "3.1.0");
    assert_eq!(asyncapi["servers"]["chat"]["protocol"], "ws");
    assert_eq!(
        asyncapi["components"]["messages"]
            .as_object()
            .unwrap()
            .len(),
        12
    );
}

/// Each operation's id, a `default` problem response on each, `$ref`ed room ids, the problem
/// code an enum, `examples` rather than `example`: what SDK generators need (issue 18).
#[test]
fn the_document_reads_well_in_generators() {
    let doc = serde_json::to_value(chat_tower::openapi::openapi()).unwrap();
    let mut ids = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for op in item.as_object().unwrap().values() {
            ids.push(op["operationId"].as_str().unwrap().to_owned());
            assert_eq!(
                op["responses"]["default"]["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{path}: no default problem response"
            );
            for param in op["parameters"].as_array().into_iter().flatten() {
                if param["name"] == "roomId" {
                    assert_eq!(param["schema"]["$ref"], "#/components/schemas/RoomId");
                }
            }
        }
    }
    ids.sort();
    assert_eq!(
        ids,
        [
            "createGuest",
            "createInvite",
            "createRoom",
            "getAsyncApi",
            "getOpenApi",
            "getRoom",
            "joinRoom",
            "leaveRoom",
            "listConversations",
            "listDirectMessages",
            "listRoomMembers",
            "listRoomMessages",
            "listRooms"
        ]
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    // hey-api names `<operationId>Response` itself: no schema may take such a name.
    for id in &ids {
        let mut alias = id.clone();
        alias[..1].make_ascii_uppercase();
        assert!(
            !schemas.contains_key(&format!("{alias}Response")),
            "{alias}Response"
        );
    }
    assert_eq!(
        schemas["Problem"]["properties"]["code"]["$ref"],
        "#/components/schemas/ProblemCode"
    );
    let codes: Vec<&str> = schemas["ProblemCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for code in [
        "bad_request",
        "invalid_value",
        "unauthorized",
        "method_not_allowed",
        "internal",
        "unsupported_media_type",
        "not_found",
        "room_not_found",
        "rate_limited",
        "unavailable",
    ] {
        assert!(codes.contains(&code), "{code} missing from ProblemCode");
    }
    let text = doc.to_string();
    assert!(!text.contains("\"example\":"), "deprecated `example` left");
}

/// Every frame definition carries its own `type` const and the unions are bare `$ref`s; enums
/// are enums; no OpenAPI-only formats in the JSON Schemas.
#[test]
fn frame_schemas_carry_their_type() {
    for (schema, tags) in [
        (
            chat_tower::openapi::client_frames_json(),
            vec!["join", "leave", "message", "direct"],
        ),
        (
            chat_tower::openapi::server_frames_json(),
            vec![
                "joined", "left", "message", "direct", "system", "ack", "error", "resync",
            ],
        ),
    ] {
        let mut seen = Vec::new();
        for branch in schema["oneOf"].as_array().unwrap() {
            let branch = branch.as_object().unwrap();
            assert_eq!(branch.len(), 1, "a bare $ref: {branch:?}");
            let name = branch["$ref"]
                .as_str()
                .unwrap()
                .trim_start_matches("#/$defs/");
            let def = &schema["$defs"][name];
            seen.push(
                def["properties"]["type"]["const"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
            assert_eq!(def["required"][0], "type");
            assert!(def["description"].is_string());
        }
        assert_eq!(seen, tags);
        let text = schema.to_string();
        assert!(!text.contains("\"format\":\"int") && !text.contains("\"format\":\"uint"));
    }
    let server = chat_tower::openapi::server_frames_json();
    assert_eq!(server["$defs"]["ErrorCode"]["type"], "string");
    assert!(
        server["$defs"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap()
            .len()
            >= 10
    );
    assert_eq!(
        server["$defs"]["SystemEvent"]["enum"],
        serde_json::json!(["user_joined", "user_left"])
    );
}
