//! The suite's memberships: member pages, `share_a_room`, online users, and bad cursors.

use super::{create, pages_of, walk};
use crate::{
    backend::{store::Visibility, Backend},
    error::BackendError,
    protocol::{RoomId, User, UserId},
};

/// Every page of `members` of `room`, `limit` at a time, as user ids.
async fn member_pages(backend: &Backend, room: &str, limit: usize) -> Vec<Vec<String>> {
    let room = &RoomId::new(room);
    let fetch = move |cursor: Option<String>| async move {
        let page = backend.rooms.members(room, cursor.as_deref(), limit);
        page.await.unwrap()
    };
    walk(fetch, |user: User| user.id.to_string()).await
}

pub(crate) async fn members_page_in_join_order(backend: &Backend) {
    let (r, nobody) = (RoomId::new("r"), RoomId::new("none"));
    let add = |user: User| {
        let r = &r;
        async move { backend.rooms.add_member(r, &user).await.unwrap() }
    };
    assert!(!add(User::new("u1", "U1")).await, "no room");
    create(backend, &[("r", 1, Visibility::Public)]).await;
    assert_eq!(member_pages(backend, "r", 2).await, pages_of(&[&[]]));
    for id in ["u3", "u1", "u4", "u2"] {
        assert!(add(User::new(id, id)).await);
    }
    // Joining again refreshes the name and keeps the place.
    assert!(add(User::new("u1", "Uno")).await);
    let by = |limit| member_pages(backend, "r", limit);
    assert_eq!(by(1).await, pages_of(&[&["u3"], &["u1"], &["u4"], &["u2"]]));
    assert_eq!(by(2).await, pages_of(&[&["u3", "u1"], &["u4", "u2"]]));
    assert_eq!(by(3).await, pages_of(&[&["u3", "u1", "u4"], &["u2"]]));
    let first = backend.rooms.members(&r, None, 2).await.unwrap();
    assert_eq!(first.items[1], User::new("u1", "Uno"));
    assert_eq!(backend.rooms.member_count(&r).await.unwrap(), 4);
    // The member a cursor points at leaves: the next page still starts after it.
    let remove = |room: &RoomId, user: &str| {
        let (room, user) = (room.clone(), UserId::new(user));
        async move { backend.rooms.remove_member(&room, &user).await.unwrap() }
    };
    assert!(remove(&r, "u1").await);
    assert!(!remove(&r, "u1").await, "not a member any more");
    assert!(!remove(&nobody, "u2").await, "no such room");
    assert!(!backend
        .rooms
        .is_member(&r, &UserId::new("u1"))
        .await
        .unwrap());
    let rest = backend.rooms.members(&r, first.next.as_deref(), 9).await;
    let rest: Vec<String> = rest
        .unwrap()
        .items
        .into_iter()
        .map(|u| u.id.to_string())
        .collect();
    assert_eq!(rest, ["u4", "u2"]);
    // Joining again after leaving is a new join, at the end.
    assert!(add(User::new("u1", "U1")).await);
    assert_eq!(by(9).await, pages_of(&[&["u3", "u4", "u2", "u1"]]));
    assert_eq!(backend.rooms.member_count(&r).await.unwrap(), 4);
    assert_eq!(backend.rooms.member_count(&nobody).await.unwrap(), 0);
    assert_eq!(member_pages(backend, "none", 1).await, pages_of(&[&[]]));
}

pub(crate) async fn share_a_room_follows_memberships(backend: &Backend) {
    let rooms = [("r", 1, Visibility::Public), ("s", 2, Visibility::Private)];
    create(backend, &rooms).await;
    let shares = |a: &str, b: &str| {
        let (a, b) = (UserId::new(a), UserId::new(b));
        async move { backend.rooms.share_a_room(&a, &b).await.unwrap() }
    };
    assert!(!shares("ann", "bob").await, "no rooms yet");
    for (room, user) in [("r", "ann"), ("s", "ann"), ("s", "bob"), ("r", "carol")] {
        let user = User::new(user, user);
        backend
            .rooms
            .add_member(&RoomId::new(room), &user)
            .await
            .unwrap();
    }
    assert!(shares("ann", "bob").await && shares("bob", "ann").await);
    assert!(shares("ann", "carol").await);
    assert!(!shares("bob", "carol").await);
    assert!(!shares("bob", "nobody").await);
    let bob = UserId::new("bob");
    backend
        .rooms
        .remove_member(&RoomId::new("s"), &bob)
        .await
        .unwrap();
    assert!(!shares("ann", "bob").await, "after bob left");
    assert!(shares("ann", "carol").await);
}

pub(crate) async fn online_is_limited_and_counted(backend: &Backend) {
    let r = RoomId::new("r");
    create(backend, &[("r", 1, Visibility::Public)]).await;
    assert_eq!(backend.presence.online(&r, 5).await.unwrap(), (vec![], 0));
    let node = backend.broker.node_id();
    let users = ["u2", "u3", "u1"].map(|id| User::new(id, format!("name {id}")));
    for (conn, user) in (1..).zip(&users) {
        backend.rooms.add_member(&r, user).await.unwrap();
        backend.presence.enter(&r, user, node, conn).await.unwrap();
    }
    backend
        .presence
        .enter(&r, &users[0], node, 4)
        .await
        .unwrap();
    let (some, total) = backend.presence.online(&r, 2).await.unwrap();
    assert_eq!((some.len(), total), (2, 3));
    assert!(some.iter().all(|u| users.contains(u)) && some[0] != some[1]);
    let (all, total) = backend.presence.online(&r, 3).await.unwrap();
    assert_eq!((all.len(), total), (3, 3));
    let ids: Vec<&str> = all.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["u1", "u2", "u3"], "all of them, by id");
    assert_eq!(all[0].name, "name u1");
    assert_eq!(backend.presence.online(&r, 0).await.unwrap(), (vec![], 3));
    let left = super::user_left(backend, &users[1], &r);
    assert!(backend
        .presence
        .exit(&r, &users[1], node, 2, left)
        .await
        .unwrap());
    assert_eq!(backend.presence.online(&r, 9).await.unwrap().1, 2);
}

pub(crate) async fn bad_cursors_are_invalid(backend: &Backend) {
    let rooms = [("r", 1, Visibility::Public), ("q", 2, Visibility::Public)];
    create(backend, &rooms).await;
    let r = RoomId::new("r");
    for user in ["u", "v"] {
        backend
            .rooms
            .add_member(&r, &User::new(user, user))
            .await
            .unwrap();
    }
    let viewer = UserId::new("u");
    let list_cursor = backend.rooms.list(&viewer, None, 1).await.unwrap().next;
    let member_cursor = backend.rooms.members(&r, None, 1).await.unwrap().next;
    let (list_cursor, member_cursor) = (list_cursor.unwrap(), member_cursor.unwrap());
    let bad = ["", "x", "(", "[a", "+", "-", "-1", "01", "1e3", "\u{0}"];
    let bad = bad.into_iter().chain(["00000000000000000000|"]);
    for cursor in bad.clone().chain([member_cursor.as_str()]) {
        let got = backend.rooms.list(&viewer, Some(cursor), 1).await;
        let invalid = matches!(got, Err(BackendError::InvalidCursor));
        assert!(invalid, "list {cursor:?}: {got:?}");
    }
    for cursor in bad.chain([list_cursor.as_str()]) {
        let got = backend.rooms.members(&r, Some(cursor), 1).await;
        let invalid = matches!(got, Err(BackendError::InvalidCursor));
        assert!(invalid, "members {cursor:?}: {got:?}");
    }
}

pub(crate) async fn the_member_cap_refuses_only_new_members(backend: &Backend) {
    use crate::backend::store::AddMember;
    let r = RoomId::new("capped");
    let add = |id: &'static str| {
        let r = &r;
        async move {
            let user = User::new(id, id);
            backend.rooms.add_member_capped(r, &user, 2).await.unwrap()
        }
    };
    assert_eq!(add("u1").await, AddMember::NoRoom);
    create(backend, &[("capped", 1, Visibility::Public)]).await;
    assert_eq!(add("u1").await, AddMember::Member);
    assert_eq!(add("u2").await, AddMember::Member);
    assert_eq!(add("u3").await, AddMember::Full);
    // A member joins again (a name refresh) at the cap.
    assert_eq!(add("u1").await, AddMember::Member);
    assert_eq!(backend.rooms.member_count(&r).await.unwrap(), 2);
    assert!(!backend
        .rooms
        .is_member(&r, &UserId::new("u3"))
        .await
        .unwrap());
    // Online flags are looked up for the users asked about only.
    let node = backend.broker.node_id();
    let u1 = User::new("u1", "u1");
    backend.presence.enter(&r, &u1, node, 1).await.unwrap();
    let ids = [UserId::new("u2"), UserId::new("u1"), UserId::new("nobody")];
    let flags = backend.presence.are_online(&r, &ids).await.unwrap();
    assert_eq!(flags, [false, true, false]);
    assert!(backend
        .presence
        .are_online(&r, &[])
        .await
        .unwrap()
        .is_empty());
}
