//! Request bodies: size limit, optional JSON, and the check of names.

use axum::body::Bytes;
use serde::de::DeserializeOwned;

use crate::error::ChatRejection;

/// Largest REST request body accepted.
pub(super) const MAX_BODY: usize = 16 * 1024;

/// Parses an optional JSON body: empty or `null` means `T::default()`.
pub(super) fn json_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ChatRejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|err| {
            if err.is_data() {
                ChatRejection::Unprocessable(format!("invalid body: {err}"))
            } else {
                ChatRejection::BadRequest(format!("body is not JSON: {err}"))
            }
        })
}

/// The whole body, up to [`MAX_BODY`] (413 past it).
pub(super) async fn read_body(body: axum::body::Body) -> Result<Bytes, ChatRejection> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ChatRejection::TooLarge(format!("the body is larger than {MAX_BODY} bytes")))
}

/// `value` trimmed and in Unicode NFC, if it is 1 to `max` characters without control,
/// format (bidi controls, zero-width characters) or private-use characters (else 422).
pub(crate) fn check_name(what: &str, value: &str, max: usize) -> Result<String, ChatRejection> {
    use unicode_normalization::UnicodeNormalization;
    let name: String = value.trim().nfc().collect();
    let chars = name.chars().count();
    if chars == 0 || chars > max {
        return Err(ChatRejection::Unprocessable(format!(
            "`{what}` must be 1 to {max} characters"
        )));
    }
    if let Some(problem) = chat_core::protocol::text::name_problem(&name) {
        return Err(ChatRejection::Unprocessable(format!(
            "`{what}` must not contain {problem}"
        )));
    }
    Ok(name)
}
