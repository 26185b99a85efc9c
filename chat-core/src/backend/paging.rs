//! What both room stores page by, so that memory and Redis list in the same order and read
//! the same cursors: a room's sort key, the two cursor formats, and the cutting of a page.
//!
//! - **Rooms** (`list`, newest first) are ordered by their *sort key*: the creation time in
//!   nanoseconds since the epoch, zero-padded to 20 digits, then `|`, then the room id. Byte
//!   order of keys is (time, id) order, so that a Redis sorted set of keys with one score
//!   (`ZRANGE … BYLEX REV`) and a `BTreeSet<String>` agree, and rooms created in the same
//!   instant still have a strict order. A list cursor is the key of the last room of a page;
//!   the next page is the keys strictly below it, so rooms created meanwhile (above it) never
//!   shift it.
//! - **Members** (`members`, in the order they first joined) carry a join number, one more
//!   than the room's last; a members cursor is the join number of the last member of a page
//!   in decimal, and the next page is the numbers strictly above it.

use super::store::Page;
use crate::{
    error::BackendError,
    protocol::{now_ms, RoomId},
};

/// Digits of the time part of a room's sort key: `u64::MAX` nanoseconds has 20.
const TIME_DIGITS: usize = 20;

/// A room's sort key (see the module docs) from its RFC 3339 `created_at`. A time before the
/// epoch counts as the epoch; a `created_at` that does not parse counts as now.
pub(crate) fn room_key(room: &RoomId, created_at: &str) -> String {
    let nanos =
        time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp_nanos())
            .unwrap_or_else(|_| i128::from(now_ms()) * 1_000_000);
    let nanos = u64::try_from(nanos.max(0)).unwrap_or(u64::MAX);
    format!("{nanos:0TIME_DIGITS$}|{room}")
}

/// The room of a sort key, or `None` for a string that is not one.
pub(crate) fn room_of_key(key: &str) -> Option<RoomId> {
    let (time, rest) = key.split_at_checked(TIME_DIGITS)?;
    let id = rest.strip_prefix('|')?;
    (time.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty()).then(|| RoomId::new(id))
}

/// Checks a list cursor: it must be a room sort key.
///
/// # Errors
/// [`BackendError::InvalidCursor`] for anything else.
pub(crate) fn room_cursor(cursor: &str) -> Result<&str, BackendError> {
    room_of_key(cursor)
        .map(|_| cursor)
        .ok_or(BackendError::InvalidCursor)
}

/// The join number a members cursor points after (0, before the first, without a cursor).
///
/// # Errors
/// [`BackendError::InvalidCursor`] unless the cursor is a join number as
/// [`split_page`] writes it (decimal, no sign, no leading zero).
pub(crate) fn member_cursor(cursor: Option<&str>) -> Result<u64, BackendError> {
    let Some(cursor) = cursor else { return Ok(0) };
    cursor
        .parse::<u64>()
        .ok()
        .filter(|n| n.to_string() == cursor)
        .ok_or(BackendError::InvalidCursor)
}

/// How many items to fetch for a page of `limit`: one more than the page (at least 1), to
/// know whether another page follows without a second query.
pub(crate) fn fetch(limit: usize) -> usize {
    limit.max(1).saturating_add(1)
}

/// Cuts what [`fetch`] fetched into a page of at most `limit` (at least 1) items; if there was
/// more, the next cursor is `cursor_of` the page's last item.
pub(crate) fn split_page<T>(
    mut items: Vec<T>,
    limit: usize,
    cursor_of: impl Fn(&T) -> String,
) -> Page<T> {
    let limit = limit.max(1);
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor_of)
    } else {
        None
    };
    Page { items, next }
}

/// Merges two runs of sort keys that are each in descending order into one (newest first),
/// keeping the first `n`. The runs are disjoint (a room is public or private, not both).
pub(crate) fn merge_newest_first(
    a: impl IntoIterator<Item = String>,
    b: impl IntoIterator<Item = String>,
    n: usize,
) -> Vec<String> {
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    let mut merged = Vec::new();
    while merged.len() < n {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x >= y => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(key) => merged.push(key),
            None => break,
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_by_time_then_id_and_round_trip() {
        let r = |id: &str, at: &str| room_key(&RoomId::new(id), at);
        let early = r("b", "2026-01-01T00:00:00.000000001Z");
        let late = r("a", "2026-01-01T00:00:00.000000002Z");
        let tie = r("c", "2026-01-01T00:00:00.000000002Z");
        assert!(early < late && late < tie);
        assert_eq!(room_of_key(&tie), Some(RoomId::new("c")));
        assert_eq!(
            r("x|y", "1900-01-01T00:00:00Z"),
            format!("{}|x|y", "0".repeat(20))
        );
        assert_eq!(
            room_of_key(&r("x|y", "1900-01-01T00:00:00Z")),
            Some(RoomId::new("x|y"))
        );
        for bad in [
            "",
            "12|a",
            "0000000000000000000x|a",
            "00000000000000000000|",
            "é",
        ] {
            assert!(
                matches!(room_cursor(bad), Err(BackendError::InvalidCursor)),
                "{bad}"
            );
        }
    }

    #[test]
    fn member_cursors_are_canonical_numbers() {
        assert_eq!(member_cursor(None).unwrap(), 0);
        assert_eq!(member_cursor(Some("17")).unwrap(), 17);
        for bad in ["", "+1", "01", "-1", "1.0", "99999999999999999999", "x"] {
            assert!(
                matches!(member_cursor(Some(bad)), Err(BackendError::InvalidCursor)),
                "{bad}"
            );
        }
    }

    #[test]
    fn merging_keeps_descending_order_and_the_bound() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            merge_newest_first(v(&["d", "b"]), v(&["c", "a"]), 9),
            v(&["d", "c", "b", "a"])
        );
        assert_eq!(
            merge_newest_first(v(&["d", "b"]), v(&["c", "a"]), 2),
            v(&["d", "c"])
        );
        let page = split_page(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!((page.items, page.next), (vec![1, 2], Some("2".into())));
        assert_eq!(split_page(vec![1], 0, |n| n.to_string()).next, None);
    }
}
