//! Logs and traces of the binaries.
//!
//! - Logs: `RUST_LOG` filters (default `info`), text or JSON lines on stderr.
//! - Traces ([`otlp`]): OpenTelemetry spans exported over OTLP (gRPC or
//!   HTTP/protobuf), off unless an endpoint is configured (`otel_endpoint`
//!   or `OTEL_EXPORTER_OTLP_ENDPOINT`). While off no OpenTelemetry layer is
//!   installed and [`enabled`] is false: the instrumentation points create
//!   no spans of their own ([`span!`](crate::otel_span)).
//! - Trace context ([`propagation`]): W3C `traceparent`/`tracestate` read
//!   from HTTP headers, `params._meta` and NATS headers, and written into
//!   NATS headers, so one trace follows a request across the bus.

pub mod otlp;
pub mod propagation;

use crate::config::{Bus, LogFormat};
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::{
    EnvFilter, Layer, Registry, filter::Targets, fmt, layer::SubscriberExt, util::SubscriberInitExt,
};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// True once [`init_traced`] installed an OTLP exporter: spans are exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A span of an instrumentation point: `tracing::info_span!(...)` while
/// traces are exported ([`enabled`]), else `Span::none()` (nothing is
/// created or recorded).
#[macro_export]
macro_rules! otel_span {
    ($($arg:tt)*) => {
        if $crate::telemetry::enabled() {
            ::tracing::info_span!($($arg)*)
        } else {
            ::tracing::Span::none()
        }
    };
}

/// Keeps the exporter; dropping it flushes and shuts down the exporter
/// (spans still buffered are sent).
#[must_use = "dropping it shuts the exporter down"]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("trace exporter shutdown: {e}");
        }
    }
}

fn log_filter() -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn,rmcp=warn"))
}

fn log_layer(format: LogFormat) -> Box<dyn Layer<Registry> + Send + Sync> {
    let layer = fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => layer.with_filter(log_filter()).boxed(),
        LogFormat::Json => layer.json().with_filter(log_filter()).boxed(),
    }
}

/// Installs the global subscriber, logs only (the CLI). Call once, first
/// thing in `main`.
pub fn init(format: LogFormat) {
    tracing_subscriber::registry()
        .with(log_layer(format))
        .init();
}

/// Installs the global subscriber with logs and, if the bus settings or the
/// `OTEL_*` variables name an OTLP endpoint, trace export for `service`
/// (the default `service.name`). Call once, first thing in `main`, inside
/// the Tokio runtime; keep the returned value until the process ends.
pub fn init_traced(bus: &Bus, service: &'static str) -> Telemetry {
    let settings = otlp::Resolved::from(&bus.otel, |k| std::env::var(k).ok());
    let provider = match settings
        .as_ref()
        .map(|s| s.provider(service, &bus.instance_id))
    {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            eprintln!("{service}: traces are off: {e}");
            None
        }
    };
    let otel = provider.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider as _;
        // Jetway's own spans and events down to debug (the gateway's
        // "first event" and "final event"); of other crates (rmcp, the
        // exporter's own HTTP client) warnings only.
        let filter = Targets::new()
            .with_default(tracing::Level::WARN)
            .with_target("jetway", tracing::Level::DEBUG);
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("jetway"))
            .with_filter(filter)
    });
    tracing_subscriber::registry()
        .with(log_layer(bus.log_format))
        .with(otel)
        .init();
    if let (Some(s), Some(_)) = (&settings, &provider) {
        ENABLED.store(true, Ordering::Relaxed);
        tracing::info!(
            endpoint = %s.endpoint.as_deref().unwrap_or("from OTEL_EXPORTER_OTLP_*"),
            protocol = s.protocol.as_str(),
            "exporting traces over OTLP"
        );
    }
    Telemetry { provider }
}
