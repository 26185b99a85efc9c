//! The suite's room listings: pages, ties, private rooms.

use super::{create, pages_of, room, room_pages};
use crate::{
    backend::{store::Visibility, Backend},
    protocol::{RoomId, User, UserId},
};

const PUBLIC: Visibility = Visibility::Public;
const PRIVATE: Visibility = Visibility::Private;

pub(crate) async fn list_pages_newest_first(backend: &Backend) {
    assert_eq!(room_pages(backend, "ann", 1).await, pages_of(&[&[]]));
    let rooms = [("r2", 2, PUBLIC), ("r1", 1, PUBLIC), ("r4", 4, PUBLIC)];
    create(backend, &rooms).await;
    create(backend, &[("r3", 3, PUBLIC)]).await;
    let by = |limit| room_pages(backend, "ann", limit);
    let each = pages_of(&[&["r4"], &["r3"], &["r2"], &["r1"]]);
    assert_eq!(by(1).await, each);
    assert_eq!(by(2).await, pages_of(&[&["r4", "r3"], &["r2", "r1"]]));
    assert_eq!(by(3).await, pages_of(&[&["r4", "r3", "r2"], &["r1"]]));
    assert_eq!(by(4).await, pages_of(&[&["r4", "r3", "r2", "r1"]]));
    assert_eq!(by(0).await, each, "limit 0 is taken as 1");
    // Creating a room again changes nothing.
    create(backend, &[("r1", 9, PUBLIC)]).await;
    assert_eq!(by(9).await, pages_of(&[&["r4", "r3", "r2", "r1"]]));
    let got = backend.rooms.get(&RoomId::new("r3")).await.unwrap();
    assert_eq!(got, Some(room("r3", 3, PUBLIC)));
    let none = backend.rooms.get(&RoomId::new("none")).await.unwrap();
    assert_eq!(none, None);
}

pub(crate) async fn same_instant_rooms_page_once(backend: &Backend) {
    let rooms = [("old", 1, PUBLIC), ("b", 5, PUBLIC), ("c", 5, PUBLIC)];
    create(backend, &rooms).await;
    create(backend, &[("a", 5, PUBLIC)]).await;
    let viewer = UserId::new("ann");
    let page = |cursor: Option<String>| {
        let viewer = &viewer;
        async move {
            let page = backend.rooms.list(viewer, cursor.as_deref(), 2).await;
            let page = page.unwrap();
            let ids: Vec<String> = page.items.iter().map(|r| r.room_id.to_string()).collect();
            (ids, page.next)
        }
    };
    let (first, next) = page(None).await;
    assert_eq!(first, ["c", "b"], "same instant: by id, descending");
    // Rooms created after the first page was read (newer, or in the same instant) do not
    // make the next pages repeat or skip one.
    let later = [("new", 6, PUBLIC), ("bb", 5, PUBLIC), ("aa", 5, PUBLIC)];
    create(backend, &later).await;
    let (second, next) = page(next).await;
    assert_eq!(second, ["aa", "a"]);
    assert_eq!(page(next).await, (vec!["old".to_string()], None));
}

pub(crate) async fn private_rooms_are_listed_to_members(backend: &Backend) {
    let rooms = [("p1", 1, PUBLIC), ("s1", 2, PRIVATE), ("p2", 3, PUBLIC)];
    create(backend, &rooms).await;
    create(backend, &[("s2", 4, PRIVATE)]).await;
    let (ann, bob) = (User::new("ann", "Ann"), User::new("bob", "Bob"));
    for (room, user) in [("s1", &ann), ("p1", &ann), ("s2", &bob)] {
        let added = backend.rooms.add_member(&RoomId::new(room), user).await;
        assert!(added.unwrap());
    }
    let one_each = |ids: &[&str]| {
        ids.iter()
            .map(|id| vec![id.to_string()])
            .collect::<Vec<_>>()
    };
    assert_eq!(
        room_pages(backend, "ann", 1).await,
        one_each(&["p2", "s1", "p1"])
    );
    assert_eq!(
        room_pages(backend, "bob", 1).await,
        one_each(&["s2", "p2", "p1"])
    );
    assert_eq!(
        room_pages(backend, "carol", 1).await,
        one_each(&["p2", "p1"])
    );
    let s1 = backend
        .rooms
        .get(&RoomId::new("s1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s1.visibility, s1.owner),
        (PRIVATE, Some(UserId::new("ann")))
    );
    let removed = backend
        .rooms
        .remove_member(&RoomId::new("s1"), &ann.id)
        .await;
    assert!(removed.unwrap());
    assert_eq!(room_pages(backend, "ann", 1).await, one_each(&["p2", "p1"]));
}
