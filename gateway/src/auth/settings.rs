//! [`AuthConfig`]: the OAuth resource-server settings, read from the
//! `auth_*` keys and `public_url` (defined in
//! `jetway_shared::config::settings::GATEWAY`).

use jetway_shared::config::Fields;
use jsonwebtoken::Algorithm;
use std::{str::FromStr, time::Duration};

/// How the gateway checks bearer tokens; `None` in `Config` means auth is off.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    /// The `iss` tokens must carry, and where keys are discovered.
    pub issuer: String,
    /// The JWKS URL; `None`: from the issuer's metadata.
    pub jwks_url: Option<String>,
    /// The `aud` tokens must carry; `None`: the resource URL of the path.
    pub audience: Option<String>,
    /// `public_url` without a trailing slash.
    pub public_url: String,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    /// Needed by every request.
    pub scopes: Vec<String>,
    /// `(method, scope)` pairs.
    pub method_scopes: Vec<(String, String)>,
    /// `(tool, scope)` pairs.
    pub tool_scopes: Vec<(String, String)>,
    pub jwks_refresh: Duration,
    pub fetch_timeout: Duration,
    /// Opaque tokens through RFC 7662; `None`: only JWTs are accepted.
    pub introspection: Option<Introspection>,
}

/// Where and as whom the gateway introspects opaque tokens.
#[derive(Clone, PartialEq)]
pub struct Introspection {
    pub url: String,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub cache_for: Duration,
}

impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspection")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<hidden>"),
            )
            .field("cache_for", &self.cache_for)
            .finish()
    }
}

/// Every asymmetric algorithm `jsonwebtoken` verifies: the default list.
pub const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Reads the auth settings; `None` when `auth_issuer` is unset (auth off).
/// Problems (a bad algorithm, a missing `public_url`) go to `f`.
pub fn load(f: &mut Fields) -> Option<AuthConfig> {
    let public_url: Option<String> = f.get("public_url", None);
    let issuer: Option<String> = f.get("auth_issuer", None);
    let jwks_url: Option<String> = f.get("auth_jwks_url", None);
    let audience: Option<String> = f.get("auth_audience", None);
    let names = f.get_list(
        "auth_algorithms",
        ASYMMETRIC.iter().map(|a| format!("{a:?}")).collect(),
    );
    let leeway = Duration::from_secs(f.get("auth_leeway_secs", 30));
    let scopes = f.get_list("auth_scopes", Vec::new());
    let method_scopes = pairs(f, "auth_method_scopes");
    let tool_scopes = pairs(f, "auth_tool_scopes");
    let jwks_refresh = Duration::from_secs(f.get("auth_jwks_refresh_secs", 300));
    let fetch_timeout = Duration::from_millis(f.get("auth_fetch_timeout_ms", 5000));
    let introspection = introspection(f);

    let mut algorithms = Vec::new();
    for name in &names {
        match Algorithm::from_str(name) {
            Ok(a) if ASYMMETRIC.contains(&a) => algorithms.push(a),
            Ok(_) => f.problem(format!(
                "auth_algorithms: {name} is symmetric; only public-key algorithms are accepted"
            )),
            Err(_) => f.problem(format!("auth_algorithms: {name} is not a JWS algorithm")),
        }
    }
    if let Some(url) = &public_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        f.problem(format!("public_url: {url:?} is not an http(s) URL"));
    }
    let issuer = issuer?;
    let Some(public_url) = public_url else {
        f.problem("public_url: required when auth_issuer is set (it names the protected resource)");
        return None;
    };
    if algorithms.is_empty() && names.is_empty() {
        f.problem("auth_algorithms: name at least one algorithm");
    }
    if fetch_timeout.is_zero() {
        f.problem("auth_fetch_timeout_ms: must be greater than 0");
    }
    Some(AuthConfig {
        issuer,
        jwks_url,
        audience,
        public_url: public_url.trim_end_matches('/').to_owned(),
        algorithms,
        leeway,
        scopes,
        method_scopes,
        tool_scopes,
        jwks_refresh,
        fetch_timeout,
        introspection,
    })
}

/// The `auth_introspection_*` settings; `None` without a URL.
fn introspection(f: &mut Fields) -> Option<Introspection> {
    let url: Option<String> = f.get("auth_introspection_url", None);
    let client_id: Option<String> = f.get("auth_introspection_client_id", None);
    let client_secret: Option<String> = f.get("auth_introspection_client_secret", None);
    let cache_for = Duration::from_secs(f.get("auth_introspection_cache_secs", 60));
    let Some(url) = url else {
        if client_id.is_some() || client_secret.is_some() {
            f.problem("auth_introspection_client_id/secret: set auth_introspection_url too");
        }
        return None;
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        f.problem(format!(
            "auth_introspection_url: {url:?} is not an http(s) URL"
        ));
    }
    if client_secret.is_some() && client_id.is_none() {
        f.problem("auth_introspection_client_secret: set auth_introspection_client_id too");
    }
    Some(Introspection {
        url,
        client_id,
        client_secret,
        cache_for,
    })
}

/// A list of `name=scope` items.
fn pairs(f: &mut Fields, key: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for item in f.get_list(key, Vec::new()) {
        match item.split_once('=') {
            Some((name, scope)) if !name.trim().is_empty() && !scope.trim().is_empty() => {
                out.push((name.trim().to_owned(), scope.trim().to_owned()));
            }
            _ => f.problem(format!("{key}: {item:?} is not `name=scope`")),
        }
    }
    out
}
