//! The connection to NATS and handles to Jetway's stream and KV buckets.
//!
//! Unlike the gateway and the worker, the CLI creates nothing: it fails in
//! a few seconds with one clear line if NATS is unreachable or Jetway's
//! resources are missing, instead of retrying or setting them up.

use crate::{config::Config, error::CliError};
use async_nats::jetstream::{
    self, Context,
    context::{GetStreamErrorKind, KeyValueErrorKind},
    kv,
    stream::Stream,
};
use jetway_shared::{
    BoxError,
    service::{Bucket, Service},
    subjects::{self, SessionId},
};
use std::time::Duration;

/// A connected CLI: the client, its JetStream context, and where it points.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: Context,
    pub url: String,
    pub instance: String,
    /// The service whose streams and buckets this CLI reads.
    pub service: Service,
}

impl Bus {
    /// Connects once, bounded by the configured connect timeout.
    pub async fn connect(config: &Config) -> Result<Self, CliError> {
        let url = config.bus.nats_url.clone();
        let unreachable = |reason: BoxError| CliError::Unreachable {
            url: url.clone(),
            reason,
        };
        let timeout = config.connect_timeout();
        let options = jetway_shared::setup::with_auth(
            async_nats::ConnectOptions::new(),
            &config.bus.nats_auth,
        )
        .await
        .map_err(|e| unreachable(Box::new(e)))?;
        let connecting = options
            .name(format!("jetway-cli/{}", config.bus.instance_id))
            .connection_timeout(timeout)
            // Keep the client quiet: the CLI reports failures itself.
            .event_callback(|_| async {})
            // One URL or a comma-separated server list, as for the binaries.
            .connect(jetway_shared::setup::server_list(&url));
        let client =
            match tokio::time::timeout(timeout + Duration::from_millis(500), connecting).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(unreachable(Box::new(e))),
                Err(_) => return Err(unreachable(format!("no answer within {timeout:?}").into())),
            };
        let js = jetstream::ContextBuilder::new()
            .timeout(config.bus.nats_timeout())
            .build(client.clone());
        Ok(Self {
            client,
            js,
            url,
            instance: config.bus.instance_id.clone(),
            service: config.service.clone(),
        })
    }

    /// The stream holding partition `p`.
    pub async fn stream(&self, partition: u32) -> Result<Stream, CliError> {
        let name = subjects::stream_name(&self.service, partition);
        match self.js.get_stream(&name).await {
            Ok(s) => Ok(s),
            Err(e) if is_stream_not_found(&e) => Err(CliError::NoStream {
                stream: name,
                url: self.url.clone(),
            }),
            Err(e) => Err(self.js_error(format!("reading stream {name}"), e)),
        }
    }

    /// The stream of `session`'s partition.
    pub async fn stream_of(&self, session: &SessionId) -> Result<Stream, CliError> {
        self.stream(session.partition()).await
    }

    /// The service's sessions bucket (`jetway_sessions` for the default).
    pub async fn sessions(&self) -> Result<kv::Store, CliError> {
        self.bucket(&self.service.bucket(Bucket::Sessions)).await
    }

    /// The service's state bucket (`jetway_state` for the default).
    pub async fn state(&self) -> Result<kv::Store, CliError> {
        self.bucket(&self.service.bucket(Bucket::State)).await
    }

    async fn bucket(&self, name: &str) -> Result<kv::Store, CliError> {
        match self.js.get_key_value(name).await {
            Ok(store) => Ok(store),
            Err(e) if e.kind() == KeyValueErrorKind::GetBucket && self.reachable().await => {
                Err(CliError::NoStream {
                    stream: format!("KV bucket {name}"),
                    url: self.url.clone(),
                })
            }
            Err(e) => Err(self.js_error(format!("reading KV bucket {name}"), e)),
        }
    }

    /// True if JetStream answers at all (tells "missing" from "down").
    async fn reachable(&self) -> bool {
        self.js.query_account().await.is_ok()
    }

    /// Translates a JetStream failure; a timeout means NATS went away.
    pub fn js_error(
        &self,
        what: String,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> CliError {
        let text = e.to_string();
        if text.contains("timed out") || text.contains("no responders") {
            CliError::Unreachable {
                url: self.url.clone(),
                reason: Box::new(CliError::bus(what, e)),
            }
        } else {
            CliError::bus(what, e)
        }
    }
}

fn is_stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(err)
        if err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// How long the stream keeps messages (its own setting, which may differ
/// from this CLI's configured `retention_secs`).
pub fn retention(stream: &Stream) -> Duration {
    stream.cached_info().config.max_age
}
