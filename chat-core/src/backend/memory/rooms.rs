//! The memory room store: rooms in creation order, their members, and the users seen.

use std::collections::HashMap;

use super::{ready, MemoryNode};
use crate::{
    backend::{
        store::{RoomInfo, RoomStore},
        Reply,
    },
    protocol::{RoomId, User, UserId},
    sync::lock,
};

#[derive(Default)]
pub(super) struct Rooms {
    order: Vec<RoomId>,
    rooms: HashMap<RoomId, RoomRecord>,
    users: HashMap<UserId, User>,
}

struct RoomRecord {
    info: RoomInfo,
    /// Members in the order they first joined; the value indexes `member_list`.
    members: HashMap<UserId, usize>,
    member_list: Vec<User>,
}

impl RoomRecord {
    /// Adds `user`, or refreshes their display name if they are a member already.
    fn add_member(&mut self, user: &User) {
        match self.members.get(&user.id) {
            Some(&i) => self.member_list[i] = user.clone(),
            None => {
                self.members.insert(user.id.clone(), self.member_list.len());
                self.member_list.push(user.clone());
            }
        }
    }
}

impl MemoryNode {
    /// Reads one room's record under the lock.
    fn with_room<T>(&self, room: &RoomId, read: impl FnOnce(Option<&RoomRecord>) -> T) -> T {
        read(lock(&self.cluster.rooms).rooms.get(room))
    }
}

impl RoomStore for MemoryNode {
    fn create(&self, room: RoomInfo) -> Reply<'_, ()> {
        let mut rooms = lock(&self.cluster.rooms);
        if !rooms.rooms.contains_key(&room.room_id) {
            rooms.order.push(room.room_id.clone());
            rooms.rooms.insert(
                room.room_id.clone(),
                RoomRecord {
                    info: room,
                    members: HashMap::new(),
                    member_list: Vec::new(),
                },
            );
        }
        ready(Ok(()))
    }

    fn get<'a>(&'a self, room: &'a RoomId) -> Reply<'a, Option<RoomInfo>> {
        ready(Ok(self.with_room(room, |r| r.map(|r| r.info.clone()))))
    }

    fn list(&self) -> Reply<'_, Vec<RoomInfo>> {
        let rooms = lock(&self.cluster.rooms);
        let list = rooms
            .order
            .iter()
            .filter_map(|id| rooms.rooms.get(id).map(|r| r.info.clone()))
            .collect();
        ready(Ok(list))
    }

    fn add_member<'a>(&'a self, room: &'a RoomId, user: &'a User) -> Reply<'a, bool> {
        let mut rooms = lock(&self.cluster.rooms);
        let Some(record) = rooms.rooms.get_mut(room) else {
            return ready(Ok(false));
        };
        record.add_member(user);
        rooms.users.insert(user.id.clone(), user.clone());
        ready(Ok(true))
    }

    fn is_member<'a>(&'a self, room: &'a RoomId, user: &'a UserId) -> Reply<'a, bool> {
        ready(Ok(self.with_room(room, |r| {
            r.is_some_and(|r| r.members.contains_key(user))
        })))
    }

    fn members<'a>(&'a self, room: &'a RoomId) -> Reply<'a, Vec<User>> {
        ready(Ok(self.with_room(room, |r| {
            r.map(|r| r.member_list.clone()).unwrap_or_default()
        })))
    }

    fn remember_user<'a>(&'a self, user: &'a User) -> Reply<'a, ()> {
        lock(&self.cluster.rooms)
            .users
            .insert(user.id.clone(), user.clone());
        ready(Ok(()))
    }

    fn user_known<'a>(&'a self, user: &'a UserId) -> Reply<'a, bool> {
        ready(Ok(lock(&self.cluster.rooms).users.contains_key(user)))
    }
}
