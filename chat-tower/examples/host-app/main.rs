//! A host app with its own login that mounts the chat: `cargo run -p chat-tower --example
//! host-app`, then on <http://127.0.0.1:3000>:
//!
//! ```text
//! curl -c jar -H 'content-type: application/json' -d '{"user":"alice","password":"alice-pw"}' \
//!      localhost:3000/login
//! curl -b jar -X POST localhost:3000/chat/create-room         # alice is staff: 201
//! curl -b jar -H 'content-type: application/json' \
//!      -d '{"room":"<roomId>","text":"hello"}' localhost:3000/announce
//! ```
//!
//! The app itself is in `app.rs`.

mod app;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let (app, chat) = app::app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    // With each request's peer address: the chat's per-address guest limit reads it.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = tokio::signal::ctrl_c().await;
        chat.shutdown().await;
    })
    .await
}
