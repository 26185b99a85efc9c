//! Secrets out of the logs: every line the demo writes (its own, the chat's, and whatever a
//! dependency such as the redis crate logs at `debug` or `trace`) goes through [`redact`]
//! before it reaches stderr, and so does the error it exits with.
//!
//! What is replaced by `***`:
//! - the password of a URL's user info (`redis://user:***@host`);
//! - the token after `Bearer `;
//! - the value after a key that names a secret (`password`, `passwd`, `token`, `secret`,
//!   `authorization`, `invite`, `jwt`, with any suffix: `access_token`, `token_secret`) and
//!   `=` or `:` (`?token=***`, `password: Some("***")`, `"authorization": "***"`);
//! - anything shaped like a JWT or a chat token (`eyJ...` base64url JSON, then `.` parts).

use std::{borrow::Cow, io};

/// The keys whose values are secrets (matched case-insensitively, as a word's start).
const SECRET_KEYS: [&str; 7] = [
    "password",
    "passwd",
    "token",
    "secret",
    "authorization",
    "invite",
    "jwt",
];

const MASK: &str = "***";

/// `line` with its secrets replaced (see the module docs).
pub(crate) fn redact(line: &str) -> Cow<'_, str> {
    let lower = line.to_ascii_lowercase();
    let suspicious = lower.contains("://")
        || lower.contains("bearer")
        || lower.contains("eyj")
        || SECRET_KEYS.iter().any(|k| lower.contains(k));
    if !suspicious {
        return Cow::Borrowed(line);
    }
    if line.contains('\x1b') {
        // Terminal colours split `token=value` into `token`, escapes, `=`, escapes, `value`:
        // a line that may hold a secret loses its colours.
        let plain = strip_ansi(line);
        return Cow::Owned(redact(&plain).into_owned());
    }
    let mut spans = Vec::new();
    url_passwords(line, &mut spans);
    bearer_tokens(line, &lower, &mut spans);
    key_values(line, &lower, &mut spans);
    token_shapes(line, &mut spans);
    if spans.is_empty() {
        return Cow::Borrowed(line);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    for (start, end) in spans {
        if end <= at {
            continue;
        }
        let start = start.max(at);
        out.push_str(&line[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&line[at..]);
    Cow::Owned(out)
}

/// `line` without its terminal escape sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=' | b'~' | b'+' | b'/')
}

/// `scheme://user:PASSWORD@host`: the password.
fn url_passwords(line: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(found) = line[from..].find("://") {
        let start = from + found + 3;
        let end = bytes[start..]
            .iter()
            .position(|&b| {
                b.is_ascii_whitespace()
                    || matches!(b, b'/' | b'?' | b'#' | b'"' | b'\'' | b'>' | b'`')
            })
            .map_or(bytes.len(), |n| start + n);
        if let Some(at) = line[start..end].rfind('@') {
            let userinfo = &line[start..start + at];
            if let Some(colon) = userinfo.find(':') {
                if colon + 1 < at {
                    spans.push((start + colon + 1, start + at));
                }
            }
        }
        from = start;
    }
}

/// Bearer tokens are long: a shorter word after "bearer" is prose ("JWT bearer tokens").
const BEARER_MIN: usize = 16;

/// `Bearer TOKEN`: the token.
fn bearer_tokens(line: &str, lower: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(found) = lower[from..].find("bearer") {
        let key = from + found;
        from = key + 6;
        if key > 0 && is_word(bytes[key - 1]) {
            continue;
        }
        let mut start = from;
        while start < bytes.len() && bytes[start] == b' ' {
            start += 1;
        }
        if start == from {
            continue;
        }
        let end = bytes[start..]
            .iter()
            .position(|&b| !is_token_char(b))
            .map_or(bytes.len(), |n| start + n);
        if end - start >= BEARER_MIN {
            spans.push((start, end));
        }
    }
}

/// `KEY=VALUE`, `KEY: VALUE`, `"KEY": "VALUE"`, `KEY: Some("VALUE")`: the value.
fn key_values(line: &str, lower: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = line.as_bytes();
    for key in SECRET_KEYS {
        let mut from = 0;
        while let Some(found) = lower[from..].find(key) {
            let start_key = from + found;
            from = start_key + key.len();
            if start_key > 0 && is_word(bytes[start_key - 1]) {
                continue;
            }
            // The rest of the identifier (`token_secret`, `tokens`).
            let mut i = from;
            while i < bytes.len() && (is_word(bytes[i]) || bytes[i] == b'_') {
                i += 1;
            }
            // Then a separator with `=` or `:` in it.
            let mut quote = None;
            let mut assigned = false;
            while i < bytes.len() {
                match bytes[i] {
                    b'=' | b':' => assigned = true,
                    b'"' | b'\'' if assigned => {
                        quote = Some(bytes[i]);
                        i += 1;
                        break;
                    }
                    b'"' | b'\'' | b' ' | b'\\' => {}
                    _ if assigned && lower[i..].starts_with("some(") => {
                        i += 4;
                    }
                    _ => break,
                }
                i += 1;
            }
            if !assigned {
                continue;
            }
            let start = i;
            let end = match quote {
                Some(q) => bytes[start..]
                    .iter()
                    .position(|&b| b == q || b == b'\\')
                    .map_or(bytes.len(), |n| start + n),
                None => bytes[start..]
                    .iter()
                    .position(|&b| {
                        b.is_ascii_whitespace()
                            || matches!(b, b'&' | b',' | b';' | b')' | b'}' | b']' | b'"' | b'\'')
                    })
                    .map_or(bytes.len(), |n| start + n),
            };
            // `authorization: Bearer abc`: the scheme, then the credentials.
            let end = if matches!(&lower[start..end], "bearer" | "basic") {
                let mut next = end;
                while next < bytes.len() && bytes[next] == b' ' {
                    next += 1;
                }
                bytes[next..]
                    .iter()
                    .position(|&b| !is_token_char(b))
                    .map_or(bytes.len(), |n| next + n)
            } else {
                end
            };
            if end > start && &line[start..end] != MASK {
                spans.push((start, end));
            }
        }
    }
}

/// `eyJ...` (base64url of a JSON object) followed by `.` and more: a JWT, or a chat token.
fn token_shapes(line: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(found) = line[from..].find("eyJ") {
        let start = from + found;
        from = start + 3;
        if start > 0 && is_token_char(bytes[start - 1]) {
            continue;
        }
        let end = bytes[start..]
            .iter()
            .position(|&b| !is_token_char(b))
            .map_or(bytes.len(), |n| start + n);
        if line[start..end].contains('.') {
            spans.push((start, end));
            from = end;
        }
    }
}

/// A writer that redacts what it is given, for `tracing_subscriber::fmt` (which writes each
/// event with one `write_all`, so a secret is never split between two writes).
pub(crate) struct Redacting<W>(pub(crate) W);

impl<W: io::Write> io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn secrets_are_masked_and_the_rest_kept() {
        let cases = [
            (
                "backend: redis url=redis://:hunter2@127.0.0.1:6379/0",
                "backend: redis url=redis://:***@127.0.0.1:6379/0",
            ),
            (
                "connecting to redis://default:p%40ss@db:6379",
                "connecting to redis://default:***@db:6379",
            ),
            ("GET /ws?token=abc.def&x=1", "GET /ws?token=***&x=1"),
            (
                "headers: {\"authorization\": \"Bearer abc123\"}",
                "headers: {\"authorization\": \"***\"}",
            ),
            ("authorization: Bearer abc123", "authorization: ***"),
            ("Bearer 0123456789abcdef0123 sent", "Bearer *** sent"),
            ("\x1b[3mtoken\x1b[0m\x1b[2m=\x1b[0mabc def", "token=*** def"),
            (
                "ConnectionInfo { password: Some(\"hunter2\"), db: 0 }",
                "ConnectionInfo { password: Some(\"***\"), db: 0 }",
            ),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.sig-_x seen",
                "jwt *** seen",
            ),
            ("tok eyJzdWIiOiJhIn0.c2lnbmF0dXJl.", "tok ***"),
            ("token_secret=s3cr3t end", "token_secret=*** end"),
        ];
        for (line, want) in cases {
            assert_eq!(redact(line), want, "{line}");
        }
        for plain in [
            "listening addr=127.0.0.1:3000",
            "tokens issued: 3",
            "request{method=GET path=/rooms}",
            "see https://example.org/docs",
            "identity: guests (pass --auth jwt for JWT bearer tokens)",
        ] {
            assert_eq!(redact(plain), plain);
        }
    }
}
