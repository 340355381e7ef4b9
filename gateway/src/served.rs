//! The services a gateway serves (see `jetway_shared::service`), and the
//! extractor that tells handlers which one a request is for: `/mcp` is the
//! first configured service, `/services/<name>/mcp` the one it names.

use crate::{Gateway, error::GatewayError, sessions::Sessions};
use axum::{
    extract::{FromRequestParts, RawPathParams},
    http::request::Parts,
};
use jetway_shared::{
    service::Service,
    setup::{Resources, SetupError},
};
use std::{collections::HashMap, sync::Arc, time::Duration};

/// One service's handles: its stream and its session records.
pub struct Served {
    pub service: Service,
    /// The session stream, without its info: cloned for every SSE
    /// connection, which only needs direct gets.
    pub stream: async_nats::jetstream::stream::Stream<()>,
    pub sessions: Sessions,
}

impl Served {
    /// The stored message at `sequence`, for checking a `Last-Event-ID`:
    /// 400 if there is none (never stored, or aged out), 503 if the stream
    /// cannot be read.
    pub async fn stored(
        &self,
        sequence: u64,
    ) -> Result<async_nats::jetstream::message::StreamMessage, GatewayError> {
        match self.stream.direct_get(sequence).await {
            Ok(m) => Ok(m),
            Err(e) if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound => {
                Err(GatewayError::UnknownEventId)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stream");
                Err(GatewayError::Unavailable)
            }
        }
    }

    /// The handles of a service whose resources were just ensured.
    pub async fn new(
        js: &async_nats::jetstream::Context,
        resources: Resources,
        retention: Duration,
    ) -> Result<Self, SetupError> {
        let stream = js
            .get_stream_no_info(resources.stream.cached_info().config.name.as_str())
            .await
            .map_err(jetway_shared::setup::unavailable)?;
        Ok(Self {
            service: resources.service,
            stream,
            sessions: Sessions::new(resources.sessions, js.clone(), retention),
        })
    }
}

/// Every served service, by name; the first is the one on `/mcp`.
pub struct Services {
    primary: Arc<Served>,
    by_name: HashMap<String, Arc<Served>>,
}

impl Services {
    /// `served` must not be empty (the config refuses an empty list).
    pub fn new(served: Vec<Served>) -> Self {
        let served: Vec<Arc<Served>> = served.into_iter().map(Arc::new).collect();
        let primary = served
            .first()
            .cloned()
            .unwrap_or_else(|| unreachable!("the config names at least one service"));
        let by_name = served
            .into_iter()
            .map(|s| (s.service.name().to_owned(), s))
            .collect();
        Self { primary, by_name }
    }

    /// The service `name` names, or the primary one for `None`.
    pub fn get(&self, name: Option<&str>) -> Option<Arc<Served>> {
        match name {
            None => Some(self.primary.clone()),
            Some(n) => self.by_name.get(n).cloned(),
        }
    }
}

/// The service a request is for: 404 for a service this gateway does not
/// serve (it may exist on the bus; this gateway is not configured for it).
pub struct Scope(pub Arc<Served>);

impl FromRequestParts<Arc<Gateway>> for Scope {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        gw: &Arc<Gateway>,
    ) -> Result<Self, Self::Rejection> {
        // `/mcp` has no parameters (axum records an empty list for it).
        let params = RawPathParams::from_request_parts(parts, gw)
            .await
            .map_err(|_| GatewayError::UnknownService)?;
        let named = params.iter().find(|(k, _)| *k == "service").map(|(_, v)| v);
        gw.services
            .get(named)
            .map(Scope)
            .ok_or(GatewayError::UnknownService)
    }
}
