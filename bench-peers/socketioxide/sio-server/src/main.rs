//! socketioxide 0.18 chat fan-out server for the peer bench.
//! Usage: sio-server PORT [REDIS_URL]   (no REDIS_URL => in-memory LocalAdapter)
use socketioxide::{
    adapter::Adapter,
    extract::{Data, SocketRef},
    SocketIo,
};
use socketioxide_redis::{drivers::redis::redis_client as redis, RedisAdapter, RedisAdapterCtr};
use serde_json::Value;
use axum::serve::ListenerExt;

// Sync connect handler: socketioxide 0.18 sends the CONNECT reply ("40{sid}") *before* it runs
// the connect handler, so with an async handler (spawned) an event sent right after "40" can
// arrive before `socket.on("join")` is registered and be dropped. Registering the handlers
// synchronously (plain fn returning a ready future: socketioxide calls the fn inline and only
// spawns the returned future) narrows that window to a few instructions.
fn on_connect<A: Adapter>(socket: SocketRef<A>) -> std::future::Ready<()> {
    // "join": data is the room name
    socket.on("join", |s: SocketRef<A>, Data::<String>(room)| async move {
        s.join(room);
        // tell the client it is in (lets the bench wait until all joins are done)
        s.emit("joined", &()).ok();
    });
    // "msg": {"room": "...", ...} -> to the room, excluding the sender
    socket.on("msg", |s: SocketRef<A>, Data::<Value>(msg)| async move {
        let room = match msg.get("room").and_then(|r| r.as_str()) {
            Some(r) => r.to_owned(),
            None => return,
        };
        s.to(room).emit("msg", &msg).await.ok();
    });
    std::future::ready(())
}

/// The usual `async fn` connect handler (spawned by socketioxide); only used when
/// SIO_ASYNC_CONNECT=1, to check the connect/handler-registration race.
async fn on_connect_async<A: Adapter>(socket: SocketRef<A>) {
    let _ = on_connect(socket);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().expect("PORT").parse()?;
    let redis_url = args.next();
    let app = match redis_url {
        Some(url) => {
            let client = redis::Client::open(url)?;
            let adapter = RedisAdapterCtr::new_with_redis(&client).await?;
            let (layer, io) = SocketIo::builder()
                .with_adapter::<RedisAdapter<_>>(adapter)
                .build_layer();
            if std::env::var("SIO_ASYNC_CONNECT").is_ok_and(|v| v == "1") {
                io.ns("/", on_connect_async).await?;
            } else {
                io.ns("/", on_connect).await?;
            }
            axum::Router::new().layer(layer)
        }
        None => {
            let (layer, io) = SocketIo::new_layer();
            if std::env::var("SIO_ASYNC_CONNECT").is_ok_and(|v| v == "1") {
                io.ns("/", on_connect_async);
            } else {
                io.ns("/", on_connect);
            }
            axum::Router::new().layer(layer)
        }
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    eprintln!("listening on {port}");
    axum::serve(listener, app).await?;
    Ok(())
}
