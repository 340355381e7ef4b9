//! Idempotent creation of Jetway's JetStream resources.
//!
//! Whichever process starts first creates the session stream and the KV
//! buckets; the others find them. An existing stream whose configuration
//! differs from what this process expects is reported: a structural
//! difference (subjects, retention, RePublish, direct get) is an error,
//! because Jetway would misbehave on it; a tunable one (max age, replicas,
//! duplicate window) is a warning, because an operator may have changed it.

use crate::backoff::Backoff;
use crate::{
    config::{Bus, Discard},
    kv_write,
    service::{Bucket, Service},
    subjects,
};
use async_nats::jetstream::{
    self, Context,
    context::{CreateStreamErrorKind, GetStreamErrorKind, KeyValueErrorKind},
    kv,
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};
use std::time::Duration;

/// Why the JetStream resources could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("JetStream is not reachable: {0}")]
    Unavailable(#[source] crate::BoxError),
    #[error("stream {stream} exists with an incompatible configuration: {differences}")]
    Mismatch { stream: String, differences: String },
    #[error("cannot read the NATS credentials in {path}: {source}")]
    Credentials {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not create {what}: {source}")]
    Create {
        what: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Handles to everything both sides use, for one service.
#[derive(Clone)]
pub struct Resources {
    pub service: Service,
    pub js: Context,
    pub stream: stream::Stream,
    pub sessions: kv::Store,
    pub state: kv::Store,
    /// Who runs which request; entries expire by themselves (per-message TTL).
    pub claims: kv::Store,
}

/// The stream configuration this build of Jetway expects for a partition
/// of `service`.
pub fn stream_config(bus: &Bus, service: &Service, partition: u32) -> stream::Config {
    let (source, destination) = subjects::republish(service, partition);
    stream::Config {
        name: subjects::stream_name(service, partition),
        subjects: vec![subjects::stream_subjects(service, partition)],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        max_age: bus.retention(),
        duplicate_window: bus.duplicate_window(),
        num_replicas: bus.replicas,
        allow_direct: true,
        max_bytes: limit(bus.stream_max_bytes),
        discard: match bus.stream_discard {
            Discard::New => DiscardPolicy::New,
            Discard::Old => DiscardPolicy::Old,
        },
        max_messages_per_subject: limit(bus.session_max_messages),
        // A full subject refuses one more message (JetStream allows this
        // only with the `new` discard policy); with `old` it drops its oldest.
        discard_new_per_subject: bus.stream_discard == Discard::New && bus.session_max_messages > 0,
        republish: Some(stream::Republish {
            source,
            destination,
            headers_only: false,
        }),
        ..Default::default()
    }
}

/// A configured bound as JetStream spells it: `-1` for none.
fn limit(value: u64) -> i64 {
    match value {
        0 => -1,
        v => i64::try_from(v).unwrap_or(i64::MAX),
    }
}

/// Connects a JetStream context with the configured API timeout.
pub fn context(client: async_nats::Client, bus: &Bus) -> Context {
    jetstream::ContextBuilder::new()
        .timeout(bus.nats_timeout())
        .build(client)
}

/// Creates (or finds and checks) the stream of partition 0 of `service`
/// and its KV buckets.
pub async fn ensure(js: &Context, bus: &Bus, service: &Service) -> Result<Resources, SetupError> {
    let stream = ensure_stream(js, stream_config(bus, service, 0)).await?;
    let sessions = ensure_bucket(js, bus, service, Bucket::Sessions, true).await?;
    let markers = has_markers(&sessions);
    if !markers {
        tracing::warn!(bucket = %sessions.name,
            "the sessions bucket predates expiry markers: state keys age out with the retention, also under an active session");
    }
    let state = ensure_bucket(js, bus, service, Bucket::State, markers).await?;
    let claims = ensure_bucket(js, bus, service, Bucket::Claims, markers).await?;
    Ok(Resources {
        service: service.clone(),
        js: js.clone(),
        stream,
        sessions,
        state,
        claims,
    })
}

async fn ensure_stream(js: &Context, want: stream::Config) -> Result<stream::Stream, SetupError> {
    let mut stream = match js.get_stream(&want.name).await {
        Ok(s) => s,
        Err(e) if is_not_found(&e) => {
            match js.create_stream(want.clone()).await {
                Ok(s) => return Ok(s),
                Err(e) if matches!(e.kind(), CreateStreamErrorKind::TimedOut) => {
                    return Err(unavailable(e));
                }
                // Another process may have created it first: look again.
                Err(create) => match js.get_stream(&want.name).await {
                    Ok(s) => s,
                    // Not there: the create itself was refused (its
                    // max_bytes exceeds what the server may store, say).
                    Err(e) if is_not_found(&e) => {
                        return Err(SetupError::Create {
                            what: format!("stream {}", want.name),
                            source: Box::new(create),
                        });
                    }
                    Err(e) => return Err(unavailable(e)),
                },
            }
        }
        Err(e) => return Err(unavailable(e)),
    };
    let have = stream.info().await.map_err(unavailable)?.config.clone();
    let (fatal, tunable) = differences(&want, &have);
    if !tunable.is_empty() {
        tracing::warn!(stream = %want.name, differences = %tunable.join("; "),
            "existing stream differs from this instance's settings; keeping the stream's");
    }
    if !fatal.is_empty() {
        return Err(SetupError::Mismatch {
            stream: want.name,
            differences: fatal.join("; "),
        });
    }
    Ok(stream)
}

fn is_not_found(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(err)
        if err.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// Lists what differs between the expected and the existing stream config,
/// split into (fatal, tunable).
pub fn differences(want: &stream::Config, have: &stream::Config) -> (Vec<String>, Vec<String>) {
    let mut fatal = Vec::new();
    let mut tunable = Vec::new();
    if want.subjects != have.subjects {
        fatal.push(format!(
            "subjects {:?}, expected {:?}",
            have.subjects, want.subjects
        ));
    }
    if want.retention != have.retention {
        fatal.push(format!(
            "retention {:?}, expected {:?}",
            have.retention, want.retention
        ));
    }
    if want.republish != have.republish {
        fatal.push(format!(
            "republish {:?}, expected {:?}",
            have.republish, want.republish
        ));
    }
    if want.allow_direct != have.allow_direct {
        fatal.push(format!(
            "allow_direct {}, expected {}",
            have.allow_direct, want.allow_direct
        ));
    }
    if want.max_age != have.max_age {
        tunable.push(format!(
            "max_age {:?}, configured {:?}",
            have.max_age, want.max_age
        ));
    }
    if want.num_replicas != have.num_replicas {
        tunable.push(format!(
            "replicas {}, configured {}",
            have.num_replicas, want.num_replicas
        ));
    }
    if want.duplicate_window != have.duplicate_window {
        tunable.push(format!(
            "duplicate_window {:?}, configured {:?}",
            have.duplicate_window, want.duplicate_window
        ));
    }
    if want.max_bytes != have.max_bytes {
        tunable.push(format!(
            "max_bytes {}, configured {}",
            have.max_bytes, want.max_bytes
        ));
    }
    if want.discard != have.discard {
        tunable.push(format!(
            "discard {:?}, configured {:?}",
            have.discard, want.discard
        ));
    }
    if want.max_messages_per_subject != have.max_messages_per_subject
        || want.discard_new_per_subject != have.discard_new_per_subject
    {
        tunable.push(format!(
            "max_msgs_per_subject {} (discard_new_per_subject {}), configured {} ({})",
            have.max_messages_per_subject,
            have.discard_new_per_subject,
            want.max_messages_per_subject,
            want.discard_new_per_subject
        ));
    }
    (fatal, tunable)
}

/// True if `sessions` leaves a delete marker when a record ages out.
fn has_markers(sessions: &kv::Store) -> bool {
    sessions
        .stream
        .cached_info()
        .config
        .subject_delete_marker_ttl
        .is_some()
}

/// Finds or creates one bucket; `markers` (for the state bucket: the
/// sessions bucket has expiry markers) lets state keys live without a max age.
async fn ensure_bucket(
    js: &Context,
    bus: &Bus,
    service: &Service,
    kind: Bucket,
    markers: bool,
) -> Result<kv::Store, SetupError> {
    let bucket = service.bucket(kind);
    let bucket = bucket.as_str();
    match js.get_key_value(bucket).await {
        Ok(store) => return Ok(store),
        Err(e) if e.kind() == KeyValueErrorKind::GetBucket => {}
        Err(e) => return Err(unavailable(e)),
    }
    let config = kv::Config {
        bucket: bucket.to_owned(),
        history: kv_write::HISTORY,
        max_age: match kind {
            // Removed with its session (crate::expiry), not by age.
            Bucket::State if markers => Duration::ZERO,
            _ => bus.retention(),
        },
        max_bytes: limit(bus.kv_max_bytes),
        storage: StorageType::File,
        num_replicas: bus.replicas,
        limit_markers: match kind {
            // Claims carry their own TTL; an expired one leaves a marker that
            // goes a second later, so the bucket holds only running requests.
            Bucket::Claims => Some(Duration::from_secs(1)),
            // An aged-out record leaves a marker the workers' expiry
            // consumer reads; it stays a retention long, so a marker stored
            // while every worker is down is still read when one is back.
            Bucket::Sessions => Some(bus.retention().max(Duration::from_secs(1))),
            Bucket::State => None,
        },
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        Err(create) => js
            .get_key_value(bucket)
            .await
            .map_err(|_| SetupError::Create {
                what: format!("KV bucket {bucket}"),
                source: Box::new(create),
            }),
    }
}

/// JetStream did not answer; `e` is kept as the source.
pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> SetupError {
    SetupError::Unavailable(Box::new(e))
}

/// Waits up to `timeout` for a connection, so a process started before NATS
/// fails with a clear message instead of hanging.
pub async fn connect(bus: &Bus, name: &str) -> Result<async_nats::Client, SetupError> {
    connect_watching(bus, name).await.map(|(client, _)| client)
}

/// [`connect`], plus a counter of connections made, bumped on every
/// (re)connect: core subscriptions miss what was published while the
/// connection was down, so their readers catch up from the stream when it
/// changes.
pub async fn connect_watching(
    bus: &Bus,
    name: &str,
) -> Result<(async_nats::Client, tokio::sync::watch::Receiver<u64>), SetupError> {
    let (connects_tx, connects) = tokio::sync::watch::channel(0u64);
    let client = with_auth(async_nats::ConnectOptions::new(), &bus.nats_auth)
        .await?
        .name(format!("{name}/{}", bus.instance_id))
        .connection_timeout(bus.nats_timeout())
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let connects_tx = connects_tx.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("connected to NATS");
                        crate::metrics::BUS.connected.set(1);
                        if *connects_tx.borrow() > 0 {
                            crate::metrics::BUS.reconnects.inc();
                        }
                        connects_tx.send_modify(|n| *n += 1);
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("disconnected from NATS");
                        crate::metrics::BUS.connected.set(0);
                        crate::metrics::BUS.disconnects.inc();
                    }
                    other => tracing::info!(event = %other, "NATS event"),
                }
            }
        })
        .connect(server_list(&bus.nats_url))
        .await
        .map_err(unavailable)?;
    Ok((client, connects))
}

/// Applies the configured NATS credentials and TLS files to `options`.
pub async fn with_auth(
    mut options: async_nats::ConnectOptions,
    auth: &crate::config::NatsAuth,
) -> Result<async_nats::ConnectOptions, SetupError> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| SetupError::Credentials {
                path: path.display().to_string(),
                source: e,
            })
    };
    if let Some(path) = &auth.creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| SetupError::Credentials {
                path: path.display().to_string(),
                source: e,
            })?;
    }
    if let Some(path) = &auth.nkey_seed_file {
        options = options.nkey(read(path)?);
    }
    if let Some(token) = &auth.token {
        options = options.token(token.clone());
    }
    if let (Some(user), Some(password)) = (&auth.user, &auth.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(ca) = &auth.tls_ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&auth.tls_cert_file, &auth.tls_key_file) {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    Ok(options)
}

/// The servers of a `nats_url` setting: one URL, or several separated by commas.
pub fn server_list(urls: &str) -> Vec<&str> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// Polls until the JetStream resources of `service` can be prepared, for
/// processes that start before NATS is up.
pub async fn ensure_with_retry(
    js: &Context,
    bus: &Bus,
    service: &Service,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Resources, SetupError> {
    let mut backoff =
        Backoff::unbounded(Duration::from_millis(100), Duration::from_secs(5)).jitter();
    loop {
        match ensure(js, bus, service).await {
            Ok(r) => return Ok(r),
            Err(SetupError::Unavailable(why)) => {
                tracing::warn!(%why, "JetStream not ready; retrying");
                tokio::select! {
                    _ = backoff.sleep() => {}
                    _ = cancel.cancelled() => return Err(SetupError::Unavailable(why)),
                }
            }
            Err(other) => return Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_url_may_list_several_servers() {
        assert_eq!(server_list("nats://a:1"), vec!["nats://a:1"]);
        assert_eq!(
            server_list("nats://a:1, nats://b:2,,nats://c:3"),
            vec!["nats://a:1", "nats://b:2", "nats://c:3"]
        );
    }

    #[test]
    fn structural_differences_are_fatal_and_tunables_are_not() {
        let bus = Bus::default();
        let want = stream_config(&bus, &Service::default(), 0);
        assert_eq!(differences(&want, &want), (vec![], vec![]));

        let mut have = want.clone();
        have.republish = None;
        have.max_age = Duration::from_secs(60);
        let (fatal, tunable) = differences(&want, &have);
        assert_eq!(fatal.len(), 1, "{fatal:?}");
        assert!(fatal[0].starts_with("republish"));
        assert_eq!(tunable.len(), 1, "{tunable:?}");
        assert!(tunable[0].starts_with("max_age"));
    }

    #[test]
    fn storage_is_bounded_and_a_full_stream_refuses() {
        let bus = Bus::default();
        let want = stream_config(&bus, &Service::default(), 0);
        assert_eq!(want.max_bytes, 2 << 30);
        assert_eq!(want.discard, DiscardPolicy::New);
        assert_eq!(want.max_messages_per_subject, 10_000);
        assert!(want.discard_new_per_subject);

        let unbounded = Bus {
            stream_max_bytes: 0,
            session_max_messages: 0,
            stream_discard: Discard::Old,
            ..Bus::default()
        };
        let have = stream_config(&unbounded, &Service::default(), 0);
        assert_eq!((have.max_bytes, have.max_messages_per_subject), (-1, -1));
        assert!(
            !have.discard_new_per_subject,
            "JetStream allows it only with `new`"
        );
        let (fatal, tunable) = differences(&want, &have);
        assert!(fatal.is_empty(), "{fatal:?}");
        assert_eq!(tunable.len(), 3, "{tunable:?}");
    }
}
