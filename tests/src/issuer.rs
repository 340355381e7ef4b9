//! [`TestIssuer`]: a real OAuth token issuer for the auth tests: P-256 keys
//! generated in the test, its metadata (RFC 8414) and JWKS served over HTTP
//! on loopback, and tokens signed with those keys; opaque tokens too, with
//! an RFC 7662 introspection endpoint at `/introspect` that only its
//! client ([`INTROSPECTION_CLIENT`]) may call.

use anyhow::{Context, Result};
use axum::{
    Form, Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::{
    elliptic_curve::sec1::ToSec1Point,
    pkcs8::{EncodePrivateKey, LineEnding},
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

/// One signing key: its `kid`, private key and public JWK.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn generate(kid: &str) -> Result<Self> {
        let secret = loop {
            let bytes: [u8; 32] = rand::random();
            if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
                break k;
            }
        };
        let pem = secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("PKCS#8: {e}"))?;
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes())?;
        let point = secret.public_key().to_sec1_point(false);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64.encode(point.x().context("x")?),
            "y": b64.encode(point.y().context("y")?),
        });
        Ok(Self {
            kid: kid.to_owned(),
            encoding,
            jwk,
        })
    }
}

/// The client id and secret the introspection endpoint accepts.
pub const INTROSPECTION_CLIENT: (&str, &str) = ("jetway-gateway", "introspection-secret");

struct Shared {
    issuer: String,
    published: Mutex<Vec<Value>>,
    jwks_fetches: AtomicUsize,
    /// Opaque token -> its introspection answer.
    opaque: Mutex<HashMap<String, Value>>,
    introspections: AtomicUsize,
}

#[derive(serde::Deserialize)]
struct IntrospectForm {
    token: String,
}

/// RFC 7662: 401 without the client's credentials; `{"active": false}`
/// for a token it does not know.
async fn introspect(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<IntrospectForm>,
) -> Result<Json<Value>, StatusCode> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let (id, secret) = INTROSPECTION_CLIENT;
    let want = format!("Basic {}", b64.encode(format!("{id}:{secret}")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    s.introspections.fetch_add(1, Ordering::SeqCst);
    let answer = s.opaque.lock().unwrap().get(&form.token).cloned();
    Ok(Json(answer.unwrap_or_else(|| json!({"active": false}))))
}

/// The issuer; stops serving when dropped.
pub struct TestIssuer {
    shared: Arc<Shared>,
    keys: Mutex<Vec<SigningKey>>,
    server: tokio::task::JoinHandle<()>,
}

impl TestIssuer {
    /// Serves metadata at `/.well-known/oauth-authorization-server` and the
    /// keys at `/jwks`, starting with one key, `k1`.
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let first = SigningKey::generate("k1")?;
        let shared = Arc::new(Shared {
            issuer,
            published: Mutex::new(vec![first.jwk.clone()]),
            jwks_fetches: AtomicUsize::new(0),
            opaque: Mutex::new(HashMap::new()),
            introspections: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(|State(s): State<Arc<Shared>>| async move {
                    Json(json!({
                        "issuer": s.issuer,
                        "jwks_uri": format!("{}/jwks", s.issuer),
                        "token_endpoint": format!("{}/token", s.issuer),
                    }))
                }),
            )
            .route(
                "/jwks",
                get(|State(s): State<Arc<Shared>>| async move {
                    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                    let keys = s.published.lock().unwrap().clone();
                    Json(json!({ "keys": keys }))
                }),
            )
            .route("/introspect", post(introspect))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            shared,
            keys: Mutex::new(vec![first]),
            server,
        })
    }

    /// The issuer identifier (`iss`), an `http://127.0.0.1:<port>` URL.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// The published JWKS, as JSON text.
    pub fn jwks_json(&self) -> String {
        json!({ "keys": *self.shared.published.lock().unwrap() }).to_string()
    }

    /// How often the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Generates key `kid`; published in the JWKS if `publish` (a rotation),
    /// kept secret otherwise (a key the issuer never announced).
    pub fn add_key(&self, kid: &str, publish: bool) -> Result<()> {
        let key = SigningKey::generate(kid)?;
        if publish {
            self.shared.published.lock().unwrap().push(key.jwk.clone());
        }
        self.keys.lock().unwrap().push(key);
        Ok(())
    }

    /// The introspection endpoint's URL.
    pub fn introspection_url(&self) -> String {
        format!("{}/introspect", self.shared.issuer)
    }

    /// A new opaque token (no dots) whose introspection answer is `answer`.
    pub fn issue_opaque(&self, answer: Value) -> String {
        let bytes: [u8; 24] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        self.shared
            .opaque
            .lock()
            .unwrap()
            .insert(token.clone(), answer);
        token
    }

    /// How often the introspection endpoint answered an authenticated call.
    pub fn introspections(&self) -> usize {
        self.shared.introspections.load(Ordering::SeqCst)
    }

    /// A token with `claims`, signed ES256 with key `kid`.
    pub fn sign(&self, kid: &str, claims: &Value) -> Result<String> {
        let keys = self.keys.lock().unwrap();
        let key = keys
            .iter()
            .find(|k| k.kid == kid)
            .with_context(|| format!("no key {kid}"))?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }

    /// Claims of a valid token for `subject` and `audience`, valid for an
    /// hour, with `scope`.
    pub fn claims(&self, subject: &str, audience: &str, scope: &str) -> Value {
        let now = now_secs();
        json!({
            "iss": self.issuer(), "sub": subject, "aud": audience,
            "iat": now, "nbf": now, "exp": now + 3600,
            "scope": scope, "client_id": "jetway-tests",
        })
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
