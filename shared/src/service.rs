//! Service names: what scopes a Jetway deployment's resources on NATS.
//!
//! A platform team fronts many MCP servers with one NATS cluster. Each
//! server is a *service*: its own streams, KV buckets, worker consumer and
//! subjects, so two services on one NATS never see each other's sessions.
//! The service called [`DEFAULT`] keeps the plain names (`JETWAY_0`,
//! `jetway.0.>`, `jetway_sessions`); a service `billing` gets its name in
//! every one of them:
//!
//! | what | default service | service `billing` |
//! | --- | --- | --- |
//! | stream of partition 0 | `JETWAY_0` | `JETWAY_BILLING_0` |
//! | stored subjects | `jetway.0.>` | `jetway.billing.0.>` |
//! | live subjects | `jetway-live.0.>` | `jetway-live.billing.0.>` |
//! | probes | `jetway-probe.<nonce>` | `jetway-probe.billing.<nonce>` |
//! | KV buckets | `jetway_sessions`, `jetway_state`, `jetway_claims` | `jetway_billing_sessions`, … |
//!
//! A name starts with a letter, so the token after the root tells a service
//! name from a partition number, and holds no `_`, so bucket names cannot
//! collide.

use std::{fmt, sync::Arc};

/// Name of the service a deployment serves unless configured otherwise.
pub const DEFAULT: &str = "default";
/// Longest service name.
pub const MAX_LEN: usize = 32;

/// A validated service name (cheap to clone).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Service(Arc<str>);

/// Why a configured or requested service name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "service name {0:?} is not valid: 1 to {MAX_LEN} characters, lowercase letters, \
     digits and '-', starting with a letter and not ending with '-'"
)]
pub struct InvalidServiceName(pub String);

impl Service {
    /// Parses a name from config, a URL path or the CLI.
    pub fn parse(name: &str) -> Result<Self, InvalidServiceName> {
        let bytes = name.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= MAX_LEN
            && bytes[0].is_ascii_lowercase()
            && bytes[bytes.len() - 1] != b'-'
            && bytes
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(Self(name.into()))
        } else {
            Err(InvalidServiceName(name.to_owned()))
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// True for the service that keeps the plain names.
    pub fn is_default(&self) -> bool {
        &*self.0 == DEFAULT
    }

    /// The subject tokens between a root and the partition: `""` or `.<name>`.
    fn scope(&self) -> String {
        if self.is_default() {
            String::new()
        } else {
            format!(".{}", self.0)
        }
    }

    /// Prefix of this service's stored subjects (`jetway` or `jetway.<name>`).
    pub fn stored_root(&self) -> String {
        format!("{}{}", crate::subjects::ROOT, self.scope())
    }

    /// Prefix of this service's live (republished) subjects.
    pub fn live_root(&self) -> String {
        format!("{}{}", crate::subjects::LIVE_ROOT, self.scope())
    }

    /// Prefix of this service's probe subjects.
    pub fn probe_root(&self) -> String {
        format!("{}{}", crate::subjects::PROBE_ROOT, self.scope())
    }

    /// Name of the stream holding partition `p`.
    pub fn stream_name(&self, partition: u32) -> String {
        if self.is_default() {
            format!("JETWAY_{partition}")
        } else {
            format!("JETWAY_{}_{partition}", self.0.to_ascii_uppercase())
        }
    }

    /// Name of one of this service's KV buckets (`sessions`, `state`, `claims`).
    pub fn bucket(&self, kind: Bucket) -> String {
        if self.is_default() {
            format!("jetway_{}", kind.suffix())
        } else {
            format!("jetway_{}_{}", self.0, kind.suffix())
        }
    }
}

/// The KV buckets each service owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// One session record per session.
    Sessions,
    /// Application state, keyed `<sid>.<key>`.
    State,
    /// The claim of each running request (entries expire by themselves).
    Claims,
}

impl Bucket {
    fn suffix(self) -> &'static str {
        match self {
            Bucket::Sessions => "sessions",
            Bucket::State => "state",
            Bucket::Claims => "claims",
        }
    }
}

impl Default for Service {
    fn default() -> Self {
        Self(DEFAULT.into())
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Service({})", self.0)
    }
}

impl serde::Serialize for Service {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Service {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Service::parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in [
            "default",
            "billing",
            "b",
            "billing-eu-2",
            "a0123456789012345678901234567890",
        ] {
            assert_eq!(
                Service::parse(good).map(|s| s.to_string()),
                Ok(good.to_owned())
            );
        }
        for bad in [
            "",
            "0billing",
            "Billing",
            "billing_eu",
            "billing.eu",
            "billing-",
            "-billing",
            "bill ing",
            "billing*",
            "a01234567890123456789012345678901",
        ] {
            assert!(Service::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_service_keeps_the_plain_names() {
        let s = Service::default();
        assert!(s.is_default());
        assert_eq!(s.stream_name(0), "JETWAY_0");
        assert_eq!(s.stored_root(), "jetway");
        assert_eq!(s.live_root(), "jetway-live");
        assert_eq!(s.probe_root(), "jetway-probe");
        assert_eq!(s.bucket(Bucket::Sessions), "jetway_sessions");
        assert_eq!(s.bucket(Bucket::State), "jetway_state");
        assert_eq!(s.bucket(Bucket::Claims), "jetway_claims");
    }

    #[test]
    fn a_named_service_has_its_name_everywhere() {
        let s = Service::parse("billing-eu").expect("valid");
        assert_eq!(s.stream_name(3), "JETWAY_BILLING-EU_3");
        assert_eq!(s.stored_root(), "jetway.billing-eu");
        assert_eq!(s.live_root(), "jetway-live.billing-eu");
        assert_eq!(s.probe_root(), "jetway-probe.billing-eu");
        assert_eq!(s.bucket(Bucket::Sessions), "jetway_billing-eu_sessions");
        assert_eq!(s.bucket(Bucket::Claims), "jetway_billing-eu_claims");
    }
}
