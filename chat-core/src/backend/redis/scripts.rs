//! The Lua scripts: each makes one multi-key change atomic (and one round trip). Their text
//! is in `scripts/*.lua` (KEYS and ARGV documented at the top of each), included at compile
//! time.

use redis::{aio::ConnectionManager, Script};

use crate::error::BackendError;

/// Declares [`Scripts`] with one field per script, and `all()` to load them. A script is one
/// file, or several (`"a.lua", "b.lua"`: the first ones define what the last one uses).
macro_rules! scripts {
    ($($(#[$doc:meta])* $name:ident = $($file:literal),+;)*) => {
        pub(super) struct Scripts {
            $($(#[$doc])* pub(super) $name: Script,)*
        }

        impl Scripts {
            pub(super) fn new() -> Self {
                Self { $($name: Script::new(concat!($(include_str!($file)),+)),)* }
            }

            fn all(&self) -> impl Iterator<Item = &Script> {
                [$(&self.$name),*].into_iter()
            }
        }
    };
}

scripts! {
    /// XADD a room message, then PUBLISH its frame with the entry id spliced in.
    append_publish = "scripts/gcra.lua", "scripts/append_publish.lua";
    /// PUBLISH a direct message, and the sender's copy where a tab can get it.
    direct = "scripts/gcra.lua", "scripts/direct.lua";
    /// PUBLISH the direct messages held for a user who was offline, and forget them.
    release_held = "scripts/release_held.lua";
    /// One more connection of a user in a room on a node (idempotent).
    enter = "scripts/enter.lua";
    /// One connection less, and `user_left` if it was the user's last (idempotent).
    exit = "scripts/exit.lua";
    /// A node's connections in one room made what the node has (reconcile; reap: none).
    sync = "scripts/sync.lua";
    /// A reaped node forgotten, unless it came back; its reaper's claim released.
    forget_node = "scripts/forget_node.lua";
    /// A node's reaped mark cleared by a whole reconcile, unless a reap touched it meanwhile.
    answered_reap = "scripts/answered_reap.lua";
    /// A room, unless it exists, into the public index if public.
    create_room = "scripts/create_room.lua";
    /// A member into an existing room.
    add_member = "scripts/add_member.lua";
    /// A member out of a room, and the room out of the user's rooms.
    remove_member = "scripts/remove_member.lua";
    /// A page of a room's members, or some of its online users, with their names.
    users_with_names = "scripts/users_with_names.lua";
    /// One token of a bucket for every instance: a user's joins or room creations, guests
    /// from one client address.
    take_quota = "scripts/gcra.lua", "scripts/take_quota.lua";
    /// A node's count of a user's open WebSockets, checked against the user's on every live
    /// node when one opens.
    sockets = "scripts/sockets.lua";
    /// A page of a user's conversations (the other users by their last message's time).
    conversations = "scripts/conversations.lua";
}

impl Scripts {
    /// SCRIPT LOAD of every script, so that the first message is not the one paying for
    /// NOSCRIPT and a reload (a restarted Redis forgets them; the redis crate reloads on
    /// NOSCRIPT).
    pub(super) async fn load_all(&self, conn: &mut ConnectionManager) -> Result<(), BackendError> {
        for script in self.all() {
            let _: String = script
                .prepare_invoke()
                .load_async(conn)
                .await
                .map_err(BackendError::redis)?;
        }
        Ok(())
    }
}
