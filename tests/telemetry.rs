//! OpenTelemetry export, read back: an OTLP/HTTP receiver on loopback decodes what the backend
//! posts with the official opentelemetry-proto message types (an independent schema), and the
//! Prometheus endpoint is scraped over HTTP. Values are compared with what the session reported
//! in its own events and health counters.
#![cfg(feature = "test-providers")]

mod common;
mod servers;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    HistogramDataPoint, Metric, NumberDataPoint, metric, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use servers::otlp::{OtlpReceiver, scrape};
use voicebackend::{
    Backend, Error, Reply, SessionConfig, VbEventKind as K, VbStatus, VbTurnMetrics,
};

/// The value of the exposition's sample `series` (name with labels; the order of the labels
/// does not matter, as in Prometheus).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    let wanted = normalized(series);
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (normalized(name) == wanted).then(|| value.parse().unwrap())
    })
}

/// A series' name and its labels sorted (label values here never hold `,` or `}`).
fn normalized(series: &str) -> (String, Vec<String>) {
    match series.split_once('{') {
        Some((name, labels)) => {
            let mut labels: Vec<String> = labels
                .trim_end_matches('}')
                .split(',')
                .map(str::to_owned)
                .collect();
            labels.sort();
            (name.to_owned(), labels)
        }
        None => (series.to_owned(), Vec::new()),
    }
}

/// Telemetry settings: OTLP to `endpoint` (when given) every 100 ms, Prometheus on a free
/// loopback port.
fn telemetry_config(endpoint: Option<&str>) -> String {
    let otlp = endpoint.map_or("null".to_owned(), |e| format!("\"{e}\""));
    format!(
        r#""telemetry":{{"service_name":"vb-test","otlp_endpoint":{otlp},"prometheus_addr":"127.0.0.1:0","export_interval_ms":100}}"#
    )
}

fn waits_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn metric<'a>(request: &'a ExportMetricsServiceRequest, name: &str) -> Option<&'a Metric> {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)
}

fn histogram<'a>(request: &'a ExportMetricsServiceRequest, name: &str) -> &'a HistogramDataPoint {
    match metric(request, name).and_then(|m| m.data.as_ref()) {
        Some(metric::Data::Histogram(h)) => {
            assert_eq!(h.aggregation_temporality, 2, "cumulative");
            &h.data_points[0]
        }
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

/// The number points of a sum or gauge.
fn points<'a>(request: &'a ExportMetricsServiceRequest, name: &str) -> &'a [NumberDataPoint] {
    match metric(request, name).and_then(|m| m.data.as_ref()) {
        Some(metric::Data::Sum(s)) => &s.data_points,
        Some(metric::Data::Gauge(g)) => &g.data_points,
        other => panic!("{name} is not a sum or gauge: {other:?}"),
    }
}

fn int(point: &NumberDataPoint) -> i64 {
    match point.value {
        Some(number_data_point::Value::AsInt(v)) => v,
        other => panic!("not an integer: {other:?}"),
    }
}

fn double(point: &NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        other => panic!("not a double: {other:?}"),
    }
}

fn string_attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

fn int_attr(attributes: &[KeyValue], key: &str) -> Option<i64> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::IntValue(i) => Some(*i),
            _ => None,
        }
    })
}

fn sessions_active(request: &ExportMetricsServiceRequest) -> i64 {
    int(&points(request, "backend.sessions.active")[0])
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Stage latencies of a turn in µs, as the histograms record them: each stage's own share.
fn stage_us(m: &VbTurnMetrics) -> [u64; 3] {
    [
        m.stt_final_us,
        m.agent_first_text_us - m.stt_final_us,
        m.tts_first_audio_us - m.agent_first_text_us,
    ]
}

/// The same in ms.
fn stage_ms(m: &VbTurnMetrics) -> [f64; 3] {
    stage_us(m).map(|us| us as f64 / 1000.0)
}

#[test]
fn turns_reach_the_otlp_receiver_and_prometheus_as_latency_histograms_and_a_span_tree() {
    let receiver = OtlpReceiver::start();
    let backend = test_backend(&telemetry_config(Some(&receiver.endpoint())));
    let session = session_at(&backend, 16000);
    let session_id = session.id().to_owned();
    let mut turns = Vec::new();
    let mut transcripts = Vec::new();
    for f0 in [150.0, 200.0] {
        push_all(&session, &utterance(f0, 800, 16000), 16000);
        let (events, _) = play_until(&session, reply_finished());
        transcripts.extend(texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL));
        turns.extend(
            events
                .iter()
                .filter(|e| e.kind == K::VB_EVENT_TURN_METRICS)
                .map(|e| e.metrics),
        );
    }
    assert_eq!(turns.len(), 2, "one reply per turn");
    let v2v_sum: f64 = turns
        .iter()
        .map(|m| m.first_output_audio_us as f64 / 1000.0)
        .sum();

    // While the session runs: the receiver sees it active, Prometheus shows the same numbers.
    waits_until("an export counts the session active", || {
        receiver.metrics().iter().any(|r| sessions_active(r) == 1)
    });
    let address = backend
        .telemetry()
        .prometheus_addr()
        .expect("prometheus runs");
    assert!(address.ip().is_loopback());
    let (status, content_type, text) = scrape(address);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(
        sample(
            &text,
            r#"target_info{service_name="vb-test",backend_provider="local"}"#
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "backend_sessions_active"), Some(1.0));
    assert_eq!(sample(&text, "backend_latency_count"), Some(2.0));
    assert!(close(
        sample(&text, "backend_latency_sum").unwrap(),
        v2v_sum
    ));
    assert_eq!(
        sample(&text, r#"backend_latency_bucket{le="+Inf"}"#),
        Some(2.0)
    );
    for (stage, i) in [("stt", 0), ("agent", 1), ("tts", 2)] {
        let sum: f64 = turns.iter().map(|m| stage_ms(m)[i]).sum();
        assert_eq!(
            sample(&text, &format!("backend_{stage}_latency_count")),
            Some(2.0)
        );
        let scraped = sample(&text, &format!("backend_{stage}_latency_sum")).unwrap();
        assert!(close(scraped, sum), "{stage}: {scraped} != {sum}");
    }
    for series in [
        "backend_throughput",
        "backend_frames_dropped_total",
        "backend_deadline_misses_total",
    ] {
        assert!(sample(&text, series).is_some(), "{series} missing:\n{text}");
    }

    session.stop().unwrap();
    backend.stop(Duration::ZERO).unwrap();

    // The final export, made by stop.
    let exports = receiver.metrics();
    let last = exports.last().unwrap();
    let resource = last.resource_metrics[0].resource.as_ref().unwrap();
    assert_eq!(
        string_attr(&resource.attributes, "service.name").as_deref(),
        Some("vb-test")
    );
    assert_eq!(
        string_attr(&resource.attributes, "backend.provider").as_deref(),
        Some("local")
    );
    assert_eq!(sessions_active(last), 0, "the session stopped");
    let latency = histogram(last, "backend.latency");
    assert_eq!(latency.count, 2);
    assert!(close(latency.sum.unwrap(), v2v_sum));
    assert_eq!(
        latency.bucket_counts.len(),
        latency.explicit_bounds.len() + 1
    );
    assert_eq!(latency.bucket_counts.iter().sum::<u64>(), 2);
    for m in &turns {
        let ms = m.first_output_audio_us as f64 / 1000.0;
        let bucket = latency.explicit_bounds.partition_point(|&b| b < ms);
        assert!(
            latency.bucket_counts[bucket] >= 1,
            "{ms} ms not in its bucket"
        );
    }
    for (name, i) in [
        ("backend.stt.latency", 0),
        ("backend.agent.latency", 1),
        ("backend.tts.latency", 2),
    ] {
        let h = histogram(last, name);
        assert_eq!(h.count, 2, "{name}");
        let sum: f64 = turns.iter().map(|m| stage_ms(m)[i]).sum();
        assert!(close(h.sum.unwrap(), sum), "{name}: {:?} != {sum}", h.sum);
    }
    assert!(
        metric(last, "backend.errors.total").is_none(),
        "no error happened"
    );

    // The span tree.
    let spans = receiver.spans();
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let [backend_span] = named("backend")[..] else {
        panic!("one backend span: {spans:#?}")
    };
    let [session_span] = named("session")[..] else {
        panic!("one session span: {spans:#?}")
    };
    assert!(backend_span.parent_span_id.is_empty() && session_span.parent_span_id.is_empty());
    assert!(backend_span.end_time_unix_nano >= session_span.end_time_unix_nano);
    assert!(session_span.start_time_unix_nano >= backend_span.start_time_unix_nano);
    assert_eq!(backend_span.trace_id.len(), 16);
    assert_eq!(backend_span.span_id.len(), 8);
    assert_ne!(
        session_span.trace_id, backend_span.trace_id,
        "a trace per session"
    );
    assert_eq!(session_span.links.len(), 1);
    assert_eq!(session_span.links[0].trace_id, backend_span.trace_id);
    assert_eq!(session_span.links[0].span_id, backend_span.span_id);
    assert_eq!(
        string_attr(&session_span.attributes, "session.id"),
        Some(session_id)
    );
    assert_eq!(int_attr(&session_span.attributes, "session.turns"), Some(2));
    let mut turn_spans = named("turn");
    turn_spans.sort_by_key(|s| int_attr(&s.attributes, "turn.number"));
    assert_eq!(turn_spans.len(), 2);
    for (number, (turn_span, m)) in turn_spans.iter().zip(&turns).enumerate() {
        assert_eq!(
            int_attr(&turn_span.attributes, "turn.number"),
            Some(number as i64 + 1)
        );
        assert_eq!(turn_span.trace_id, session_span.trace_id);
        assert_eq!(turn_span.parent_span_id, session_span.span_id);
        assert_eq!(
            turn_span.end_time_unix_nano - turn_span.start_time_unix_nano,
            m.first_output_audio_us * 1000,
            "a turn span is the voice-to-voice interval"
        );
        let children: Vec<&Span> = spans
            .iter()
            .filter(|s| s.parent_span_id == turn_span.span_id)
            .collect();
        let names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        let mut expected_start = turn_span.start_time_unix_nano;
        for ((name, us), provider) in ["stt", "agent", "tts"].into_iter().zip(stage_us(m)).zip([
            Some("test-pitch-stt"),
            None,
            Some("test-tone-tts"),
        ]) {
            let child = children.iter().find(|s| s.name == name).expect(name);
            assert_eq!(child.trace_id, turn_span.trace_id);
            assert_eq!(child.start_time_unix_nano, expected_start, "{name}");
            assert_eq!(
                child.end_time_unix_nano - child.start_time_unix_nano,
                us * 1000,
                "{name}"
            );
            assert!(child.end_time_unix_nano <= turn_span.end_time_unix_nano);
            assert_eq!(
                string_attr(&child.attributes, "provider").as_deref(),
                provider
            );
            expected_start = child.end_time_unix_nano;
        }
    }
    let mut ids: Vec<&[u8]> = spans.iter().map(|s| &s.span_id[..]).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), spans.len(), "span ids are unique");

    // Privacy: no transcript reaches a trace.
    assert_eq!(transcripts.len(), 2);
    for body in receiver.bodies("/v1/traces") {
        for transcript in &transcripts {
            let needle = transcript.as_bytes();
            assert!(
                !body.windows(needle.len()).any(|w| w == needle),
                "a transcript was exported"
            );
        }
    }
}

#[test]
fn provider_failures_are_counted_by_status_and_provider() {
    for (section, provider) in [
        ("stt_config", "test-pitch-stt"),
        ("tts_config", "test-tone-tts"),
    ] {
        let receiver = OtlpReceiver::start();
        let backend = test_backend(&format!(
            r#""{section}":{{"fail_with":"out of order"}},{}"#,
            telemetry_config(Some(&receiver.endpoint()))
        ));
        let session = session_at(&backend, 16000);
        push_all(&session, &utterance(150.0, 800, 16000), 16000);
        let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
        let error = events.last().unwrap();
        assert_eq!(error.error, VbStatus::VB_ERR_PROVIDER);

        let series =
            format!(r#"backend_errors_total{{code="VB_ERR_PROVIDER",provider="{provider}"}}"#);
        let (_, _, text) = scrape(backend.telemetry().prometheus_addr().unwrap());
        assert_eq!(sample(&text, &series), Some(1.0), "{text}");

        drop(session);
        backend.stop(Duration::ZERO).unwrap();
        let exports = receiver.metrics();
        let errors = points(exports.last().unwrap(), "backend.errors.total");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            string_attr(&errors[0].attributes, "code").as_deref(),
            Some("VB_ERR_PROVIDER")
        );
        assert_eq!(
            string_attr(&errors[0].attributes, "provider").as_deref(),
            Some(provider)
        );
        assert_eq!(int(&errors[0]), 1);
    }
}

#[test]
fn a_failing_agent_is_counted_as_the_agent() {
    let backend = test_backend(&telemetry_config(None));
    let agent = Arc::new(|_: &str, _: &mut Reply| -> voicebackend::Result<()> {
        Err(Error::new(VbStatus::VB_ERR_TIMEOUT, "no answer"))
    });
    let session = started_session(&backend, agent);
    push_all(&session, &utterance(150.0, 800, 16000), 16000);
    events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    let (_, _, text) = scrape(backend.telemetry().prometheus_addr().unwrap());
    assert_eq!(
        sample(
            &text,
            r#"backend_errors_total{code="VB_ERR_TIMEOUT",provider="agent"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains("backend_telemetry_export_failures"),
        "no OTLP, no export metrics"
    );
}

#[test]
fn sessions_active_goes_up_and_down_with_sessions() {
    let backend = test_backend(&telemetry_config(None));
    let address = backend.telemetry().prometheus_addr().unwrap();
    let active = || sample(&scrape(address).2, "backend_sessions_active");
    assert_eq!(active(), Some(0.0));
    let first = session_at(&backend, 16000);
    let created = backend
        .create_session(SessionConfig::default(), Some(echo_agent()), None)
        .unwrap();
    assert_eq!(
        active(),
        Some(2.0),
        "created sessions count, started or not"
    );
    drop(created);
    assert_eq!(active(), Some(1.0));
    first.stop().unwrap();
    assert_eq!(active(), Some(0.0));
    assert_eq!(backend.active_sessions(), 0);
}

#[test]
fn dropped_frames_deadline_misses_and_throughput_agree_with_the_engine_counters() {
    let receiver = OtlpReceiver::start();
    let backend = test_backend(&telemetry_config(Some(&receiver.endpoint())));
    let session = session_at(&backend, 16000);
    push_all(&session, &utterance(150.0, 800, 16000), 16000);
    // More than the input ring holds in one call: the rest is dropped and counted.
    let outcome = session.process_audio(&speech(150.0, 2000, 16000)).unwrap();
    assert!(outcome.dropped > 0);
    waits_until("the realtime thread heard everything", || {
        session.all_audio_heard()
    });
    waits_until("an export saw frames processed", || {
        receiver
            .metrics()
            .iter()
            .any(|r| double(&points(r, "backend.throughput")[0]) > 0.0)
    });
    session.stop().unwrap();
    backend.stop(Duration::ZERO).unwrap();
    let health = backend.health();
    assert!(health.frames_dropped > 0);

    let exports = receiver.metrics();
    let last = exports.last().unwrap();
    let counter = |name| {
        let point = &points(last, name)[0];
        int(point) as u64
    };
    assert_eq!(counter("backend.frames.dropped"), health.frames_dropped);
    assert_eq!(counter("backend.deadline.misses"), health.deadline_misses);
    // Each export's throughput covers the time since the previous one: windows chain without
    // gaps, and rate × window adds up to every frame processed.
    let mut frames = 0.0;
    let mut previous_end = None;
    for export in &exports {
        let point = &points(export, "backend.throughput")[0];
        if let Some(end) = previous_end {
            assert_eq!(point.start_time_unix_nano, end, "windows chain");
        }
        previous_end = Some(point.time_unix_nano);
        frames += double(point) * (point.time_unix_nano - point.start_time_unix_nano) as f64 / 1e9;
    }
    // The SDK stamps each window a few microseconds after the callback measured its rate, so
    // rate × window matches the frames to within a small fraction (a window missing or counted
    // twice would be off by a whole window's frames).
    assert!(
        (frames - health.frames_processed as f64).abs() < 0.01 * health.frames_processed as f64,
        "{frames} frames from throughput, {} processed",
        health.frames_processed
    );
}

#[test]
fn an_unreachable_otlp_endpoint_leaves_conversations_alone_and_is_counted() {
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = test_backend(&telemetry_config(Some(&format!(
        "http://127.0.0.1:{closed_port}"
    ))));
    let session = session_at(&backend, 16000);
    for f0 in [150.0, 200.0] {
        push_all(&session, &utterance(f0, 800, 16000), 16000);
        let (events, audio) = play_until(&session, reply_finished());
        assert_eq!(
            kinds(&events)
                .iter()
                .filter(|k| **k == K::VB_EVENT_TURN_METRICS)
                .count(),
            1
        );
        assert!(!audio.is_empty(), "the reply was heard");
        assert!(!kinds(&events).contains(&K::VB_EVENT_ERROR));
    }
    waits_until("failed exports are counted", || {
        backend.telemetry().export_failures() > 0
    });
    let (_, _, text) = scrape(backend.telemetry().prometheus_addr().unwrap());
    let failed = sample(
        &text,
        r#"backend_telemetry_export_failures_total{signal="metrics"}"#,
    );
    assert!(failed.is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(sample(&text, "backend_latency_count"), Some(2.0));
    drop(session);
    backend.stop(Duration::ZERO).unwrap();
}

#[test]
fn speech_to_speech_turns_are_measured_too() {
    let backend = Backend::from_json(&format!(
        r#"{{"provider":"local","pipeline_type":"s2s","s2s_provider":"test-echo-s2s",{}}}"#,
        telemetry_config(None)
    ))
    .unwrap();
    backend.start().unwrap();
    let session = backend
        .create_session(SessionConfig::default(), None, None)
        .unwrap();
    session.start().unwrap();
    push_all(&session, &utterance(150.0, 800, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_TURN_METRICS);
    let m = events.last().unwrap().metrics;
    let (_, _, text) = scrape(backend.telemetry().prometheus_addr().unwrap());
    assert_eq!(sample(&text, "backend_latency_count"), Some(1.0));
    assert!(close(
        sample(&text, "backend_latency_sum").unwrap(),
        m.first_output_audio_us as f64 / 1000.0
    ));
    assert_eq!(sample(&text, "backend_stt_latency_count"), Some(1.0));
}

#[test]
fn a_prometheus_address_in_use_fails_start_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let backend = Backend::from_json(&format!(
        r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts","telemetry":{{"prometheus_addr":"{address}"}}}}"#
    ))
    .unwrap();
    let e = backend.start().unwrap_err();
    assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG);
    assert!(e.message().contains("telemetry.prometheus_addr"), "{e}");
    assert!(e.message().contains(&address.to_string()), "{e}");
    let refused = backend
        .create_session(SessionConfig::default(), Some(echo_agent()), None)
        .unwrap_err();
    assert_eq!(
        refused.status(),
        VbStatus::VB_ERR_INVALID_STATE,
        "not started"
    );
}

#[test]
fn an_otlp_endpoint_that_is_not_an_http_url_is_refused_at_creation() {
    for endpoint in ["127.0.0.1:4318", "grpc://127.0.0.1:4317"] {
        let e = Backend::from_json(&format!(
            r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts","telemetry":{{"otlp_endpoint":"{endpoint}"}}}}"#
        ))
        .unwrap_err();
        assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG);
        assert!(e.message().starts_with("telemetry.otlp_endpoint: "), "{e}");
    }
}
