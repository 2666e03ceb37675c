//! Log records, as a host receives them through `voicebackend::logging::forward` (what
//! `vb_set_log_callback` installs): sessions' records carry their span, transcripts and replies
//! appear only where the privacy policy allows, the host's level filters, a slow sink loses
//! records without slowing the engine and is told how many.
#![cfg(feature = "test-providers")]

mod common;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use voicebackend::logging::{self, Level, LevelFilter, LogRecord};
use voicebackend::{VbEventKind as K, VbStatus};

/// The sink is process-wide: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forwards records at `level` into the returned list.
fn collect(level: LevelFilter) -> Arc<Mutex<Vec<LogRecord>>> {
    let records = Arc::new(Mutex::new(Vec::new()));
    let sink = records.clone();
    logging::forward(
        Some(Box::new(move |r: &LogRecord| {
            sink.lock().unwrap().push(r.clone())
        })),
        level,
    )
    .unwrap();
    records
}

/// Waits until a record satisfies `found` (records arrive on the log thread).
fn wait_for(records: &Mutex<Vec<LogRecord>>, what: &str, found: impl Fn(&LogRecord) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !records.lock().unwrap().iter().any(&found) {
        assert!(
            Instant::now() < deadline,
            "no record {what}: {:#?}",
            records.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stop_forwarding() {
    logging::forward(None, LevelFilter::OFF).unwrap();
}

/// One turn on a backend with `log_transcripts`; the session's id and its transcript.
fn one_turn(log_transcripts: bool) -> (String, String) {
    let backend = test_backend(&format!(
        r#""privacy":{{"log_transcripts":{log_transcripts}}},"persistence":{{"path":""}}"#
    ));
    let session = session_at(&backend, 16000);
    push_all(&session, &utterance(150.0, 800, 16000), 16000);
    let (events, _) = play_until(&session, reply_finished());
    let transcript = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL).remove(0);
    let id = session.id().to_owned();
    session.stop().unwrap();
    backend.stop(Duration::ZERO).unwrap();
    (id, transcript)
}

#[test]
fn a_session_s_records_carry_its_span_and_its_transcript_only_when_the_policy_allows() {
    let _serial = serial();
    let records = collect(LevelFilter::DEBUG);
    let (hidden_id, hidden) = one_turn(false);
    let (shown_id, shown) = one_turn(true);
    wait_for(&records, "of the second session stopping", |r| {
        r.message.contains(&shown_id) && r.message.ends_with("session stopped")
    });
    stop_forwarding();
    let records = records.lock().unwrap().clone();
    let of = |id: &str| -> Vec<LogRecord> {
        records
            .iter()
            .filter(|r| r.message.contains(&format!("session{{session.id={id}}}")))
            .cloned()
            .collect()
    };
    for id in [&hidden_id, &shown_id] {
        let session = of(id);
        for message in [
            "session created",
            "session started",
            "final transcript",
            "agent response",
            "turn played",
            "session stopped",
        ] {
            assert!(
                session.iter().any(|r| r.message.contains(message)),
                "{id}: no '{message}' in {session:#?}"
            );
        }
        assert!(session.iter().all(|r| r.target.starts_with("voicebackend")));
        assert!(
            session
                .iter()
                .any(|r| r.message.starts_with("backend{provider=local}:session{")),
            "sessions are inside their backend's span: {session:#?}"
        );
    }
    // The turn's own work (STT) runs in its turn span.
    assert!(
        records.iter().all(|r| r.level <= Level::DEBUG),
        "nothing above the host's level"
    );
    let hidden_records = of(&hidden_id);
    assert!(
        hidden_records.iter().all(|r| !r.message.contains(&hidden)),
        "a transcript was logged against the policy: {hidden_records:#?}"
    );
    let transcript = hidden_records
        .iter()
        .find(|r| r.message.contains("final transcript"))
        .unwrap();
    assert!(
        transcript.message.contains("chars="),
        "its length instead: {transcript:?}"
    );
    let shown_records = of(&shown_id);
    assert!(
        shown_records
            .iter()
            .any(|r| r.message.contains(&format!("transcript={shown:?}"))),
        "the allowed transcript was logged: {shown_records:#?}"
    );
    assert!(
        shown_records
            .iter()
            .any(|r| r.message.contains(&format!("reply=\"you said {shown}\""))),
        "the allowed reply was logged: {shown_records:#?}"
    );
}

#[test]
fn errors_are_warnings_naming_the_provider_and_the_level_filters() {
    let _serial = serial();
    let records = collect(LevelFilter::WARN);
    let backend = test_backend(r#""stt_config":{"fail_with":"out of order"}"#);
    let session = session_at(&backend, 16000);
    push_all(&session, &utterance(150.0, 800, 16000), 16000);
    events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    let id = session.id().to_owned();
    wait_for(&records, "of the provider's failure", |r| {
        r.message.contains(&id) && r.message.contains("out of order")
    });
    session.stop().unwrap();
    backend.stop(Duration::ZERO).unwrap();
    stop_forwarding();
    let records = records.lock().unwrap().clone();
    let error = records
        .iter()
        .find(|r| r.message.contains("out of order"))
        .unwrap();
    assert_eq!(error.level, Level::WARN);
    assert!(
        error.message.contains("provider=\"test-pitch-stt\""),
        "{error:?}"
    );
    assert!(
        error
            .message
            .contains(&format!("code=\"{}\"", VbStatus::VB_ERR_PROVIDER.name())),
        "{error:?}"
    );
    assert!(
        records.iter().all(|r| r.level <= Level::WARN),
        "no info or debug records at WARN: {records:#?}"
    );
}

#[test]
fn a_slow_sink_loses_records_without_slowing_the_engine_and_is_told_how_many() {
    let _serial = serial();
    // The sink is stuck (on the gate) until every record has been logged.
    let gate = Arc::new(Mutex::new(()));
    let closed = gate.lock().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (sink, sink_gate) = (seen.clone(), gate.clone());
    logging::forward(
        Some(Box::new(move |r: &LogRecord| {
            drop(sink_gate.lock().unwrap());
            sink.lock().unwrap().push(r.clone());
        })),
        LevelFilter::INFO,
    )
    .unwrap();
    let before = logging::forward::dropped_total();
    let started = Instant::now();
    let records = logging::forward::QUEUE_CAPACITY + 500;
    for i in 0..records {
        tracing::info!(target: "voicebackend::test", i, "flood");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "logging waited for the sink: {:?}",
        started.elapsed()
    );
    drop(closed);
    let deadline = Instant::now() + PATIENCE;
    while !seen
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.message.contains("log records were dropped"))
    {
        assert!(Instant::now() < deadline, "no notice of dropped records");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_forwarding();
    let dropped = logging::forward::dropped_total() - before;
    assert!(dropped >= 499, "{dropped} dropped");
    let seen = seen.lock().unwrap();
    let delivered = seen.iter().filter(|r| r.message.contains("flood")).count();
    assert_eq!(
        delivered as u64 + dropped,
        records as u64,
        "every record is delivered or counted"
    );
    let notice = seen
        .iter()
        .find(|r| r.message.contains("log records were dropped"))
        .unwrap();
    assert_eq!(notice.level, Level::WARN);
    assert!(
        notice
            .message
            .starts_with(&format!("{dropped} log records")),
        "{notice:?}"
    );
}

#[test]
fn after_forwarding_stops_the_sink_is_never_called_again() {
    let _serial = serial();
    let records = collect(LevelFilter::INFO);
    tracing::info!(target: "voicebackend::test", "before");
    wait_for(&records, "before stopping", |r| r.message == "before");
    stop_forwarding();
    let count = records.lock().unwrap().len();
    tracing::error!(target: "voicebackend::test", "after");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(records.lock().unwrap().len(), count);
}
