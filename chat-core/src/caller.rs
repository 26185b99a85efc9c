//! [`Caller`]: who is asking, as the policy sees it.

use serde::{Deserialize, Serialize};

use crate::protocol::User;

/// Who a request or connection comes from: the user, and whether it is a guest (a user the
/// chat made up for a display name, not one the host identified).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The user.
    pub user: User,
    /// A guest: identified only by a token the chat issued for a display name.
    pub guest: bool,
}

/// A user the host identified (not a guest).
impl From<User> for Caller {
    fn from(user: User) -> Self {
        Self::member(user)
    }
}

impl Caller {
    /// A user the host identified.
    pub fn member(user: User) -> Self {
        Self { user, guest: false }
    }

    /// A guest.
    pub fn guest(user: User) -> Self {
        Self { user, guest: true }
    }
}
