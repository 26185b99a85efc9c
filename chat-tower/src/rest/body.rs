//! Request bodies: JSON only (415 otherwise), size limit, optional JSON, and the check of
//! names.

use axum::{
    body::Bytes,
    extract::Request,
    http::{header, request::Parts, HeaderMap},
};
use serde::de::DeserializeOwned;

use crate::error::ChatRejection;

/// Largest REST request body accepted.
pub(super) const MAX_BODY: usize = 16 * 1024;

/// Parses an optional JSON body: empty or `null` means `T::default()`.
fn json_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ChatRejection> {
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

/// The optional JSON body of `request`, with the request's parts.
///
/// A body must come as `application/json` (or an `application/*+json` type): any other
/// declared type is a 415, even with an empty body, and so is a body without a type. What an
/// HTML form can send cross-site (`application/x-www-form-urlencoded`, `multipart/form-data`,
/// `text/plain`) is thus refused without a CORS preflight having been asked: a host that
/// identifies users by cookie is not open to cross-site form posts. A request with neither
/// a body nor a type (e.g. `POST /create-room` with nothing) is valid where the body is
/// optional.
pub(super) async fn json_request<T: DeserializeOwned + Default>(
    request: Request,
) -> Result<(Parts, T), ChatRejection> {
    let (parts, body) = request.into_parts();
    let declared_json = json_content_type(&parts.headers)?;
    let bytes = read_body(body).await?;
    if !declared_json && !bytes.is_empty() {
        return Err(ChatRejection::UnsupportedMediaType(
            "a request body must be sent as `Content-Type: application/json`".into(),
        ));
    }
    Ok((parts, json_body(&bytes)?))
}

/// Whether the request declares a JSON body: `Ok(false)` without a `Content-Type`, 415 for
/// any type but `application/json` and `application/*+json` (parameters such as `charset`
/// allowed).
fn json_content_type(headers: &HeaderMap) -> Result<bool, ChatRejection> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(false);
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json") && !sub.contains('/'));
    if json {
        Ok(true)
    } else {
        Err(ChatRejection::UnsupportedMediaType(
            "a request body must be sent as `Content-Type: application/json`".into(),
        ))
    }
}

/// The whole body, up to [`MAX_BODY`] (413 past it).
async fn read_body(body: axum::body::Body) -> Result<Bytes, ChatRejection> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(value),
        );
        headers
    }

    #[test]
    fn only_json_types_are_bodies() {
        assert!(!json_content_type(&HeaderMap::new()).unwrap_or(true));
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(json_content_type(&with_type(ok)).unwrap_or(false), "{ok}");
        }
        for refused in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "text/json",
            "application/jsonx",
            "",
        ] {
            assert!(
                matches!(
                    json_content_type(&with_type(refused)),
                    Err(ChatRejection::UnsupportedMediaType(_))
                ),
                "{refused}"
            );
        }
    }
}
