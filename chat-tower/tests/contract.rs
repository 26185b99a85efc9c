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
        "/ws",
        "/asyncapi.json",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
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
    let client = serde_json::to_value(chat_tower::openapi::client_frames_schema()).unwrap();
    let server = serde_json::to_value(chat_tower::openapi::server_frames_schema()).unwrap();
    assert_eq!(client["oneOf"].as_array().unwrap().len(), 4);
    assert!(server["oneOf"].as_array().unwrap().len() >= 7);
    for schema in doc["components"]["schemas"].as_object().unwrap().values() {
        if schema["type"] == "object" {
            assert!(schema["example"].is_object() || schema.get("properties").is_some());
        }
    }
    let asyncapi = chat_tower::openapi::asyncapi();
    assert_eq!(asyncapi["asyncapi"], "3.0.0");
    assert_eq!(
        asyncapi["components"]["messages"]
            .as_object()
            .unwrap()
            .len(),
        12
    );
}
