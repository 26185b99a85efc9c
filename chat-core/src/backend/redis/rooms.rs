//! The Redis room store: each room's `:info` (name, creation time, visibility, owner, sort
//! key, join counter), `:members` (id -> name) and `:order` (members scored by join number);
//! `P:rooms:public` (the public rooms' sort keys); per user `P:user:{U}:rooms` and `:private`
//! (the sort keys of the user's rooms, and of the private ones) and `:seen` (that the chat has
//! seen the user, with the room TTL). Every listing reads one page (`ZRANGE ... LIMIT`), never
//! a whole set: see `backend::paging`.

use std::time::Duration;

use redis::AsyncCommands;

use super::{micros, RedisNode};
use crate::{
    backend::{
        paging::{self, fetch, split_page},
        store::{AddMember, Page, RoomInfo, RoomStore, Visibility},
        Reply,
    },
    error::BackendError,
    limits::Quota,
    protocol::{RoomId, User, UserId},
};

/// The `:info` fields a [`RoomInfo`] is read from.
const INFO_FIELDS: [&str; 4] = ["name", "createdAt", "visibility", "owner"];

/// Those fields as HMGET returns them.
type InfoFields = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A room from its `:info` fields; `None` if it has none (no such room).
fn room_info(room_id: RoomId, fields: InfoFields) -> Result<Option<RoomInfo>, BackendError> {
    let (Some(name), Some(created_at), visibility, owner) = fields else {
        return Ok(None);
    };
    let visibility = match visibility.as_deref() {
        None | Some("public") => Visibility::Public,
        Some("private") => Visibility::Private,
        Some(other) => {
            return Err(BackendError::Corrupt(format!(
                "room {room_id}: visibility {other:?}"
            )))
        }
    };
    Ok(Some(RoomInfo {
        room_id,
        name,
        created_at,
        visibility,
        owner: owner.map(UserId::new),
    }))
}

/// The string a visibility is stored as.
fn stored(visibility: Visibility) -> &'static str {
    match visibility {
        Visibility::Public => "public",
        Visibility::Private => "private",
    }
}

/// How many times a listing page is read again after removing expired rooms from the indexes.
const GHOST_ROUNDS: usize = 4;

/// A Redis `LIMIT` count for `n` items.
fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl RoomStore for RedisNode {
    fn create(&self, room: RoomInfo) -> Reply<'_, ()> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let mut create = self.shared.scripts.create_room.prepare_invoke();
            create
                .key(keys.room_key(&room.room_id, "info"))
                .key(keys.public_rooms())
                .arg(&room.name)
                .arg(&room.created_at)
                .arg(stored(room.visibility))
                .arg(paging::room_key(&room.room_id, &room.created_at))
                .arg(self.shared.config.room_ttl_ms());
            if let Some(owner) = &room.owner {
                create.arg(owner.as_str());
            }
            let _created: i64 = self.invoke(&create).await?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, room: &'a RoomId) -> Reply<'a, Option<RoomInfo>> {
        Box::pin(async move {
            let fields: InfoFields = self
                .conn()
                .hmget(self.shared.keys.room_key(room, "info"), &INFO_FIELDS)
                .await
                .map_err(BackendError::redis)?;
            room_info(room.clone(), fields)
        })
    }

    fn list<'a>(
        &'a self,
        viewer: &'a UserId,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> Reply<'a, Page<RoomInfo>> {
        Box::pin(async move {
            let below = match cursor {
                Some(cursor) => format!("({}", paging::room_cursor(cursor)?),
                None => "+".to_owned(),
            };
            // Rooms expire (`RedisConfig::room_ttl`) without telling the indexes: a page
            // that met expired rooms removes them from the indexes and is read again, so it
            // is full unless it is the last. Bounded: after a few rounds the page goes out
            // with what it has, and its cursor.
            for _ in 0..GHOST_ROUNDS {
                let (page, ghosts) = self.list_once(viewer, &below, limit).await?;
                if ghosts.is_empty() {
                    return Ok(page);
                }
                let keys = &self.shared.keys;
                let mut pipe = redis::pipe();
                pipe.zrem(keys.public_rooms(), &ghosts)
                    .ignore()
                    .zrem(keys.user_key(viewer, "private"), &ghosts)
                    .ignore();
                let () = pipe
                    .query_async(&mut self.conn())
                    .await
                    .map_err(BackendError::redis)?;
            }
            Ok(self.list_once(viewer, &below, limit).await?.0)
        })
    }

    fn add_member<'a>(&'a self, room: &'a RoomId, user: &'a User) -> Reply<'a, bool> {
        Box::pin(async move { Ok(self.add(room, user, None).await? != AddMember::NoRoom) })
    }

    fn add_member_capped<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        max_members: usize,
    ) -> Reply<'a, AddMember> {
        Box::pin(self.add(room, user, Some(max_members)))
    }

    fn remove_member<'a>(&'a self, room: &'a RoomId, user: &'a UserId) -> Reply<'a, bool> {
        Box::pin(async move {
            let remove = self.membership(&self.shared.scripts.remove_member, room, user);
            let removed: i64 = self.invoke(&remove).await?;
            Ok(removed == 1)
        })
    }

    fn is_member<'a>(&'a self, room: &'a RoomId, user: &'a UserId) -> Reply<'a, bool> {
        Box::pin(async move {
            self.conn()
                .hexists(self.shared.keys.room_key(room, "members"), user.as_str())
                .await
                .map_err(BackendError::redis)
        })
    }

    fn members<'a>(
        &'a self,
        room: &'a RoomId,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> Reply<'a, Page<User>> {
        Box::pin(async move {
            let after = paging::member_cursor(cursor)?;
            let (users, numbers) = self
                .users_with_names(room, "order", after, fetch(limit))
                .await?;
            let numbered: Vec<(u64, User)> = numbers.into_iter().zip(users).collect();
            let page = split_page(numbered, limit, |(n, _)| n.to_string());
            Ok(Page {
                items: page.items.into_iter().map(|(_, u)| u).collect(),
                next: page.next,
            })
        })
    }

    fn member_count<'a>(&'a self, room: &'a RoomId) -> Reply<'a, usize> {
        Box::pin(async move {
            self.conn()
                .hlen(self.shared.keys.room_key(room, "members"))
                .await
                .map_err(BackendError::redis)
        })
    }

    fn share_a_room<'a>(&'a self, a: &'a UserId, b: &'a UserId) -> Reply<'a, bool> {
        Box::pin(self.share_a_live_room(a, b))
    }

    fn remember_user<'a>(&'a self, user: &'a User) -> Reply<'a, ()> {
        Box::pin(async move {
            let _: () = self
                .conn()
                .pset_ex(
                    self.shared.keys.user_seen(&user.id),
                    super::keys::Keys::seen_value(user),
                    self.shared.config.room_ttl_ms(),
                )
                .await
                .map_err(BackendError::redis)?;
            Ok(())
        })
    }

    fn admit_guest<'a>(
        &'a self,
        block: std::net::IpAddr,
        per_minute: u32,
    ) -> Reply<'a, Result<(), Duration>> {
        Box::pin(async move {
            // The same bucket as a user's room creations: `per_minute`, all at once.
            let quota = Quota::per_minute(crate::Limit::Guests, per_minute);
            let bucket = self.shared.keys.guest_bucket(block);
            Ok(self.take_quota_at(bucket, quota).await?.map_or(Ok(()), Err))
        })
    }

    fn take_quota<'a>(&'a self, user: &'a UserId, quota: Quota) -> Reply<'a, ()> {
        Box::pin(async move {
            let bucket = self.shared.keys.quota(user, quota.limit);
            match self.take_quota_at(bucket, quota).await? {
                None => Ok(()),
                Some(retry_after) => Err(BackendError::OverQuota {
                    limit: quota.limit,
                    retry_after,
                }),
            }
        })
    }

    fn user_known<'a>(&'a self, user: &'a UserId) -> Reply<'a, bool> {
        Box::pin(async move {
            // Only when a direct message reached nobody: one round trip, both keys.
            let (seen, before_upgrade): (bool, bool) = redis::pipe()
                .exists(self.shared.keys.user_seen(user))
                .hexists(self.shared.keys.legacy_users(), user.as_str())
                .query_async(&mut self.conn())
                .await
                .map_err(BackendError::redis)?;
            Ok(seen || before_upgrade)
        })
    }

    fn user_rooms<'a>(&'a self, user: &'a UserId, limit: usize) -> Reply<'a, Vec<RoomId>> {
        Box::pin(self.first_user_rooms(user, limit))
    }

    fn revoke_tokens<'a>(&'a self, user: &'a UserId, until: i64, ttl: Duration) -> Reply<'a, ()> {
        Box::pin(self.set_revoked(user, until, ttl))
    }

    fn tokens_revoked_until<'a>(&'a self, user: &'a UserId) -> Reply<'a, Option<i64>> {
        Box::pin(self.get_revoked(user))
    }
}

impl RedisNode {
    /// Takes one token of `quota` from the bucket at `key` (`take_quota.lua`): `None`, or how
    /// long until one is due.
    async fn take_quota_at(
        &self,
        key: String,
        quota: Quota,
    ) -> Result<Option<Duration>, BackendError> {
        let wait_ms: u64 = self
            .invoke(
                self.shared
                    .scripts
                    .take_quota
                    .key(key)
                    .arg(micros(quota.interval))
                    .arg(micros(quota.tolerance())),
            )
            .await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }

    /// One read of a listing page: the rooms, and the sort keys of the expired rooms met.
    async fn list_once(
        &self,
        viewer: &UserId,
        below: &str,
        limit: usize,
    ) -> Result<(Page<RoomInfo>, Vec<String>), BackendError> {
        let keys = &self.shared.keys;
        let n = fetch(limit);
        let mut pipe = redis::pipe();
        for index in [keys.public_rooms(), keys.user_key(viewer, "private")] {
            pipe.cmd("ZRANGE")
                .arg(index)
                .arg(below)
                .arg("-")
                .arg("BYLEX")
                .arg("REV")
                .arg("LIMIT")
                .arg(0)
                .arg(count(n));
        }
        let mut conn = self.conn();
        let (public, private): (Vec<String>, Vec<String>) = pipe
            .query_async(&mut conn)
            .await
            .map_err(BackendError::redis)?;
        let fetched = paging::merge_newest_first(public, private, n);
        // Whether the indexes hold more than was fetched.
        let more = fetched.len() >= n;
        let last_fetched = fetched.last().cloned();
        let ids: Vec<(String, RoomId)> = fetched
            .into_iter()
            .filter_map(|key| {
                let id = paging::room_of_key(&key)?;
                Some((key, id))
            })
            .collect();
        let mut pipe = redis::pipe();
        for (_, id) in &ids {
            pipe.hmget(keys.room_key(id, "info"), &INFO_FIELDS);
        }
        let infos: Vec<InfoFields> = if ids.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn)
                .await
                .map_err(BackendError::redis)?
        };
        let mut live = Vec::with_capacity(ids.len());
        let mut ghosts = Vec::new();
        for ((key, id), fields) in ids.into_iter().zip(infos) {
            match room_info(id, fields)? {
                Some(room) => live.push((key, room)),
                None => ghosts.push(key),
            }
        }
        let mut page = split_page(live, limit, |(key, _)| key.clone());
        if page.next.is_none() && more && !ghosts.is_empty() {
            // Expired rooms hid whether more follow: the next page starts after all that
            // was read (it may be empty; it is never skipped).
            page.next = last_fetched;
        }
        let page = Page {
            items: page.items.into_iter().map(|(_, room)| room).collect(),
            next: page.next,
        };
        Ok((page, ghosts))
    }

    /// `add_member.lua`, within `cap` members if given.
    async fn add(
        &self,
        room: &RoomId,
        user: &User,
        cap: Option<usize>,
    ) -> Result<AddMember, BackendError> {
        let keys = &self.shared.keys;
        let mut add = self.membership(&self.shared.scripts.add_member, room, &user.id);
        add.key(keys.user_seen(&user.id))
            .key(keys.room_key(room, "log"))
            .key(keys.room_key(room, "online"))
            .arg(&user.name)
            .arg(self.shared.config.room_ttl_ms());
        if let Some(cap) = cap {
            add.arg(count(cap));
        }
        Ok(match self.invoke::<i64>(&add).await? {
            1 => AddMember::Member,
            -1 => AddMember::Full,
            _ => AddMember::NoRoom,
        })
    }

    /// A call of a membership script with the keys and argument that `add_member.lua` and
    /// `remove_member.lua` share: the room's info, members and order, the user's rooms and
    /// private rooms; the user id.
    fn membership<'s>(
        &self,
        script: &'s redis::Script,
        room: &RoomId,
        user: &UserId,
    ) -> redis::ScriptInvocation<'s> {
        let keys = &self.shared.keys;
        let mut call = script.prepare_invoke();
        call.key(keys.room_key(room, "info"))
            .key(keys.room_key(room, "members"))
            .key(keys.room_key(room, "order"))
            .key(keys.user_key(user, "rooms"))
            .key(keys.user_key(user, "private"))
            .arg(user.as_str());
        call
    }

    /// At most `n` users of `room` with their names, by `users_with_names.lua`, from the
    /// room's `mode` key: `"order"`, the members after join number `after`, with their join
    /// numbers; `"online"`, some online users, and (one number) how many are online in all.
    pub(super) async fn users_with_names(
        &self,
        room: &RoomId,
        mode: &str,
        after: u64,
        n: usize,
    ) -> Result<(Vec<User>, Vec<u64>), BackendError> {
        let keys = &self.shared.keys;
        let (ids, names, numbers): (Vec<String>, Vec<Option<String>>, Vec<u64>) = self
            .invoke(
                self.shared
                    .scripts
                    .users_with_names
                    .key(keys.room_key(room, mode))
                    .key(keys.room_key(room, "members"))
                    .arg(mode)
                    .arg(after)
                    .arg(count(n)),
            )
            .await?;
        let users = ids
            .into_iter()
            .zip(names)
            .map(|(id, name)| User {
                name: name.unwrap_or_else(|| id.clone()),
                id: UserId::new(id),
            })
            .collect();
        Ok((users, numbers))
    }
}
