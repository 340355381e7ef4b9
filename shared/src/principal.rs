//! [`Principal`]: who a session belongs to when the gateway authenticates
//! its clients (OAuth bearer tokens). Recorded in the session record, never
//! the token itself.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The owner of a session: the token's issuer and subject, and the OAuth
/// client it was issued to (shown to operators; not part of ownership).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub issuer: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl Principal {
    /// True if `other` is the same owner (issuer and subject; the client
    /// may differ: one user, two apps).
    pub fn same_owner(&self, other: &Principal) -> bool {
        self.issuer == other.issuer && self.subject == other.subject
    }
}

/// True if a caller authenticated as `caller` (or anonymous: `None`) may
/// use a session recorded with `owner`. Anonymous sessions belong to
/// anonymous callers only, and the other way round: turning authentication
/// on does not hand the sessions opened without it to every token holder.
pub fn may_use(owner: Option<&Principal>, caller: Option<&Principal>) -> bool {
    match (owner, caller) {
        (None, None) => true,
        (Some(owner), Some(caller)) => owner.same_owner(caller),
        _ => false,
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.subject, self.issuer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(iss: &str, sub: &str, client: Option<&str>) -> Principal {
        Principal {
            issuer: iss.into(),
            subject: sub.into(),
            client_id: client.map(Into::into),
        }
    }

    #[test]
    fn ownership_is_issuer_and_subject() {
        let alice = p("https://idp", "alice", Some("app-1"));
        assert!(may_use(
            Some(&alice),
            Some(&p("https://idp", "alice", Some("app-2")))
        ));
        assert!(!may_use(
            Some(&alice),
            Some(&p("https://idp", "bob", Some("app-1")))
        ));
        assert!(!may_use(
            Some(&alice),
            Some(&p("https://other", "alice", None))
        ));
        assert!(!may_use(Some(&alice), None));
        assert!(!may_use(None, Some(&alice)));
        assert!(may_use(None, None));
    }
}
