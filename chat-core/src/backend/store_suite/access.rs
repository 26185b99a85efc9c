//! The suite's access records: a user's rooms in batches, and token revocations.

use std::time::Duration;

use super::create;
use crate::{
    backend::{store::Visibility, Backend},
    protocol::{RoomId, User, UserId},
};

pub(crate) async fn user_rooms_come_in_batches_until_none_is_left(backend: &Backend) {
    let ann = User::new("ann", "Ann");
    let rooms = &backend.rooms;
    assert!(rooms.user_rooms(&ann.id, 10).await.unwrap().is_empty());
    create(
        backend,
        &[
            ("r1", 1, Visibility::Public),
            ("r2", 2, Visibility::Private),
            ("r3", 3, Visibility::Public),
        ],
    )
    .await;
    for room in ["r1", "r2", "r3"] {
        assert!(rooms.add_member(&RoomId::new(room), &ann).await.unwrap());
    }
    let mut seen = Vec::new();
    loop {
        let batch = rooms.user_rooms(&ann.id, 2).await.unwrap();
        assert!(batch.len() <= 2);
        if batch.is_empty() {
            break;
        }
        for room in batch {
            assert!(rooms.remove_member(&room, &ann.id).await.unwrap());
            seen.push(room.to_string());
        }
    }
    seen.sort();
    assert_eq!(seen, ["r1", "r2", "r3"]);
}

pub(crate) async fn revocations_are_kept_for_their_ttl(backend: &Backend) {
    let rooms = &backend.rooms;
    let (ann, bo) = (UserId::new("ann"), UserId::new("bo"));
    assert_eq!(rooms.tokens_revoked_until(&ann).await.unwrap(), None);
    let ttl = Duration::from_secs(60);
    rooms.revoke_tokens(&ann, 1_000, ttl).await.unwrap();
    assert_eq!(rooms.tokens_revoked_until(&ann).await.unwrap(), Some(1_000));
    assert_eq!(rooms.tokens_revoked_until(&bo).await.unwrap(), None);
    // A later revocation replaces the earlier.
    rooms.revoke_tokens(&ann, 2_000, ttl).await.unwrap();
    assert_eq!(rooms.tokens_revoked_until(&ann).await.unwrap(), Some(2_000));
    // A record outlives the tokens it voids by nothing: then it is gone.
    let short = Duration::from_millis(50);
    rooms.revoke_tokens(&bo, 3_000, short).await.unwrap();
    assert_eq!(rooms.tokens_revoked_until(&bo).await.unwrap(), Some(3_000));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rooms.tokens_revoked_until(&bo).await.unwrap(), None);
}
