//! The demo-server binary: serves the client and the docs, drains on SIGTERM (1012).

use roomcast_tests::{Client, DemoProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_websockets_with_1012_and_exits_cleanly() {
    let demo = DemoProcess::start(&[]).await;
    let room = demo.api.create_room("bye").await;
    let joined = demo.api.join_room(&room, "alice").await;
    let mut alice = Client::connect(demo.addr, joined["websocketUrl"].as_str().unwrap()).await;
    alice.join(&room).await;
    alice.say(&room, "last words").await;
    let page = reqwest::get(format!("http://{}/", demo.addr))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"));
    let docs = reqwest::get(format!("http://{}/docs/", demo.addr))
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    let status = {
        let close = tokio::spawn(async move { alice.expect_close().await });
        let status = demo.terminate().await;
        assert_eq!(close.await.unwrap(), 1012, "SIGTERM drains (issue 16)");
        status
    };
    assert!(status.success(), "{status:?}");
}
