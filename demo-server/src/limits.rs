//! The per-user limit flags: each sets one [`ChatConfig`] field (whose doc states its
//! default) and also reads the environment variable named beside it.

use anyhow::Context as _;
use chat_tower::chat_core::ChatConfig;

/// Flag, environment variable, and what it sets.
pub(crate) const FLAGS: &[(&str, &str, &str)] = &[
    (
        "--user-messages-per-second",
        "USER_MESSAGES_PER_SECOND",
        "room messages a second per user (default 20)",
    ),
    (
        "--user-messages-burst",
        "USER_MESSAGES_BURST",
        "room messages in a burst per user (default 40)",
    ),
    (
        "--user-joins-per-second",
        "USER_JOINS_PER_SECOND",
        "joins a second per user, WebSocket and REST (default 10)",
    ),
    (
        "--user-joins-burst",
        "USER_JOINS_BURST",
        "joins in a burst per user (default 20)",
    ),
    (
        "--join-replay-per-token",
        "JOIN_REPLAY_PER_TOKEN",
        "a join with `since` costs one join more per this many replayed messages (default 50)",
    ),
    (
        "--user-directs-per-second",
        "USER_DIRECTS_PER_SECOND",
        "direct messages a second per user (default 10)",
    ),
    (
        "--user-directs-burst",
        "USER_DIRECTS_BURST",
        "direct messages in a burst per user (default 20)",
    ),
    (
        "--held-directs-per-user",
        "HELD_DIRECTS_PER_USER",
        "direct messages kept for a user who is offline, delivered when they connect (default 200; 0: refused with recipient_offline)",
    ),
    (
        "--held-directs-per-sender",
        "HELD_DIRECTS_PER_SENDER",
        "of those, how many may come from one sender (default 20)",
    ),
    (
        "--held-directs-from-guests",
        "HELD_DIRECTS_FROM_GUESTS",
        "of those, how many may come from guests altogether (default 50; every demo user is a guest, so this is the demo's inbox; 0: none)",
    ),
    (
        "--user-rooms-per-minute",
        "USER_ROOMS_PER_MINUTE",
        "rooms a user may create a minute (default 10)",
    ),
    (
        "--guests-per-minute",
        "GUESTS_PER_MINUTE",
        "guests one client address may create a minute (default 30; see --trusted-proxies)",
    ),
    (
        "--shared-user-limits",
        "SHARED_USER_LIMITS",
        "1 (default): the per-user limits (messages, joins, directs, rooms, WebSockets) count for every instance on the Redis; 0: per instance only",
    ),
    (
        "--max-connections-per-user",
        "MAX_CONNECTIONS_PER_USER",
        "open WebSockets per user (default 32)",
    ),
    (
        "--frame-rate-per-second",
        "FRAME_RATE_PER_SECOND",
        "frames a second one connection may send before its reads are paced (default 50)",
    ),
    (
        "--frame-burst",
        "FRAME_BURST",
        "frames in a burst per connection (default 100)",
    ),
];

/// The flag `name` if it is one of [`FLAGS`].
pub(crate) fn flag(name: &str) -> Option<&'static str> {
    FLAGS
        .iter()
        .map(|(flag, _, _)| *flag)
        .find(|flag| *flag == name)
}

/// The limits set through the environment, as `(flag, value)`.
pub(crate) fn from_env() -> Vec<(&'static str, String)> {
    FLAGS
        .iter()
        .filter_map(|(flag, var, _)| {
            let value = std::env::var(var).ok().filter(|s| !s.is_empty())?;
            Some((*flag, value))
        })
        .collect()
}

/// The help text's lines for these flags.
pub(crate) fn usage() -> String {
    FLAGS
        .iter()
        .map(|(flag, var, what)| format!("  {flag} N ({var}): {what}\n"))
        .collect()
}

/// Flags that accept 0: holding off (`--held-directs-per-user`: `recipient_offline`), no
/// guest's message held (`--held-directs-from-guests`: `inbox_full`), limits per instance only
/// (`--shared-user-limits`).
const ZERO_IS_OFF: &[&str] = &[
    "--held-directs-per-user",
    "--held-directs-from-guests",
    "--shared-user-limits",
];

/// Sets what `flag` names in `config` to `value` (a whole number, at least 1; at least 0 for
/// [`ZERO_IS_OFF`]).
pub(crate) fn apply(config: &mut ChatConfig, flag: &str, value: &str) -> anyhow::Result<()> {
    let least = u32::from(!ZERO_IS_OFF.contains(&flag));
    let n: u32 = value
        .parse()
        .ok()
        .filter(|n| *n >= least)
        .with_context(|| format!("bad {flag} {value} (a whole number, at least {least})"))?;
    let size = n as usize;
    match flag {
        "--user-messages-per-second" => config.user_messages_per_second = n,
        "--user-messages-burst" => config.user_messages_burst = n,
        "--user-joins-per-second" => config.user_joins_per_second = n,
        "--user-joins-burst" => config.user_joins_burst = n,
        "--join-replay-per-token" => config.join_replay_per_token = size,
        "--user-directs-per-second" => config.user_directs_per_second = n,
        "--user-directs-burst" => config.user_directs_burst = n,
        "--held-directs-per-user" => config.held_directs_per_user = size,
        "--held-directs-per-sender" => config.held_directs_per_sender = size,
        "--held-directs-from-guests" => config.held_directs_from_guests = size,
        "--user-rooms-per-minute" => config.user_rooms_per_minute = n,
        "--guests-per-minute" => config.guests_per_minute = n,
        "--shared-user-limits" => config.shared_user_limits = n != 0,
        "--max-connections-per-user" => config.max_connections_per_user = size,
        "--frame-rate-per-second" => config.rate_per_second = n,
        "--frame-burst" => config.rate_burst = n,
        other => anyhow::bail!("{other} is not a limit flag"),
    }
    Ok(())
}
