//! [`Introspector`]: opaque bearer tokens, checked with the issuer's RFC 7662
//! introspection endpoint (`auth_introspection_url`).
//!
//! The gateway posts `token=…` with its own client credentials (HTTP Basic)
//! and accepts the token only when the answer is `active`, names a subject,
//! is for this resource (`aud`), from the configured issuer (`iss`, when
//! present) and within `exp`/`nbf` (with the leeway). An active answer is
//! reused for `auth_introspection_cache_secs`, never past the token's
//! `exp`; the cache is keyed by a SHA-256 of resource and token (the token
//! itself is kept nowhere) and bounded. A refused token is not cached.

use super::{Caller, scopes_of, settings::Introspection};
use jetway_shared::principal::Principal;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Answers kept at most; past it, expired ones go first, then all.
const CACHE_ENTRIES: usize = 10_000;

/// Why an opaque token is refused, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum IntrospectionError {
    #[error("the introspection endpoint cannot be reached")]
    Unavailable(#[source] reqwest::Error),
    #[error("the introspection endpoint answered HTTP {0}")]
    Status(u16),
    #[error("the introspection endpoint's answer is not RFC 7662 JSON")]
    Answer(#[source] reqwest::Error),
    #[error("the token is not active")]
    Inactive,
    #[error("{0}")]
    Refused(&'static str),
}

impl IntrospectionError {
    /// True when the token could not be checked (it may be fine).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Status(_) | Self::Answer(_)
        )
    }
}

/// An RFC 7662 answer: the members Jetway reads.
#[derive(Deserialize)]
struct Answer {
    active: bool,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, want: &str) -> bool {
        match self {
            Self::One(a) => a == want,
            Self::Many(l) => l.iter().any(|a| a == want),
        }
    }
}

pub struct Introspector {
    cfg: Introspection,
    http: reqwest::Client,
    cache: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
}

impl Introspector {
    pub fn new(cfg: Introspection, timeout: Duration) -> Result<Self, reqwest::Error> {
        jetway_shared::tls::install_crypto_provider();
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self {
            cfg,
            http,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Checks `token` for `audience`; `issuer` and `leeway` as for JWTs.
    pub async fn check(
        &self,
        token: &str,
        audience: &str,
        issuer: &str,
        leeway: Duration,
    ) -> Result<Caller, IntrospectionError> {
        let key = cache_key(audience, token);
        if let Some(caller) = self.cached(&key) {
            return Ok(caller);
        }
        let mut req = self
            .http
            .post(&self.cfg.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")]);
        if let Some(id) = &self.cfg.client_id {
            req = req.basic_auth(id, self.cfg.client_secret.as_deref());
        }
        let resp = req.send().await.map_err(IntrospectionError::Unavailable)?;
        if !resp.status().is_success() {
            return Err(IntrospectionError::Status(resp.status().as_u16()));
        }
        let answer: Answer = resp.json().await.map_err(IntrospectionError::Answer)?;
        let now = unix_now();
        let (caller, exp) = accept(answer, audience, issuer, leeway, now)?;
        let mut ttl = self.cfg.cache_for;
        if let Some(exp) = exp {
            ttl = ttl.min(Duration::from_secs(exp.saturating_sub(now)));
        }
        self.remember(key, caller.clone(), ttl);
        Ok(caller)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Caller> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.get(key) {
            Some((caller, until)) if *until > Instant::now() => Some(caller.clone()),
            _ => None,
        }
    }

    fn remember(&self, key: [u8; 32], caller: Caller, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (caller, now + ttl));
    }
}

/// True when `token` has the shape of a JWS (three dot-separated parts):
/// such tokens are verified locally, everything else is introspected.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

fn cache_key(audience: &str, token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(audience.as_bytes());
    h.update([0]);
    h.update(token.as_bytes());
    h.finalize().into()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The checks of one answer, at unix time `now`: the caller and the
/// token's `exp`.
fn accept(
    a: Answer,
    audience: &str,
    issuer: &str,
    leeway: Duration,
    now: u64,
) -> Result<(Caller, Option<u64>), IntrospectionError> {
    use IntrospectionError::{Inactive, Refused};
    if !a.active {
        return Err(Inactive);
    }
    let leeway = leeway.as_secs();
    if a.exp.is_some_and(|exp| exp.saturating_add(leeway) < now) {
        return Err(Refused("the token has expired"));
    }
    if a.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(Refused("the token is not valid yet"));
    }
    if a.iss.as_deref().is_some_and(|iss| iss != issuer) {
        return Err(Refused("the token is from another issuer"));
    }
    if !a.aud.as_ref().is_some_and(|aud| aud.contains(audience)) {
        return Err(Refused("the token is not meant for this resource (aud)"));
    }
    let Some(subject) = a.sub.filter(|s| !s.is_empty()) else {
        return Err(Refused("the introspection answer names no subject (sub)"));
    };
    let caller = Caller {
        principal: Some(Principal {
            issuer: issuer.to_owned(),
            subject,
            client_id: a.client_id,
        }),
        scopes: scopes_of(a.scope.as_deref(), None),
    };
    Ok((caller, a.exp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AUD: &str = "https://mcp.example.com/mcp";
    const ISS: &str = "https://issuer.example.com";
    const NOW: u64 = 1_800_000_000;

    fn check(answer: serde_json::Value) -> Result<Caller, String> {
        let a: Answer = serde_json::from_value(answer).map_err(|e| e.to_string())?;
        accept(a, AUD, ISS, Duration::from_secs(30), NOW)
            .map(|(c, _)| c)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn answers_are_accepted_only_when_every_check_holds() {
        let ok = json!({"active": true, "sub": "alice", "aud": [AUD, "other"],
                        "iss": ISS, "exp": NOW + 60, "scope": "mcp:tools read",
                        "client_id": "app"});
        let caller = check(ok.clone()).expect("accepted");
        let p = caller.principal.expect("principal");
        assert_eq!((p.subject.as_str(), p.issuer.as_str()), ("alice", ISS));
        assert_eq!(p.client_id.as_deref(), Some("app"));
        assert!(caller.scopes.contains("mcp:tools") && caller.scopes.contains("read"));

        let with = |k: &str, v: serde_json::Value| {
            let mut a = ok.clone();
            a[k] = v;
            check(a).expect_err("refused")
        };
        assert_eq!(with("active", json!(false)), "the token is not active");
        assert_eq!(with("exp", json!(NOW - 31)), "the token has expired");
        assert!(
            check({
                let mut a = ok.clone();
                a["exp"] = json!(NOW - 29);
                a
            })
            .is_ok()
        );
        assert_eq!(with("nbf", json!(NOW + 31)), "the token is not valid yet");
        assert_eq!(
            with("iss", json!("https://evil")),
            "the token is from another issuer"
        );
        assert_eq!(
            with("aud", json!("https://mcp.example.com/other")),
            "the token is not meant for this resource (aud)"
        );
        assert_eq!(
            with("sub", json!("")),
            "the introspection answer names no subject (sub)"
        );
        let mut no_aud = ok.clone();
        no_aud.as_object_mut().map(|o| o.remove("aud"));
        assert_eq!(
            check(no_aud).expect_err("refused"),
            "the token is not meant for this resource (aud)"
        );
        // An answer without `iss` is the configured issuer's.
        let mut no_iss = ok;
        no_iss.as_object_mut().map(|o| o.remove("iss"));
        assert!(check(no_iss).is_ok());
    }

    #[test]
    fn only_three_part_tokens_are_taken_for_jwts() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("2YotnFZFEjr1zCsicMWpAA"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d.e"));
    }

    #[test]
    fn the_cache_key_depends_on_resource_and_token() {
        assert_ne!(cache_key(AUD, "t"), cache_key("https://x/mcp", "t"));
        assert_ne!(cache_key(AUD, "t"), cache_key(AUD, "u"));
        assert_eq!(cache_key(AUD, "t"), cache_key(AUD, "t"));
    }
}
