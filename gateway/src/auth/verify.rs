//! [`Verifier`]: checks one bearer JWT: its algorithm against the
//! allow-list, its signature against the issuer's keys, `iss`, `aud`,
//! `exp` and `nbf` (with leeway), and reads who it names and what it grants.

use super::{
    Caller,
    introspect::{IntrospectionError, Introspector, looks_like_jwt},
    jwks::{Jwks, KeyError},
    scopes_of,
    settings::AuthConfig,
};
use jetway_shared::principal::Principal;
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde::Deserialize;

/// Why a token is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    #[error("tokens signed with {0:?} are not accepted")]
    Algorithm(Algorithm),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Introspection(#[from] IntrospectionError),
    #[error("{what}")]
    Invalid {
        what: &'static str,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
}

impl TokenError {
    /// True when the issuer's keys could not be had: the token may be fine.
    pub fn is_unavailable(&self) -> bool {
        match self {
            TokenError::Key(KeyError::Unavailable(_) | KeyError::NotFetched) => true,
            TokenError::Introspection(e) => e.is_unavailable(),
            _ => false,
        }
    }
}

/// The claims Jetway reads.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    /// RFC 8693 / RFC 9068: space-separated.
    #[serde(default)]
    scope: Option<String>,
    /// Some issuers (Azure AD, Okta) use an array.
    #[serde(default)]
    scp: Option<Scp>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Scp {
    List(Vec<String>),
    Text(String),
}

pub struct Verifier {
    pub cfg: AuthConfig,
    jwks: Jwks,
    introspector: Option<Introspector>,
}

impl Verifier {
    pub fn new(cfg: AuthConfig) -> Result<Self, reqwest::Error> {
        let jwks = Jwks::new(
            cfg.issuer.clone(),
            cfg.jwks_url.clone(),
            cfg.jwks_refresh,
            cfg.fetch_timeout,
        )?;
        let introspector = match &cfg.introspection {
            Some(i) => Some(Introspector::new(i.clone(), cfg.fetch_timeout)?),
            None => None,
        };
        Ok(Self {
            cfg,
            jwks,
            introspector,
        })
    }

    /// Verifies `token` for the resource `resource` (the URL of the MCP
    /// endpoint it was sent to).
    pub async fn verify(&self, token: &str, resource: &str) -> Result<Caller, TokenError> {
        if let Some(introspector) = &self.introspector
            && !looks_like_jwt(token)
        {
            let audience = self.cfg.audience.as_deref().unwrap_or(resource);
            return Ok(introspector
                .check(token, audience, &self.cfg.issuer, self.cfg.leeway)
                .await?);
        }
        let header = jsonwebtoken::decode_header(token).map_err(TokenError::Malformed)?;
        if !self.cfg.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm(header.alg));
        }
        let key = self.jwks.key(header.kid.as_deref(), header.alg).await?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[self.cfg.audience.as_deref().unwrap_or(resource)]);
        v.leeway = self.cfg.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(invalid)?;
        let c = data.claims;
        let scopes = scopes_of(c.scope.as_deref(), c.scp);
        Ok(Caller {
            principal: Some(Principal {
                issuer: c.iss,
                subject: c.sub,
                client_id: c.client_id.or(c.azp),
            }),
            scopes,
        })
    }
}

fn invalid(source: jsonwebtoken::errors::Error) -> TokenError {
    let what = match source.kind() {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidAudience => "the token is not meant for this resource (aud)",
        ErrorKind::InvalidIssuer => "the token is from another issuer",
        ErrorKind::InvalidSignature => "the token's signature does not verify",
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not fit its key",
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => {
            "the token lacks a required claim (exp, iss, aud, sub) or has one of the wrong type"
        }
        _ => "the token is invalid",
    };
    TokenError::Invalid { what, source }
}
