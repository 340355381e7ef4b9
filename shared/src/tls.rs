//! TLS for Jetway's HTTP clients (the gateway's JWKS fetches, the bridge's
//! upstream, the CLI's redrive): rustls with the `ring` provider, the one
//! async-nats uses as well, so only one crypto library is built. Call
//! [`install_crypto_provider`] before building a `reqwest::Client`.

/// Installs `ring` as the process's rustls provider; a no-op if one is
/// installed already (by an earlier call, or by an embedding program).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
