//! Client frames: decoding, handling, and the `error` reply.

use crate::{
    connection::Connection,
    error::{retry_after_ms, Error},
    protocol::{AckFrame, ClientFrame, ErrorFrame, ServerFrame},
};

/// Decodes and handles one client text frame; every outcome queues exactly one reply
/// (`joined`, `left`, `ack` or `error`).
pub async fn handle_text(conn: &mut Connection, text: &str) {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => frame,
        Err(err) => {
            let err = Error::BadFrame(describe_decode_error(text, &err));
            conn.reply(&error_frame(
                &err,
                client_msg_id_of(text, conn.chat().config().max_client_msg_id),
            ));
            return;
        }
    };
    match frame {
        ClientFrame::Join(join) => {
            if let Err(err) = conn.join(&join.room, join.since.as_ref()).await {
                conn.reply(&error_frame(&err, None));
            }
        }
        ClientFrame::Leave(leave) => {
            if let Err(err) = conn.leave(&leave.room).await {
                conn.reply(&error_frame(&err, None));
            }
        }
        ClientFrame::Message(message) => {
            let id = message.client_msg_id.clone();
            let result = conn.send_message(message).await;
            conn.reply(&ack_or_error(result, id));
        }
        ClientFrame::Direct(direct) => {
            let id = direct.client_msg_id.clone();
            let result = conn.send_direct(direct).await;
            conn.reply(&ack_or_error(result, id));
        }
    }
}

/// The reply to a send: its `ack`, or the `error` that names the client's message id.
fn ack_or_error(result: Result<AckFrame, Error>, client_msg_id: Option<String>) -> ServerFrame {
    match result {
        Ok(ack) => ServerFrame::Ack(ack),
        Err(err) => error_frame(&err, client_msg_id),
    }
}

/// The `error` frame for an error: a backend failure's own text stays in the log, under the
/// correlation id that the frame's message names ([`Error::for_client`]).
pub fn error_frame(err: &Error, client_msg_id: Option<String>) -> ServerFrame {
    let told = err.for_client();
    ServerFrame::Error(ErrorFrame {
        code: told.code,
        message: told.message,
        client_msg_id,
        retry_after_ms: err.retry_after().map(retry_after_ms),
    })
}

fn describe_decode_error(text: &str, err: &serde_json::Error) -> String {
    if serde_json::from_str::<serde_json::Value>(text).is_err() {
        format!("not JSON: {err}")
    } else {
        format!("not a known frame: {err}")
    }
}

/// Best effort: the `clientMsgId` of a frame that failed to decode, so the client can match
/// the error to what it sent.
pub(super) fn client_msg_id_of(text: &str, max_len: usize) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "clientMsgId")]
        client_msg_id: Option<String>,
    }
    serde_json::from_str::<Probe>(text)
        .ok()
        .and_then(|p| p.client_msg_id)
        .filter(|id| id.len() <= max_len)
}
