//! Identifiers and users: [`RoomId`], [`UserId`], [`MessageId`] and [`User`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string without checking it.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }
    };
}

string_id!(
    /// A room id: a UUID string for rooms created through the API. Client frames may carry
    /// any string; one that names no room is answered with `room_not_found`.
    RoomId
);
string_id!(
    /// A stable, unique user id, set by the host's identity hook (or the guest token).
    UserId
);
string_id!(
    /// A message id: unique within its room (or, for direct messages, globally) and opaque to
    /// clients. Room message ids come from the history append, so their order is the room's order.
    MessageId
);

/// A user: a stable id and a display name (not unique).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": "5f0c9a9e-2d4b-4f1a-8c3e-7b6d5a4c3b21", "name": "alice"})))]
pub struct User {
    /// Stable, unique id.
    pub id: UserId,
    /// Display name.
    pub name: String,
}

impl User {
    /// A user from an id and a display name.
    pub fn new(id: impl Into<UserId>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
        }
    }
}
