//! The store tests that every backend must pass, written once: each backend's test file runs
//! them with `store_tests!` over its own [`Backend`], so memory and Redis are held to the same
//! order and the same answers. `listing`: rooms; `membership`: members, `share_a_room`,
//! online users, cursors; `access`: a user's rooms in batches, token revocations;
//! `presence`: exits, idempotent sends, held and kept direct messages; `conversations`: a
//! user's list of conversations; `guests`: guests admitted per client address; `quotas`:
//! users' limits counted for every node.

mod access;
mod conversations;
mod guests;
mod listing;
mod membership;
mod presence;
mod quotas;

use std::future::Future;

pub(crate) use access::{
    revocations_are_kept_for_their_ttl, user_rooms_come_in_batches_until_none_is_left,
};
pub(crate) use conversations::conversations_list_the_latest_first_within_the_cap;
pub(crate) use guests::guests_are_admitted_per_client_within_the_rate;
pub(crate) use listing::{
    list_pages_newest_first, private_rooms_are_listed_to_members, same_instant_rooms_page_once,
};
pub(crate) use membership::{
    bad_cursors_are_invalid, members_page_in_join_order, online_is_limited_and_counted,
    share_a_room_follows_memberships, the_member_cap_refuses_only_new_members,
};
pub(crate) use presence::{
    directs_are_held_and_released_once, directs_are_kept_per_conversation,
    exits_are_idempotent_and_announce_once, guests_hold_only_their_share_of_an_inbox,
    sends_are_deduplicated,
};
pub(crate) use quotas::{
    open_sockets_are_counted_within_the_max, quotas_are_taken_per_user_before_anything_is_done,
};

use super::{
    broker::{Envelope, Origin, Topic},
    store::{Page, RoomInfo, Visibility},
    Backend,
};
use crate::protocol::{now_ms, RoomId, ServerFrame, SystemEvent, SystemMessage, User, UserId};

/// Declares one `#[tokio::test]` per suite function, each on a fresh backend from `$make`
/// (an async block giving `(guard, Backend)`; the guard lives as long as the test, e.g. a
/// Redis server).
macro_rules! store_tests {
    ($make:expr) => {
        $crate::backend::store_suite::store_tests!(@each $make;
            list_pages_newest_first, same_instant_rooms_page_once,
            private_rooms_are_listed_to_members, members_page_in_join_order,
            share_a_room_follows_memberships, online_is_limited_and_counted,
            bad_cursors_are_invalid, user_rooms_come_in_batches_until_none_is_left,
            revocations_are_kept_for_their_ttl, the_member_cap_refuses_only_new_members,
            exits_are_idempotent_and_announce_once, sends_are_deduplicated,
            directs_are_held_and_released_once, directs_are_kept_per_conversation,
            conversations_list_the_latest_first_within_the_cap,
            guests_hold_only_their_share_of_an_inbox,
            guests_are_admitted_per_client_within_the_rate,
            quotas_are_taken_per_user_before_anything_is_done,
            open_sockets_are_counted_within_the_max);
    };
    (@each $make:expr; $($name:ident),*) => {$(
        #[tokio::test]
        async fn $name() {
            let (_guard, mut backend) = $make.await;
            $crate::backend::store_suite::$name(&mut backend).await;
        }
    )*};
}
pub(crate) use store_tests;

/// A room created `at` seconds after a fixed instant; private rooms are Ann's.
fn room(id: &str, at: u32, visibility: Visibility) -> RoomInfo {
    RoomInfo {
        room_id: RoomId::new(id),
        name: format!("room {id}"),
        created_at: format!("2026-01-01T00:{:02}:{:02}Z", at / 60, at % 60),
        visibility,
        owner: (visibility == Visibility::Private).then(|| UserId::new("ann")),
    }
}

/// The `user_left` envelope of `user` in `room`, published by `backend`'s node.
fn user_left(backend: &Backend, user: &User, room: &RoomId) -> Envelope {
    let frame = ServerFrame::System(SystemMessage {
        room: room.clone(),
        event: SystemEvent::UserLeft,
        user: user.clone(),
        ts: now_ms(),
    });
    Envelope {
        origin: Origin {
            node: backend.broker.node_id(),
            conn: None,
        },
        topic: Topic::Room(room.clone()),
        frame: frame.encode(),
    }
}

/// Creates rooms `(id, at, visibility)`.
async fn create(backend: &Backend, rooms: &[(&str, u32, Visibility)]) {
    for (id, at, visibility) in rooms {
        let room = room(id, *at, *visibility);
        backend.rooms.create(room).await.unwrap();
    }
}

/// Expected pages, as owned strings.
fn pages_of(pages: &[&[&str]]) -> Vec<Vec<String>> {
    let page = |p: &&[&str]| p.iter().map(|s| s.to_string()).collect();
    pages.iter().map(page).collect()
}

/// Every page of a listing, following its cursors, as ids: `fetch` reads the page after a
/// cursor, `id` names an item.
async fn walk<T, F, Fut>(mut fetch: F, id: fn(T) -> String) -> Vec<Vec<String>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Page<T>>,
{
    let (mut cursor, mut pages) = (None, Vec::new());
    loop {
        let page = fetch(cursor.take()).await;
        pages.push(page.items.into_iter().map(id).collect());
        match page.next {
            Some(next) => cursor = Some(next),
            None => return pages,
        }
    }
}

/// Every page of `list` for `viewer`, `limit` at a time, as room ids.
pub(crate) async fn room_pages(backend: &Backend, viewer: &str, limit: usize) -> Vec<Vec<String>> {
    let viewer = &UserId::new(viewer);
    let fetch = move |cursor: Option<String>| async move {
        let page = backend.rooms.list(viewer, cursor.as_deref(), limit);
        page.await.unwrap()
    };
    walk(fetch, |room: RoomInfo| room.room_id.to_string()).await
}
