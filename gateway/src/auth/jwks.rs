//! [`Jwks`]: the issuer's signing keys, fetched over HTTP and cached.
//!
//! The JWKS URL is configured or discovered once from the issuer's metadata
//! (RFC 8414 `/.well-known/oauth-authorization-server`, then OpenID
//! Connect's `/.well-known/openid-configuration`). Keys are fetched again
//! when they are older than `auth_jwks_refresh_secs`, and at once when a
//! token names a `kid` the cache lacks (a key rotation), at most every
//! [`MIN_REFETCH`] so that tokens with made-up `kid`s cannot make the
//! gateway hammer the issuer. A failed fetch keeps the keys already held.
//! Symmetric (`oct`) keys are never loaded.

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, Jwk, JwkSet},
};
use reqwest::Url;
use std::time::Duration;
use tokio::{sync::Mutex, time::Instant};

/// Least time between two fetches triggered by unknown `kid`s.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);

/// Largest JWKS or metadata document read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Why no key verifies a token.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The issuer's key set has no such key (after a fresh fetch).
    #[error("no signing key {0:?} at the issuer")]
    Unknown(Option<String>),
    /// No key set could be fetched yet.
    #[error("the issuer's signing keys could not be fetched: {0}")]
    Unavailable(#[source] FetchError),
    /// No key set yet, and the last fetch failed less than [`MIN_REFETCH`] ago.
    #[error("the issuer's signing keys are not fetched yet")]
    NotFetched,
}

/// Why a fetch of metadata or keys failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: status {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: not a JSON document of the expected shape: {source}")]
    Shape {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("GET {0}: larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge(String),
    #[error("the issuer {0:?} is not a URL")]
    Issuer(String),
    #[error("no metadata document of issuer {0} names a jwks_uri with the same issuer")]
    NoMetadata(String),
}

/// One verification key.
struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
    params: Family,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    Rsa,
    Ec,
    Okp,
}

#[derive(Default)]
struct Cache {
    keys: Vec<Key>,
    fetched: Option<Instant>,
    last_attempt: Option<Instant>,
    url: Option<String>,
}

/// The issuer's keys.
pub struct Jwks {
    http: reqwest::Client,
    issuer: String,
    configured: Option<String>,
    refresh: Duration,
    cache: Mutex<Cache>,
}

impl Jwks {
    pub fn new(
        issuer: String,
        configured: Option<String>,
        refresh: Duration,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        jetway_shared::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        Ok(Self {
            http,
            issuer,
            configured,
            refresh,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// The key that verifies a token signed with `alg` under `kid`.
    pub async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, KeyError> {
        let mut cache = self.cache.lock().await;
        let stale = cache.fetched.is_none_or(|t| t.elapsed() >= self.refresh);
        let may_fetch = cache
            .last_attempt
            .is_none_or(|t| t.elapsed() >= MIN_REFETCH);
        let mut failure = None;
        if stale
            && may_fetch
            && let Err(e) = self.fetch(&mut cache).await
        {
            tracing::warn!(error = %e, "could not fetch the issuer's signing keys");
            failure = Some(e);
        }
        if let Some(k) = find(&cache.keys, kid, alg) {
            return Ok(k);
        }
        let may_fetch = cache
            .last_attempt
            .is_none_or(|t| t.elapsed() >= MIN_REFETCH);
        if kid.is_some() && may_fetch {
            match self.fetch(&mut cache).await {
                Ok(()) => {
                    if let Some(k) = find(&cache.keys, kid, alg) {
                        return Ok(k);
                    }
                }
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            _ if cache.fetched.is_some() => Err(KeyError::Unknown(kid.map(str::to_owned))),
            Some(e) => Err(KeyError::Unavailable(e)),
            None => Err(KeyError::NotFetched),
        }
    }

    async fn fetch(&self, cache: &mut Cache) -> Result<(), FetchError> {
        cache.last_attempt = Some(Instant::now());
        let url = match (&self.configured, &cache.url) {
            (Some(u), _) | (None, Some(u)) => u.clone(),
            (None, None) => {
                let u = self.discover().await?;
                cache.url = Some(u.clone());
                u
            }
        };
        let set: JwkSet = self.get_json(&url).await?;
        let keys: Vec<Key> = set.keys.iter().filter_map(load).collect();
        tracing::info!(url, keys = keys.len(), "fetched the issuer's signing keys");
        cache.keys = keys;
        cache.fetched = Some(Instant::now());
        Ok(())
    }

    /// The `jwks_uri` of the issuer's metadata.
    async fn discover(&self) -> Result<String, FetchError> {
        #[derive(serde::Deserialize)]
        struct Metadata {
            issuer: String,
            jwks_uri: String,
        }
        for url in metadata_urls(&self.issuer)? {
            match self.get_json::<Metadata>(&url).await {
                Ok(m) if m.issuer == self.issuer => return Ok(m.jwks_uri),
                Ok(m) => tracing::warn!(url, issuer = m.issuer, "metadata names another issuer"),
                Err(e) => tracing::debug!(error = %e, "no issuer metadata here"),
            }
        }
        Err(FetchError::NoMetadata(self.issuer.clone()))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, FetchError> {
        let http = |source| FetchError::Http {
            url: url.to_owned(),
            source,
        };
        let resp = self.http.get(url).send().await.map_err(http)?;
        if !resp.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: resp.status().as_u16(),
            });
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(FetchError::TooLarge(url.to_owned()));
        }
        let body = resp.bytes().await.map_err(http)?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(FetchError::TooLarge(url.to_owned()));
        }
        serde_json::from_slice(&body).map_err(|source| FetchError::Shape {
            url: url.to_owned(),
            source,
        })
    }
}

/// Where the metadata of `issuer` may be, in the order tried.
pub fn metadata_urls(issuer: &str) -> Result<Vec<String>, FetchError> {
    let parsed = Url::parse(issuer).map_err(|_| FetchError::Issuer(issuer.to_owned()))?;
    let origin = parsed.origin().ascii_serialization();
    let path = parsed.path().trim_end_matches('/');
    Ok(if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    })
}

fn load(jwk: &Jwk) -> Option<Key> {
    let params = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Family::Rsa,
        AlgorithmParameters::EllipticCurve(_) => Family::Ec,
        AlgorithmParameters::OctetKeyPair(_) => Family::Okp,
        // A symmetric key in a public key set is never a verification key.
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk)
        .inspect_err(
            |e| tracing::warn!(error = %e, kid = ?jwk.common.key_id, "unusable key in the JWKS"),
        )
        .ok()?;
    let alg = jwk
        .common
        .key_algorithm
        .and_then(|a| a.to_string().parse::<Algorithm>().ok());
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
        params,
    })
}

fn family(alg: Algorithm) -> Option<Family> {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(Family::Rsa),
        ES256 | ES384 => Some(Family::Ec),
        EdDSA => Some(Family::Okp),
        _ => None,
    }
}

/// The key for `kid` (or, without a `kid`, the only key that fits `alg`).
fn find(keys: &[Key], kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
    let fits = |k: &&Key| Some(k.params) == family(alg) && k.alg.is_none_or(|a| a == alg);
    match kid {
        Some(kid) => keys
            .iter()
            .filter(fits)
            .find(|k| k.kid.as_deref() == Some(kid))
            .map(|k| k.key.clone()),
        None => {
            let mut fitting = keys.iter().filter(fits);
            match (fitting.next(), fitting.next()) {
                (Some(k), None) => Some(k.key.clone()),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_looked_for_where_rfc_8414_and_oidc_put_it() {
        assert_eq!(
            metadata_urls("https://idp.example").ok(),
            Some(vec![
                "https://idp.example/.well-known/oauth-authorization-server".to_owned(),
                "https://idp.example/.well-known/openid-configuration".to_owned(),
            ])
        );
        assert_eq!(
            metadata_urls("https://idp.example/realms/a/").ok(),
            Some(vec![
                "https://idp.example/.well-known/oauth-authorization-server/realms/a".to_owned(),
                "https://idp.example/.well-known/openid-configuration/realms/a".to_owned(),
                "https://idp.example/realms/a/.well-known/openid-configuration".to_owned(),
            ])
        );
        assert!(metadata_urls("not a url").is_err());
    }
}
