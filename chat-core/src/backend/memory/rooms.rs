//! The memory room store: rooms indexed newest first, their members in join order, each user's
//! rooms, and the users seen. The indexes mirror the Redis layout (see `backend::paging`), so
//! that both list in the same order.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    ops::Bound,
    time::{Duration, Instant},
};

use super::{ready, MemoryNode};
use crate::{
    backend::{
        paging::{self, fetch, split_page},
        store::{AddMember, Page, RoomInfo, RoomStore, Visibility},
        Reply,
    },
    protocol::{RoomId, User, UserId},
    sync::lock,
};

#[derive(Default)]
pub(super) struct Rooms {
    pub(super) rooms: HashMap<RoomId, RoomRecord>,
    /// Sort keys of the public rooms.
    public: BTreeSet<String>,
    /// Each user's memberships.
    memberships: HashMap<UserId, Memberships>,
    /// When each user was last seen (a token, a connection, a join) and the name they had
    /// then: known for `room_ttl` since then, then dropped by the sweep.
    pub(super) users: HashMap<UserId, (Instant, String)>,
    /// Token revocations: up to when (Unix ms) a user's tokens are void, and until when the
    /// record is kept (`None`: for good, a lifetime beyond what an `Instant` holds). An
    /// expired record is dropped when it is next read.
    revoked: HashMap<UserId, (i64, Option<Instant>)>,
}

pub(super) struct RoomRecord {
    info: RoomInfo,
    /// The last create, join or presence change (see `expiry`).
    pub(super) active: Instant,
    /// Its place in `list` (`paging::room_key`).
    key: String,
    /// Member -> join number.
    members: HashMap<UserId, u64>,
    /// Join number -> member: the join order, paged by number.
    order: BTreeMap<u64, User>,
    /// The last join number given.
    joins: u64,
}

/// The rooms a user is a member of: all of them (for `share_a_room`) and the sort keys of the
/// private ones (for `list`). Dropped with the user's last membership.
#[derive(Default)]
struct Memberships {
    rooms: HashSet<RoomId>,
    private: BTreeSet<String>,
}

impl Rooms {
    /// Adds `user` to `room`, or refreshes their display name if they are a member already;
    /// a new member only while the room has fewer than `max_members`.
    fn add_member(&mut self, room: &RoomId, user: &User, max_members: usize) -> AddMember {
        let Some(record) = self.rooms.get_mut(room) else {
            return AddMember::NoRoom;
        };
        if !record.members.contains_key(&user.id) && record.members.len() >= max_members {
            return AddMember::Full;
        }
        record.active = Instant::now();
        match record.members.get(&user.id) {
            Some(n) => {
                record.order.insert(*n, user.clone());
            }
            None => {
                record.joins += 1;
                record.members.insert(user.id.clone(), record.joins);
                record.order.insert(record.joins, user.clone());
                let mine = self.memberships.entry(user.id.clone()).or_default();
                mine.rooms.insert(room.clone());
                if record.info.visibility == Visibility::Private {
                    mine.private.insert(record.key.clone());
                }
            }
        }
        self.users
            .insert(user.id.clone(), (Instant::now(), user.name.clone()));
        AddMember::Member
    }

    /// Marks `room` active now (presence changed), if it exists.
    pub(super) fn touch(&mut self, room: &RoomId) {
        if let Some(record) = self.rooms.get_mut(room) {
            record.active = Instant::now();
        }
    }

    /// Deletes a room with its memberships and its place in the listing.
    pub(super) fn delete(&mut self, room: &RoomId) {
        let Some(record) = self.rooms.remove(room) else {
            return;
        };
        self.public.remove(&record.key);
        for user in record.members.keys() {
            if let Some(mine) = self.memberships.get_mut(user) {
                mine.rooms.remove(room);
                mine.private.remove(&record.key);
                if mine.rooms.is_empty() {
                    self.memberships.remove(user);
                }
            }
        }
    }

    /// Ends a membership; `false` if there was none.
    fn remove_member(&mut self, room: &RoomId, user: &UserId) -> bool {
        let Some(record) = self.rooms.get_mut(room) else {
            return false;
        };
        let Some(n) = record.members.remove(user) else {
            return false;
        };
        record.order.remove(&n);
        if let Some(mine) = self.memberships.get_mut(user) {
            mine.rooms.remove(room);
            mine.private.remove(&record.key);
            if mine.rooms.is_empty() {
                self.memberships.remove(user);
            }
        }
        true
    }

    /// What `list` shows `viewer` after `cursor`: public rooms and `viewer`'s private ones,
    /// newest first, at most `n` sort keys.
    fn keys_for(&self, viewer: &UserId, cursor: Option<&str>, n: usize) -> Vec<String> {
        let below = |set: &BTreeSet<String>| -> Vec<String> {
            let end = cursor.map_or(Bound::Unbounded, Bound::Excluded);
            set.range::<str, _>((Bound::Unbounded, end))
                .rev()
                .take(n)
                .cloned()
                .collect()
        };
        let private = self
            .memberships
            .get(viewer)
            .map(|m| below(&m.private))
            .unwrap_or_default();
        paging::merge_newest_first(below(&self.public), private, n)
    }
}

impl MemoryNode {
    /// Reads one room's record under the lock.
    fn with_room<T>(&self, room: &RoomId, read: impl FnOnce(Option<&RoomRecord>) -> T) -> T {
        read(lock(&self.cluster.rooms).rooms.get(room))
    }

    /// Whether `user` was seen within the room TTL (`RoomStore::user_known`).
    pub(super) fn knows(&self, user: &UserId) -> bool {
        let ttl = self.cluster.config.room_ttl;
        let rooms = lock(&self.cluster.rooms);
        rooms
            .users
            .get(user)
            .is_some_and(|(at, _)| at.elapsed() < ttl)
    }

    /// The name `user` had when last seen, if within the room TTL.
    pub(super) fn name_of(&self, user: &UserId) -> Option<String> {
        let ttl = self.cluster.config.room_ttl;
        let rooms = lock(&self.cluster.rooms);
        let (at, name) = rooms.users.get(user)?;
        (at.elapsed() < ttl).then(|| name.clone())
    }
}

impl RoomStore for MemoryNode {
    fn create(&self, room: RoomInfo) -> Reply<'_, ()> {
        self.sweep_if_due();
        let mut rooms = lock(&self.cluster.rooms);
        if !rooms.rooms.contains_key(&room.room_id) {
            let key = paging::room_key(&room.room_id, &room.created_at);
            if room.visibility == Visibility::Public {
                rooms.public.insert(key.clone());
            }
            rooms.rooms.insert(
                room.room_id.clone(),
                RoomRecord {
                    info: room,
                    active: Instant::now(),
                    key,
                    members: HashMap::new(),
                    order: BTreeMap::new(),
                    joins: 0,
                },
            );
        }
        ready(Ok(()))
    }

    fn get<'a>(&'a self, room: &'a RoomId) -> Reply<'a, Option<RoomInfo>> {
        self.sweep_if_due();
        self.expire_if_idle(room);
        ready(Ok(self.with_room(room, |r| r.map(|r| r.info.clone()))))
    }

    fn list<'a>(
        &'a self,
        viewer: &'a UserId,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> Reply<'a, Page<RoomInfo>> {
        let cursor = match cursor.map(paging::room_cursor).transpose() {
            Ok(cursor) => cursor,
            Err(err) => return ready(Err(err)),
        };
        self.sweep_if_due();
        let rooms = lock(&self.cluster.rooms);
        let keys = rooms.keys_for(viewer, cursor, fetch(limit));
        let page = split_page(keys, limit, String::clone);
        let items = page
            .items
            .iter()
            .filter_map(|key| rooms.rooms.get(&paging::room_of_key(key)?))
            .map(|r| r.info.clone())
            .collect();
        ready(Ok(Page {
            items,
            next: page.next,
        }))
    }

    fn add_member<'a>(&'a self, room: &'a RoomId, user: &'a User) -> Reply<'a, bool> {
        let added = lock(&self.cluster.rooms).add_member(room, user, usize::MAX);
        ready(Ok(added != AddMember::NoRoom))
    }

    fn add_member_capped<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        max_members: usize,
    ) -> Reply<'a, AddMember> {
        ready(Ok(lock(&self.cluster.rooms).add_member(
            room,
            user,
            max_members,
        )))
    }

    fn remove_member<'a>(&'a self, room: &'a RoomId, user: &'a UserId) -> Reply<'a, bool> {
        ready(Ok(lock(&self.cluster.rooms).remove_member(room, user)))
    }

    fn is_member<'a>(&'a self, room: &'a RoomId, user: &'a UserId) -> Reply<'a, bool> {
        ready(Ok(self.with_room(room, |r| {
            r.is_some_and(|r| r.members.contains_key(user))
        })))
    }

    fn members<'a>(
        &'a self,
        room: &'a RoomId,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> Reply<'a, Page<User>> {
        let after = match paging::member_cursor(cursor) {
            Ok(after) => after,
            Err(err) => return ready(Err(err)),
        };
        let numbered: Vec<(u64, User)> = self.with_room(room, |r| {
            r.map(|r| {
                r.order
                    .range(after.saturating_add(1)..)
                    .take(fetch(limit))
                    .map(|(n, u)| (*n, u.clone()))
                    .collect()
            })
            .unwrap_or_default()
        });
        let page = split_page(numbered, limit, |(n, _)| n.to_string());
        ready(Ok(Page {
            items: page.items.into_iter().map(|(_, u)| u).collect(),
            next: page.next,
        }))
    }

    fn member_count<'a>(&'a self, room: &'a RoomId) -> Reply<'a, usize> {
        ready(Ok(
            self.with_room(room, |r| r.map_or(0, |r| r.members.len()))
        ))
    }

    fn share_a_room<'a>(&'a self, a: &'a UserId, b: &'a UserId) -> Reply<'a, bool> {
        let common: Vec<RoomId> = {
            let rooms = lock(&self.cluster.rooms);
            match (rooms.memberships.get(a), rooms.memberships.get(b)) {
                (Some(a), Some(b)) => {
                    // Look the smaller side up in the larger: O(the smaller side).
                    let (small, large) = if a.rooms.len() <= b.rooms.len() {
                        (a, b)
                    } else {
                        (b, a)
                    };
                    small
                        .rooms
                        .iter()
                        .filter(|r| large.rooms.contains(*r))
                        .cloned()
                        .collect()
                }
                _ => Vec::new(),
            }
        };
        // As `get` does: a common room that is idle past its TTL is deleted now rather than
        // at the next sweep, so an expired room never lets its former members keep messaging
        // each other. The first one still there answers.
        let shared = common.iter().any(|room| {
            self.expire_if_idle(room);
            lock(&self.cluster.rooms).rooms.contains_key(room)
        });
        ready(Ok(shared))
    }

    fn remember_user<'a>(&'a self, user: &'a User) -> Reply<'a, ()> {
        // Guests that only ever get a token still age out: the sweep runs from here too.
        self.sweep_if_due();
        lock(&self.cluster.rooms)
            .users
            .insert(user.id.clone(), (Instant::now(), user.name.clone()));
        ready(Ok(()))
    }

    fn user_known<'a>(&'a self, user: &'a UserId) -> Reply<'a, bool> {
        ready(Ok(self.knows(user)))
    }

    fn admit_guest<'a>(
        &'a self,
        block: std::net::IpAddr,
        per_minute: u32,
    ) -> Reply<'a, Result<(), Duration>> {
        ready(Ok(self.cluster.limits.check(block, per_minute)))
    }

    fn take_quota<'a>(&'a self, user: &'a UserId, quota: crate::Quota) -> Reply<'a, ()> {
        ready(self.take_quota_now(user, quota))
    }

    fn user_rooms<'a>(&'a self, user: &'a UserId, limit: usize) -> Reply<'a, Vec<RoomId>> {
        let rooms = lock(&self.cluster.rooms);
        let mine = rooms.memberships.get(user).map(|m| &m.rooms);
        let batch = mine.into_iter().flatten().take(limit.max(1)).cloned();
        ready(Ok(batch.collect()))
    }

    fn revoke_tokens<'a>(&'a self, user: &'a UserId, until: i64, ttl: Duration) -> Reply<'a, ()> {
        let kept_until = Instant::now().checked_add(ttl);
        lock(&self.cluster.rooms)
            .revoked
            .insert(user.clone(), (until, kept_until));
        ready(Ok(()))
    }

    fn tokens_revoked_until<'a>(&'a self, user: &'a UserId) -> Reply<'a, Option<i64>> {
        let mut rooms = lock(&self.cluster.rooms);
        let until = match rooms.revoked.get(user) {
            Some((_, Some(kept_until))) if *kept_until <= Instant::now() => {
                rooms.revoked.remove(user);
                None
            }
            Some((until, _)) => Some(*until),
            None => None,
        };
        ready(Ok(until))
    }
}
