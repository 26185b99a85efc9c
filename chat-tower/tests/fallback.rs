//! Unknown paths under the chat router answer a `not_found` problem; nested under a prefix,
//! the fallback sees only that prefix and leaves the host's own routes and fallback alone.
#![allow(clippy::unwrap_used)] // a test: the helper below is only called from tests

use axum::{
    body::Body,
    http::{Request, StatusCode},
    routing::get,
    Router,
};
use tower::ServiceExt;

async fn call(app: &Router, uri: &str) -> (StatusCode, String, String) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn nested_fallback_answers_a_problem_and_leaves_the_host_alone() {
    let (chat, _handle) = chat_tower::ChatBuilder::<()>::new().build();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .nest("/chat", chat)
        .fallback(|| async { (StatusCode::IM_A_TEAPOT, "host fallback") });

    let (status, content_type, body) = call(&app, "/chat/no-such-thing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/problem+json");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "not_found");
    assert_eq!(problem["type"], "urn:roomcast:problem:not_found");

    // The chat's own routes still answer under the prefix.
    let (status, _, body) = call(&app, "/chat/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"openapi\""));
    // The host's routes and the host's fallback are the host's.
    assert_eq!(call(&app, "/health").await.2, "ok");
    assert_eq!(call(&app, "/elsewhere").await.0, StatusCode::IM_A_TEAPOT);
}

#[tokio::test]
async fn merged_at_the_root_the_fallback_is_the_chats_until_the_host_sets_one() {
    let (chat, _handle) = chat_tower::ChatBuilder::<()>::new().build();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(chat);
    let (status, content_type, _) = call(&app, "/no-such-thing").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );

    let (chat, _handle) = chat_tower::ChatBuilder::<()>::new().build();
    let app = Router::new()
        .merge(chat)
        .fallback(|| async { (StatusCode::IM_A_TEAPOT, "host fallback") });
    assert_eq!(
        call(&app, "/no-such-thing").await.0,
        StatusCode::IM_A_TEAPOT
    );
    assert_eq!(call(&app, "/openapi.json").await.0, StatusCode::OK);
}
