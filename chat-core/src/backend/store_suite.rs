//! The store tests that every backend must pass, written once: each backend's test file runs
//! them with `store_tests!` over its own [`Backend`], so memory and Redis are held to the same
//! order and the same answers.

use super::{
    store::{Page, RoomInfo, Visibility},
    Backend,
};
use crate::{
    error::BackendError,
    protocol::{RoomId, User, UserId},
};

/// Declares one `#[tokio::test]` per suite function, each on a fresh backend from `$make`
/// (an async block giving `(guard, Backend)`; the guard lives as long as the test, e.g. a
/// Redis server).
macro_rules! store_tests {
    ($make:expr) => {
        $crate::backend::store_suite::store_tests!(@each $make; list_pages_newest_first, same_instant_rooms_page_once,
            private_rooms_are_listed_to_members, members_page_in_join_order,
            share_a_room_follows_memberships, online_is_limited_and_counted,
            bad_cursors_are_invalid);
    };
    (@each $make:expr; $($name:ident),*) => {$(
        #[tokio::test]
        async fn $name() {
            let (_guard, backend) = $make.await;
            crate::backend::store_suite::$name(&backend).await;
        }
    )*};
}
pub(crate) use store_tests;

/// A room created `at` seconds after a fixed instant.
fn room(id: &str, at: u32, visibility: Visibility) -> RoomInfo {
    RoomInfo {
        room_id: RoomId::new(id),
        name: format!("room {id}"),
        created_at: format!("2026-01-01T00:{:02}:{:02}Z", at / 60, at % 60),
        visibility,
        owner: (visibility == Visibility::Private).then(|| UserId::new("ann")),
    }
}

async fn create(backend: &Backend, rooms: &[(&str, u32, Visibility)]) {
    for (id, at, visibility) in rooms {
        backend
            .rooms
            .create(room(id, *at, *visibility))
            .await
            .unwrap();
    }
}

fn ids(page: &Page<RoomInfo>) -> Vec<&str> {
    page.items.iter().map(|r| r.room_id.as_str()).collect()
}

/// Every page of `list` for `viewer`, `limit` at a time, as room ids.
async fn all_pages(backend: &Backend, viewer: &str, limit: usize) -> Vec<Vec<String>> {
    let (viewer, mut cursor, mut pages) = (UserId::new(viewer), None::<String>, Vec::new());
    loop {
        let page = backend
            .rooms
            .list(&viewer, cursor.as_deref(), limit)
            .await
            .unwrap();
        pages.push(ids(&page).into_iter().map(String::from).collect());
        match page.next {
            Some(next) => cursor = Some(next),
            None => return pages,
        }
    }
}

pub(crate) async fn list_pages_newest_first(backend: &Backend) {
    assert_eq!(
        all_pages(backend, "ann", 1).await,
        vec![Vec::<String>::new()]
    );
    let public = Visibility::Public;
    create(
        backend,
        &[
            ("r2", 2, public),
            ("r1", 1, public),
            ("r4", 4, public),
            ("r3", 3, public),
        ],
    )
    .await;
    let v = |pages: &[&[&str]]| -> Vec<Vec<String>> {
        pages
            .iter()
            .map(|p| p.iter().map(|s| s.to_string()).collect())
            .collect()
    };
    assert_eq!(
        all_pages(backend, "ann", 1).await,
        v(&[&["r4"], &["r3"], &["r2"], &["r1"]])
    );
    assert_eq!(
        all_pages(backend, "ann", 2).await,
        v(&[&["r4", "r3"], &["r2", "r1"]])
    );
    assert_eq!(
        all_pages(backend, "ann", 3).await,
        v(&[&["r4", "r3", "r2"], &["r1"]])
    );
    assert_eq!(
        all_pages(backend, "ann", 4).await,
        v(&[&["r4", "r3", "r2", "r1"]])
    );
    assert_eq!(
        all_pages(backend, "ann", 0).await.len(),
        4,
        "limit 0 is taken as 1"
    );
    // Creating a room again changes nothing.
    backend.rooms.create(room("r1", 9, public)).await.unwrap();
    assert_eq!(
        all_pages(backend, "ann", 9).await,
        v(&[&["r4", "r3", "r2", "r1"]])
    );
    let got = backend.rooms.get(&RoomId::new("r3")).await.unwrap();
    assert_eq!(got, Some(room("r3", 3, public)));
    assert_eq!(backend.rooms.get(&RoomId::new("none")).await.unwrap(), None);
}

pub(crate) async fn same_instant_rooms_page_once(backend: &Backend) {
    let public = Visibility::Public;
    create(
        backend,
        &[
            ("old", 1, public),
            ("b", 5, public),
            ("c", 5, public),
            ("a", 5, public),
        ],
    )
    .await;
    let viewer = UserId::new("ann");
    let first = backend.rooms.list(&viewer, None, 2).await.unwrap();
    assert_eq!(ids(&first), ["c", "b"], "same instant: by id, descending");
    // Rooms created after the first page was read (newer, or in the same instant) do not
    // make the next pages repeat or skip one.
    create(
        backend,
        &[("new", 6, public), ("bb", 5, public), ("aa", 5, public)],
    )
    .await;
    let second = backend
        .rooms
        .list(&viewer, first.next.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(ids(&second), ["aa", "a"]);
    let third = backend
        .rooms
        .list(&viewer, second.next.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!((ids(&third), third.next.as_deref()), (vec!["old"], None));
}

pub(crate) async fn private_rooms_are_listed_to_members(backend: &Backend) {
    let (public, private) = (Visibility::Public, Visibility::Private);
    create(
        backend,
        &[
            ("p1", 1, public),
            ("s1", 2, private),
            ("p2", 3, public),
            ("s2", 4, private),
        ],
    )
    .await;
    let (ann, bob) = (User::new("ann", "Ann"), User::new("bob", "Bob"));
    assert!(backend
        .rooms
        .add_member(&RoomId::new("s1"), &ann)
        .await
        .unwrap());
    assert!(backend
        .rooms
        .add_member(&RoomId::new("p1"), &ann)
        .await
        .unwrap());
    assert!(backend
        .rooms
        .add_member(&RoomId::new("s2"), &bob)
        .await
        .unwrap());
    let s =
        |ids: &[&str]| -> Vec<Vec<String>> { ids.iter().map(|i| vec![i.to_string()]).collect() };
    assert_eq!(all_pages(backend, "ann", 1).await, s(&["p2", "s1", "p1"]));
    assert_eq!(all_pages(backend, "bob", 1).await, s(&["s2", "p2", "p1"]));
    assert_eq!(all_pages(backend, "carol", 1).await, s(&["p2", "p1"]));
    let s1 = backend
        .rooms
        .get(&RoomId::new("s1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s1.visibility, s1.owner),
        (private, Some(UserId::new("ann")))
    );
    assert!(backend
        .rooms
        .remove_member(&RoomId::new("s1"), &ann.id)
        .await
        .unwrap());
    assert_eq!(all_pages(backend, "ann", 1).await, s(&["p2", "p1"]));
}

/// Every page of `members`, `limit` at a time, as user ids.
async fn member_pages(backend: &Backend, room: &RoomId, limit: usize) -> Vec<Vec<String>> {
    let (mut cursor, mut pages) = (None::<String>, Vec::new());
    loop {
        let page = backend
            .rooms
            .members(room, cursor.as_deref(), limit)
            .await
            .unwrap();
        pages.push(page.items.iter().map(|u| u.id.to_string()).collect());
        match page.next {
            Some(next) => cursor = Some(next),
            None => return pages,
        }
    }
}

pub(crate) async fn members_page_in_join_order(backend: &Backend) {
    let r = RoomId::new("r");
    assert!(
        !backend
            .rooms
            .add_member(&r, &User::new("u1", "U1"))
            .await
            .unwrap(),
        "no room"
    );
    create(backend, &[("r", 1, Visibility::Public)]).await;
    assert_eq!(
        member_pages(backend, &r, 2).await,
        vec![Vec::<String>::new()]
    );
    for id in ["u3", "u1", "u4", "u2"] {
        assert!(backend
            .rooms
            .add_member(&r, &User::new(id, id))
            .await
            .unwrap());
    }
    // Joining again refreshes the name and keeps the place.
    assert!(backend
        .rooms
        .add_member(&r, &User::new("u1", "Uno"))
        .await
        .unwrap());
    let order = |pages: &[&[&str]]| -> Vec<Vec<String>> {
        pages
            .iter()
            .map(|p| p.iter().map(|s| s.to_string()).collect())
            .collect()
    };
    assert_eq!(
        member_pages(backend, &r, 1).await,
        order(&[&["u3"], &["u1"], &["u4"], &["u2"]])
    );
    assert_eq!(
        member_pages(backend, &r, 2).await,
        order(&[&["u3", "u1"], &["u4", "u2"]])
    );
    assert_eq!(
        member_pages(backend, &r, 3).await,
        order(&[&["u3", "u1", "u4"], &["u2"]])
    );
    let first = backend.rooms.members(&r, None, 2).await.unwrap();
    assert_eq!(first.items[1], User::new("u1", "Uno"));
    assert_eq!(backend.rooms.member_count(&r).await.unwrap(), 4);
    // The member a cursor points at leaves: the next page still starts after it.
    assert!(backend
        .rooms
        .remove_member(&r, &UserId::new("u1"))
        .await
        .unwrap());
    assert!(!backend
        .rooms
        .remove_member(&r, &UserId::new("u1"))
        .await
        .unwrap());
    assert!(!backend
        .rooms
        .remove_member(&RoomId::new("none"), &UserId::new("u2"))
        .await
        .unwrap());
    assert!(!backend
        .rooms
        .is_member(&r, &UserId::new("u1"))
        .await
        .unwrap());
    let rest = backend
        .rooms
        .members(&r, first.next.as_deref(), 9)
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["u4", "u2"]
    );
    // Joining again after leaving is a new join, at the end.
    assert!(backend
        .rooms
        .add_member(&r, &User::new("u1", "U1"))
        .await
        .unwrap());
    assert_eq!(
        member_pages(backend, &r, 9).await,
        order(&[&["u3", "u4", "u2", "u1"]])
    );
    assert_eq!(backend.rooms.member_count(&r).await.unwrap(), 4);
    assert_eq!(
        backend
            .rooms
            .member_count(&RoomId::new("none"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        member_pages(backend, &RoomId::new("none"), 1).await,
        vec![Vec::<String>::new()]
    );
}

pub(crate) async fn share_a_room_follows_memberships(backend: &Backend) {
    create(
        backend,
        &[("r", 1, Visibility::Public), ("s", 2, Visibility::Private)],
    )
    .await;
    let [ann, bob, carol] = ["ann", "bob", "carol"].map(|id| User::new(id, id));
    let shares = |a: &User, b: &User| {
        let (a, b) = (a.id.clone(), b.id.clone());
        async move { backend.rooms.share_a_room(&a, &b).await.unwrap() }
    };
    assert!(!shares(&ann, &bob).await, "no rooms yet");
    backend
        .rooms
        .add_member(&RoomId::new("r"), &ann)
        .await
        .unwrap();
    backend
        .rooms
        .add_member(&RoomId::new("s"), &ann)
        .await
        .unwrap();
    backend
        .rooms
        .add_member(&RoomId::new("s"), &bob)
        .await
        .unwrap();
    backend
        .rooms
        .add_member(&RoomId::new("r"), &carol)
        .await
        .unwrap();
    assert!(shares(&ann, &bob).await && shares(&bob, &ann).await);
    assert!(shares(&ann, &carol).await);
    assert!(!shares(&bob, &carol).await);
    assert!(!shares(&bob, &User::new("nobody", "n")).await);
    backend
        .rooms
        .remove_member(&RoomId::new("s"), &bob.id)
        .await
        .unwrap();
    assert!(!shares(&ann, &bob).await, "after bob left");
    assert!(shares(&ann, &carol).await);
}

pub(crate) async fn online_is_limited_and_counted(backend: &Backend) {
    let r = RoomId::new("r");
    create(backend, &[("r", 1, Visibility::Public)]).await;
    assert_eq!(backend.presence.online(&r, 5).await.unwrap(), (vec![], 0));
    let node = backend.broker.node_id();
    let users = ["u2", "u3", "u1"].map(|id| User::new(id, &format!("name {id}")));
    for user in &users {
        backend.rooms.add_member(&r, user).await.unwrap();
        backend.presence.enter(&r, user, node).await.unwrap();
    }
    backend.presence.enter(&r, &users[0], node).await.unwrap();
    let (some, total) = backend.presence.online(&r, 2).await.unwrap();
    assert_eq!((some.len(), total), (2, 3));
    assert!(some.iter().all(|u| users.contains(u)) && some[0] != some[1]);
    let (all, total) = backend.presence.online(&r, 3).await.unwrap();
    assert_eq!((all.len(), total), (3, 3));
    let sorted: Vec<&str> = all.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(sorted, ["u1", "u2", "u3"], "all of them, by id");
    assert_eq!(all[0].name, "name u1");
    assert_eq!(backend.presence.online(&r, 0).await.unwrap(), (vec![], 3));
    assert!(backend.presence.exit(&r, &users[1], node).await.unwrap());
    assert_eq!(backend.presence.online(&r, 9).await.unwrap().1, 2);
}

pub(crate) async fn bad_cursors_are_invalid(backend: &Backend) {
    create(
        backend,
        &[("r", 1, Visibility::Public), ("q", 2, Visibility::Public)],
    )
    .await;
    backend
        .rooms
        .add_member(&RoomId::new("r"), &User::new("u", "U"))
        .await
        .unwrap();
    backend
        .rooms
        .add_member(&RoomId::new("r"), &User::new("v", "V"))
        .await
        .unwrap();
    let viewer = UserId::new("u");
    let list_cursor = backend
        .rooms
        .list(&viewer, None, 1)
        .await
        .unwrap()
        .next
        .unwrap();
    let member_cursor = backend
        .rooms
        .members(&RoomId::new("r"), None, 1)
        .await
        .unwrap();
    let member_cursor = member_cursor.next.unwrap();
    let bad = [
        "",
        "x",
        "(",
        "[a",
        "+",
        "-",
        "-1",
        "01",
        "1e3",
        "00000000000000000000|",
        "\u{0}",
    ];
    for cursor in bad.iter().copied().chain([member_cursor.as_str()]) {
        let got = backend.rooms.list(&viewer, Some(cursor), 1).await;
        assert!(
            matches!(got, Err(BackendError::InvalidCursor)),
            "list {cursor:?}: {got:?}"
        );
    }
    for cursor in bad.iter().copied().chain([list_cursor.as_str()]) {
        let got = backend
            .rooms
            .members(&RoomId::new("r"), Some(cursor), 1)
            .await;
        assert!(
            matches!(got, Err(BackendError::InvalidCursor)),
            "members {cursor:?}: {got:?}"
        );
    }
}
