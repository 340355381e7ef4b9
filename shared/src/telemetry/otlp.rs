//! The OTLP trace exporter: Jetway's `otel_*` settings first, then the
//! standard `OTEL_*` variables, then OpenTelemetry's defaults.
//!
//! | what      | Jetway setting   | standard variable(s)                                                   | default         |
//! |-----------|------------------|------------------------------------------------------------------------|-----------------|
//! | endpoint  | `otel_endpoint`  | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`    | none: off       |
//! | protocol  | `otel_protocol`  | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL`    | `http/protobuf` |
//! | sampling  | `otel_sampling`  | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`                       | parent-based, 1.0 |
//!
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn export off
//! whatever is set. `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name
//! the service (default: the binary's name); `service.instance.id` is the
//! instance id. The batch processor reads `OTEL_BSP_*`.

use crate::config::Otel;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol as OtlpProtocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::{
    Resource,
    trace::{Sampler, SdkTracerProvider},
};
use serde::{Deserialize, Serialize};

/// How spans are sent to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// OTLP/gRPC (port 4317 by convention).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318; `/v1/traces`).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "grpc" => Some(Protocol::Grpc),
            "http/protobuf" => Some(Protocol::HttpProtobuf),
            _ => None,
        }
    }
}

/// Why the exporter could not be built (traces stay off).
#[derive(Debug, thiserror::Error)]
pub enum ExportSetupError {
    #[error("{0}: not a known OTLP protocol (grpc or http/protobuf)")]
    Protocol(String),
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The exporter's settings once configuration and environment are merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// From `otel_endpoint`; `None` when the `OTEL_EXPORTER_OTLP_*`
    /// variable is used (the exporter reads it itself).
    pub endpoint: Option<String>,
    pub protocol: Protocol,
    /// The ratio of a parent-based ratio sampler; `None` leaves the sampler
    /// to `OTEL_TRACES_SAMPLER` (set).
    pub sampling: Option<f64>,
    /// A protocol variable that names no known protocol.
    bad_protocol: Option<String>,
}

impl Resolved {
    /// `None` if traces are off. `env` reads an environment variable.
    pub fn from(otel: &Otel, env: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none")
        {
            return None;
        }
        let from_env = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .is_some();
        if otel.endpoint.is_none() && !from_env {
            return None;
        }
        let env_protocol = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let (protocol, bad_protocol) = match (otel.protocol, env_protocol) {
            (Some(p), _) => (p, None),
            (None, Some(v)) => match Protocol::parse(&v) {
                Some(p) => (p, None),
                None => (Protocol::HttpProtobuf, Some(v)),
            },
            (None, None) => (Protocol::HttpProtobuf, None),
        };
        let sampling = match otel.sampling {
            Some(r) => Some(r),
            None if set("OTEL_TRACES_SAMPLER").is_some() => None,
            None => Some(1.0),
        };
        Some(Self {
            endpoint: otel.endpoint.as_deref().map(|e| endpoint_for(e, protocol)),
            protocol,
            sampling,
            bad_protocol,
        })
    }

    /// Builds the tracer provider: a batch processor exporting to the
    /// endpoint, the sampler, and the resource naming this process.
    pub fn provider(
        &self,
        service: &'static str,
        instance: &str,
    ) -> Result<SdkTracerProvider, ExportSetupError> {
        if let Some(bad) = &self.bad_protocol {
            return Err(ExportSetupError::Protocol(bad.clone()));
        }
        let exporter = match self.protocol {
            Protocol::Grpc => {
                let b = SpanExporter::builder()
                    .with_tonic()
                    .with_protocol(OtlpProtocol::Grpc);
                match &self.endpoint {
                    Some(e) => b.with_endpoint(e).build()?,
                    None => b.build()?,
                }
            }
            Protocol::HttpProtobuf => {
                let b = SpanExporter::builder()
                    .with_http()
                    .with_protocol(OtlpProtocol::HttpBinary);
                match &self.endpoint {
                    Some(e) => b.with_endpoint(e).build()?,
                    None => b.build()?,
                }
            }
        };
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(service);
        }
        let resource = resource
            .with_attribute(KeyValue::new("service.instance.id", instance.to_owned()))
            .build();
        let mut builder = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource);
        if let Some(ratio) = self.sampling {
            builder = builder.with_sampler(Sampler::ParentBased(Box::new(
                Sampler::TraceIdRatioBased(ratio),
            )));
        }
        Ok(builder.build())
    }
}

/// `otel_endpoint` is a base URL like `OTEL_EXPORTER_OTLP_ENDPOINT`: over
/// HTTP the traces path `/v1/traces` is appended.
fn endpoint_for(base: &str, protocol: Protocol) -> String {
    match protocol {
        Protocol::Grpc => base.to_owned(),
        Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(otel: Otel, env: &[(&str, &str)]) -> Option<Resolved> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Resolved::from(&otel, |k| env.get(k).cloned())
    }

    #[test]
    fn off_without_an_endpoint() {
        assert_eq!(resolve(Otel::default(), &[]), None);
        assert_eq!(
            resolve(Otel::default(), &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            None
        );
    }

    #[test]
    fn jetway_settings_come_before_the_standard_variables() {
        let otel = Otel {
            endpoint: Some("http://127.0.0.1:4318/".into()),
            protocol: None,
            sampling: Some(0.25),
        };
        let r = resolve(
            otel,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_TRACES_SAMPLER", "always_off"),
            ],
        )
        .expect("on");
        assert_eq!(r.protocol, Protocol::Grpc);
        assert_eq!(r.endpoint.as_deref(), Some("http://127.0.0.1:4318/"));
        assert_eq!(r.sampling, Some(0.25));
    }

    #[test]
    fn standard_variables_alone_turn_export_on() {
        let r = resolve(
            Otel::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")],
        )
        .expect("on");
        assert_eq!(r.endpoint, None, "the exporter reads the variable itself");
        assert_eq!(r.protocol, Protocol::HttpProtobuf);
        assert_eq!(r.sampling, Some(1.0));
        let r = resolve(
            Otel::default(),
            &[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://c:4318/v1/traces",
                ),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ],
        )
        .expect("on");
        assert_eq!(r.sampling, None, "the SDK reads OTEL_TRACES_SAMPLER");
    }

    #[test]
    fn the_http_path_is_appended_to_a_configured_base() {
        let otel = Otel {
            endpoint: Some("http://127.0.0.1:4318".into()),
            protocol: Some(Protocol::HttpProtobuf),
            sampling: None,
        };
        let r = resolve(otel, &[]).expect("on");
        assert_eq!(
            r.endpoint.as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
    }

    #[test]
    fn disabled_by_the_standard_switches() {
        let otel = Otel {
            endpoint: Some("http://127.0.0.1:4318".into()),
            ..Otel::default()
        };
        assert_eq!(
            resolve(otel.clone(), &[("OTEL_SDK_DISABLED", "true")]),
            None
        );
        assert_eq!(resolve(otel, &[("OTEL_TRACES_EXPORTER", "none")]), None);
    }

    #[test]
    fn an_unknown_protocol_variable_is_an_error() {
        let r = resolve(
            Otel::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ],
        )
        .expect("on");
        assert!(matches!(
            r.provider("t", "i"),
            Err(ExportSetupError::Protocol(p)) if p == "http/json"
        ));
    }
}
