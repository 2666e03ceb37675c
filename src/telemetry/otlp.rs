//! OTLP over HTTP with protobuf bodies: the export messages (field numbers as in the official
//! opentelemetry-proto files: `collector/{metrics,trace}/v1/*_service.proto`,
//! `metrics/v1/metrics.proto`, `trace/v1/trace.proto`, `common/v1/common.proto`,
//! `resource/v1/resource.proto`; fields this engine never sets are left out, which protobuf
//! allows), their construction from a collection or from finished spans, and the HTTP client that
//! posts them. Runs on the backend's I/O runtime.

use std::time::Duration;

use prost::Message;

use super::Collection;
use super::metrics::{Attributes, Kind, MetricPoints, Value};
use super::trace::{AttrValue, SpanData};
use crate::error::{Error, Result};
use crate::net::redact_url;

/// How long one export request may take before it counts as failed.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The protobuf messages.
pub mod proto {
    /// `opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportMetricsServiceRequest {
        /// `resource_metrics = 1`.
        #[prost(message, repeated, tag = "1")]
        pub resource_metrics: Vec<ResourceMetrics>,
    }

    /// `opentelemetry.proto.metrics.v1.ResourceMetrics`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceMetrics {
        /// `resource = 1`.
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        /// `scope_metrics = 2`.
        #[prost(message, repeated, tag = "2")]
        pub scope_metrics: Vec<ScopeMetrics>,
    }

    /// `opentelemetry.proto.metrics.v1.ScopeMetrics`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeMetrics {
        /// `scope = 1`.
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        /// `metrics = 2`.
        #[prost(message, repeated, tag = "2")]
        pub metrics: Vec<Metric>,
    }

    /// `opentelemetry.proto.metrics.v1.Metric`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        /// `name = 1`.
        #[prost(string, tag = "1")]
        pub name: String,
        /// `description = 2`.
        #[prost(string, tag = "2")]
        pub description: String,
        /// `unit = 3`.
        #[prost(string, tag = "3")]
        pub unit: String,
        /// `oneof data`.
        #[prost(oneof = "MetricData", tags = "5, 7, 9")]
        pub data: Option<MetricData>,
    }

    /// `Metric.data`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum MetricData {
        /// `gauge = 5`.
        #[prost(message, tag = "5")]
        Gauge(Gauge),
        /// `sum = 7`.
        #[prost(message, tag = "7")]
        Sum(Sum),
        /// `histogram = 9`.
        #[prost(message, tag = "9")]
        Histogram(Histogram),
    }

    /// `AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE`.
    pub const AGGREGATION_TEMPORALITY_CUMULATIVE: i32 = 2;

    /// `opentelemetry.proto.metrics.v1.Gauge`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Gauge {
        /// `data_points = 1`.
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<NumberDataPoint>,
    }

    /// `opentelemetry.proto.metrics.v1.Sum`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sum {
        /// `data_points = 1`.
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<NumberDataPoint>,
        /// `aggregation_temporality = 2` (an enum: varint on the wire).
        #[prost(int32, tag = "2")]
        pub aggregation_temporality: i32,
        /// `is_monotonic = 3`.
        #[prost(bool, tag = "3")]
        pub is_monotonic: bool,
    }

    /// `opentelemetry.proto.metrics.v1.Histogram`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        /// `data_points = 1`.
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<HistogramDataPoint>,
        /// `aggregation_temporality = 2`.
        #[prost(int32, tag = "2")]
        pub aggregation_temporality: i32,
    }

    /// `opentelemetry.proto.metrics.v1.NumberDataPoint`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NumberDataPoint {
        /// `attributes = 7`.
        #[prost(message, repeated, tag = "7")]
        pub attributes: Vec<KeyValue>,
        /// `start_time_unix_nano = 2`.
        #[prost(fixed64, tag = "2")]
        pub start_time_unix_nano: u64,
        /// `time_unix_nano = 3`.
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        /// `oneof value`.
        #[prost(oneof = "NumberValue", tags = "4, 6")]
        pub value: Option<NumberValue>,
    }

    /// `NumberDataPoint.value`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum NumberValue {
        /// `as_double = 4`.
        #[prost(double, tag = "4")]
        AsDouble(f64),
        /// `as_int = 6`.
        #[prost(sfixed64, tag = "6")]
        AsInt(i64),
    }

    /// `opentelemetry.proto.metrics.v1.HistogramDataPoint`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HistogramDataPoint {
        /// `attributes = 9`.
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        /// `start_time_unix_nano = 2`.
        #[prost(fixed64, tag = "2")]
        pub start_time_unix_nano: u64,
        /// `time_unix_nano = 3`.
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        /// `count = 4`.
        #[prost(fixed64, tag = "4")]
        pub count: u64,
        /// `optional double sum = 5`.
        #[prost(double, optional, tag = "5")]
        pub sum: Option<f64>,
        /// `bucket_counts = 6` (packed).
        #[prost(fixed64, repeated, tag = "6")]
        pub bucket_counts: Vec<u64>,
        /// `explicit_bounds = 7` (packed).
        #[prost(double, repeated, tag = "7")]
        pub explicit_bounds: Vec<f64>,
        /// `optional double min = 11`.
        #[prost(double, optional, tag = "11")]
        pub min: Option<f64>,
        /// `optional double max = 12`.
        #[prost(double, optional, tag = "12")]
        pub max: Option<f64>,
    }

    /// `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceRequest {
        /// `resource_spans = 1`.
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }

    /// `opentelemetry.proto.trace.v1.ResourceSpans`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        /// `resource = 1`.
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        /// `scope_spans = 2`.
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }

    /// `opentelemetry.proto.trace.v1.ScopeSpans`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        /// `scope = 1`.
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        /// `spans = 2`.
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }

    /// `Span.SpanKind.SPAN_KIND_INTERNAL`.
    pub const SPAN_KIND_INTERNAL: i32 = 1;

    /// `opentelemetry.proto.trace.v1.Span`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        /// `trace_id = 1` (16 bytes).
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        /// `span_id = 2` (8 bytes).
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        /// `parent_span_id = 4` (empty for a root span).
        #[prost(bytes = "vec", tag = "4")]
        pub parent_span_id: Vec<u8>,
        /// `name = 5`.
        #[prost(string, tag = "5")]
        pub name: String,
        /// `kind = 6` (an enum).
        #[prost(int32, tag = "6")]
        pub kind: i32,
        /// `start_time_unix_nano = 7`.
        #[prost(fixed64, tag = "7")]
        pub start_time_unix_nano: u64,
        /// `end_time_unix_nano = 8`.
        #[prost(fixed64, tag = "8")]
        pub end_time_unix_nano: u64,
        /// `attributes = 9`.
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        /// `links = 13`.
        #[prost(message, repeated, tag = "13")]
        pub links: Vec<SpanLink>,
    }

    /// `opentelemetry.proto.trace.v1.Span.Link`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SpanLink {
        /// `trace_id = 1`.
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        /// `span_id = 2`.
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
    }

    /// `opentelemetry.proto.resource.v1.Resource`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        /// `attributes = 1`.
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    /// `opentelemetry.proto.common.v1.InstrumentationScope`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InstrumentationScope {
        /// `name = 1`.
        #[prost(string, tag = "1")]
        pub name: String,
        /// `version = 2`.
        #[prost(string, tag = "2")]
        pub version: String,
    }

    /// `opentelemetry.proto.common.v1.KeyValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        /// `key = 1`.
        #[prost(string, tag = "1")]
        pub key: String,
        /// `value = 2`.
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    /// `opentelemetry.proto.common.v1.AnyValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        /// `oneof value`.
        #[prost(oneof = "AnyValueKind", tags = "1, 3")]
        pub value: Option<AnyValueKind>,
    }

    /// `AnyValue.value`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum AnyValueKind {
        /// `string_value = 1`.
        #[prost(string, tag = "1")]
        StringValue(String),
        /// `int_value = 3`.
        #[prost(int64, tag = "3")]
        IntValue(i64),
    }
}

use proto::*;

/// Posts export requests to one OTLP/HTTP endpoint.
pub struct OtlpClient {
    http: reqwest::Client,
    metrics_url: String,
    traces_url: String,
}

/// Which kind of data a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `/v1/metrics`.
    Metrics,
    /// `/v1/traces`.
    Traces,
}

impl Signal {
    /// The name in the `signal` attribute of the export failure counter.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
        }
    }
}

impl OtlpClient {
    /// A client for `endpoint` (`http(s)://host[:port][/base]`); anything else is
    /// `VB_ERR_INVALID_CONFIG` naming `telemetry.otlp_endpoint`.
    pub fn new(endpoint: &str) -> Result<Self> {
        let invalid = |why: &str| {
            Error::invalid_config(format!(
                "telemetry.otlp_endpoint: '{}' {why}",
                redact_url(endpoint)
            ))
        };
        let url = reqwest::Url::parse(endpoint).map_err(|_| invalid("is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid("is not an http:// or https:// URL with a host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must not have a query or fragment"));
        }
        let base = endpoint.trim_end_matches('/');
        let http = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| {
                Error::internal(format!("telemetry: could not create the HTTP client: {e}"))
            })?;
        Ok(OtlpClient {
            http,
            metrics_url: format!("{base}/v1/metrics"),
            traces_url: format!("{base}/v1/traces"),
        })
    }

    /// Posts one encoded request; whether it was delivered and accepted (a 2xx status).
    pub async fn post(&self, signal: Signal, body: Vec<u8>) -> bool {
        let url = match signal {
            Signal::Metrics => &self.metrics_url,
            Signal::Traces => &self.traces_url,
        };
        self.http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    }
}

/// The encoded `ExportMetricsServiceRequest` of a collection.
pub fn encode_metrics(collection: &Collection) -> Vec<u8> {
    let metrics = collection
        .metrics
        .iter()
        .map(|m| metric(m, collection))
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(&collection.resource)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
            }],
        }],
    }
    .encode_to_vec()
}

/// The encoded `ExportTraceServiceRequest` of finished spans.
pub fn encode_spans(resource_attributes: &Attributes, spans: &[SpanData]) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(resource_attributes)),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans: spans.iter().map(span).collect(),
            }],
        }],
    }
    .encode_to_vec()
}

fn metric(m: &MetricPoints, c: &Collection) -> Metric {
    let instrument = m.instrument;
    // Cumulative points count from the backend's start; a gauge covers the sampling window.
    let start = match instrument.kind {
        Kind::Gauge => c.window_start_unix_ns,
        _ => c.start_unix_ns,
    };
    let number_points = || {
        m.points
            .iter()
            .map(|(attributes, value)| NumberDataPoint {
                attributes: key_values(attributes),
                start_time_unix_nano: start,
                time_unix_nano: c.time_unix_ns,
                value: match value {
                    Value::Int(v) => Some(NumberValue::AsInt(*v)),
                    Value::Double(v) => Some(NumberValue::AsDouble(*v)),
                    Value::Histogram(_) => None,
                },
            })
            .collect()
    };
    let data = match instrument.kind {
        Kind::Counter | Kind::UpDownCounter => MetricData::Sum(Sum {
            data_points: number_points(),
            aggregation_temporality: AGGREGATION_TEMPORALITY_CUMULATIVE,
            is_monotonic: instrument.kind == Kind::Counter,
        }),
        Kind::Gauge => MetricData::Gauge(Gauge {
            data_points: number_points(),
        }),
        Kind::Histogram(bounds) => MetricData::Histogram(Histogram {
            data_points: m
                .points
                .iter()
                .filter_map(|(attributes, value)| match value {
                    Value::Histogram(h) => Some(HistogramDataPoint {
                        attributes: key_values(attributes),
                        start_time_unix_nano: start,
                        time_unix_nano: c.time_unix_ns,
                        count: h.count,
                        sum: Some(h.sum),
                        bucket_counts: h.bucket_counts.clone(),
                        explicit_bounds: bounds.to_vec(),
                        min: (h.count > 0).then_some(h.min),
                        max: (h.count > 0).then_some(h.max),
                    }),
                    _ => None,
                })
                .collect(),
            aggregation_temporality: AGGREGATION_TEMPORALITY_CUMULATIVE,
        }),
    };
    Metric {
        name: instrument.name.to_owned(),
        description: instrument.description.to_owned(),
        unit: instrument.unit.to_owned(),
        data: Some(data),
    }
}

fn span(s: &SpanData) -> Span {
    Span {
        trace_id: s.context.trace_id.to_vec(),
        span_id: s.context.span_id.to_vec(),
        parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: s.name.to_owned(),
        kind: SPAN_KIND_INTERNAL,
        start_time_unix_nano: s.start_unix_ns,
        end_time_unix_nano: s.end_unix_ns,
        attributes: span_attributes(&s.attributes),
        links: s
            .links
            .iter()
            .map(|l| SpanLink {
                trace_id: l.trace_id.to_vec(),
                span_id: l.span_id.to_vec(),
            })
            .collect(),
    }
}

fn resource(attributes: &Attributes) -> Resource {
    Resource {
        attributes: key_values(attributes),
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: env!("CARGO_PKG_NAME").to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

fn key_value(key: &str, value: AnyValueKind) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

fn key_values(attributes: &Attributes) -> Vec<KeyValue> {
    attributes
        .iter()
        .map(|(k, v)| key_value(k, AnyValueKind::StringValue(v.clone())))
        .collect()
}

fn span_attributes(attributes: &[(&'static str, AttrValue)]) -> Vec<KeyValue> {
    attributes
        .iter()
        .map(|(k, v)| {
            key_value(
                k,
                match v {
                    AttrValue::Str(s) => AnyValueKind::StringValue(s.clone()),
                    AttrValue::Int(i) => AnyValueKind::IntValue(*i),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_plain_http_urls() {
        for bad in [
            "localhost:4318",
            "ftp://127.0.0.1",
            "http://",
            "http://h/?k=secret",
        ] {
            let e = OtlpClient::new(bad).err().expect(bad);
            assert_eq!(e.status(), crate::VbStatus::VB_ERR_INVALID_CONFIG);
            assert!(e.message().starts_with("telemetry.otlp_endpoint: "), "{e}");
            assert!(!e.message().contains("secret"), "{e}");
        }
        let client = OtlpClient::new("http://127.0.0.1:4318/otel/").unwrap();
        assert_eq!(client.metrics_url, "http://127.0.0.1:4318/otel/v1/metrics");
        assert_eq!(client.traces_url, "http://127.0.0.1:4318/otel/v1/traces");
    }
}
