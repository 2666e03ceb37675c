//! How a row of the fault matrix (`tests/provider_faults.rs`) runs: its vendor's server with the
//! fault armed, a backend and a session on it, the turns the row asks for, and what holds in
//! every row (the error's status and whole message, the session listening again with the host
//! told so and no second error, the key never shown, the attempts the server saw).

use std::time::{Duration, Instant};

use super::{Fault, Outcome, Vendor, VendorServer};
use crate::common::{self, *};
use serde_json::Value;
use voicebackend::{Backend, Event, Session, VbEventKind as K, VbSessionState as S, VbStatus};

use Then::{ListensAgain, NextTurnAnswered, Resumed, TurnGoesOn};
use When::{SessionStart, Turn, UserSpeaking};

/// When the host sees the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// As the session starts (the provider connects then), and again at every turn.
    SessionStart,
    /// While the user is still speaking: the turn fails before it ends.
    UserSpeaking,
    /// During the turn, after the user's speech (or the agent's `say`).
    Turn,
}

/// What follows the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// The session is listening again; each of `turns` turns fails the same way.
    ListensAgain { turns: usize },
    /// The turn goes on: its result arrives after the error.
    TurnGoesOn,
    /// Once the server behaves again, the next turn is answered without an error.
    NextTurnAnswered,
    /// There is no error: the provider resumed or retried and the turn's result is whole.
    Resumed,
}

/// One row of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub vendor: Vendor,
    pub fault: Fault,
    /// Merged into the provider's config section (a JSON object).
    pub config: &'static str,
    /// Merged into the backend's config (a JSON object).
    pub backend: &'static str,
    /// The error the host sees, and its whole message (`*` stands for any text).
    pub error: Option<(VbStatus, &'static str)>,
    pub when: When,
    pub then: Then,
    /// The connections or requests the server saw in all.
    pub attempts: usize,
    /// The HTTP status the server refused every one of them with; `None`: it took them all.
    pub refused: Option<u16>,
}

/// A row of `vendor` and `fault`, filled in with the methods below. Unless they say otherwise,
/// the error comes during the turn, the session listens again after that one failed turn, and
/// the server saw one attempt and took it.
pub const fn row(vendor: Vendor, fault: Fault) -> Row {
    Row {
        vendor,
        fault,
        config: "{}",
        backend: "{}",
        error: None,
        when: Turn,
        then: ListensAgain { turns: 1 },
        attempts: 1,
        refused: None,
    }
}

impl Row {
    pub const fn config(mut self, json: &'static str) -> Row {
        self.config = json;
        self
    }
    pub const fn backend(mut self, json: &'static str) -> Row {
        self.backend = json;
        self
    }
    pub const fn error(mut self, status: VbStatus, message: &'static str) -> Row {
        self.error = Some((status, message));
        self
    }
    pub const fn when(mut self, when: When) -> Row {
        self.when = when;
        self
    }
    pub const fn then(mut self, then: Then) -> Row {
        self.then = then;
        self
    }
    pub const fn attempts(mut self, attempts: usize) -> Row {
        self.attempts = attempts;
        self
    }
    pub const fn refused(mut self, status: u16) -> Row {
        self.refused = Some(status);
        self
    }
}

/// Runs `row`: its vendor's server with the fault armed, a backend and a session on it, the
/// turns the row's `then` asks for; then what holds in every row.
pub fn run(row: Row) {
    let server = row.vendor.start(row.fault);
    let key = match row.fault {
        Fault::RefusedKey => row.vendor.wrong_key(),
        _ => row.vendor.key(),
    };
    let config = row.vendor.config(
        &server.base_url(),
        Some(key),
        &object(row.config),
        &object(row.backend),
    );
    let backend = Backend::from_json(&config).expect("backend config");
    backend.start().unwrap();
    let session = server.session(&backend);
    let mut seen = Outcome::default();
    if row.when == SessionStart {
        let events = the_error(&session, &row, "at the session's start");
        seen.extend(listening_again(&session, events, false));
    }
    match row.then {
        ListensAgain { turns } => {
            for n in 1..=turns {
                seen.extend(failed_turn(&*server, &session, &row, n));
            }
        }
        TurnGoesOn => {
            server.begin_turn(&session, 1);
            server.end_turn(&session);
            let answered = server.answered(&session, 1);
            let errors: Vec<&Event> = answered.events.iter().filter(|e| is_error(e)).collect();
            assert_eq!(
                errors.len(),
                1,
                "{:?} × {:?}: {:?}",
                row.vendor,
                row.fault,
                common::errors(&answered.events)
            );
            check_error(&row, errors[0], "turn 1");
            seen.extend(answered);
        }
        NextTurnAnswered => {
            seen.extend(failed_turn(&*server, &session, &row, 1));
            server.heal();
            seen.extend(answered_turn(&*server, &session, 2));
        }
        Resumed => seen.extend(answered_turn(&*server, &session, 1)),
    }
    assert_key_absent(&seen.events, key);
    assert_key_absent(&seen.events, &key[key.len() - 4..]);
    server.evidence(row.fault, &seen);
    let (vendor, fault) = (row.vendor, row.fault);
    // A test server may record a refused handshake just after the client read the refusal:
    // give the last record a moment to land before counting.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut attempts = server.attempts();
    while attempts.len() < row.attempts && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        attempts = server.attempts();
    }
    assert_eq!(
        attempts.len(),
        row.attempts,
        "{vendor:?} × {fault:?}: attempts {attempts:?}"
    );
    assert!(
        attempts.iter().all(|a| *a == row.refused),
        "{vendor:?} × {fault:?}: attempts {attempts:?}, expected each refused with {:?}",
        row.refused
    );
}

/// Turn `n`, which fails: the row's error, then the session listening again.
fn failed_turn(server: &dyn VendorServer, session: &Session, row: &Row, n: usize) -> Outcome {
    server.begin_turn(session, n);
    if row.when != UserSpeaking {
        server.end_turn(session);
    }
    let events = the_error(session, row, &format!("turn {n}"));
    if row.when == UserSpeaking {
        server.end_turn(session);
    }
    listening_again(session, events, row.when == UserSpeaking)
}

/// Turn `n`, which goes through without an error.
fn answered_turn(server: &dyn VendorServer, session: &Session, n: usize) -> Outcome {
    server.begin_turn(session, n);
    server.end_turn(session);
    let answered = server.answered(session, n);
    let errors = common::errors(&answered.events);
    assert!(errors.is_empty(), "turn {n}: {errors:?}");
    answered
}

/// Waits for the next error and checks it against the row; returns the events up to it.
fn the_error(session: &Session, row: &Row, context: &str) -> Vec<Event> {
    let events = events_until(session, is_error);
    check_error(row, events.last().unwrap(), context);
    events
}

fn check_error(row: &Row, error: &Event, context: &str) {
    let (vendor, fault) = (row.vendor, row.fault);
    let (status, message) = row.error.expect("the row expects an error");
    let text = error.text.as_deref().unwrap_or_default();
    assert_eq!(
        error.error, status,
        "{vendor:?} × {fault:?}, {context}: {text}"
    );
    assert!(
        matches(message, text),
        "{vendor:?} × {fault:?}, {context}: the message {text:?} is not {message:?}"
    );
}

/// After a turn's error (`events`: the turn's events so far): waits, reading reply audio, until
/// the turn's speech has stopped and the session is listening again, and checks that the host
/// was told so (the last state change it saw is to listening) and saw no second error. A failure
/// without user speech (at the start, or of a `say`) never took the session off listening. When
/// the error came while the user still spoke, the turn had nothing left to process: its speech
/// stopped with the session listening.
fn listening_again(session: &Session, mut events: Vec<Event>, mid_speech: bool) -> Outcome {
    let from = events.len();
    let spoke = mid_speech || events.iter().any(|e| e.kind == K::VB_EVENT_SPEECH_STARTED);
    if !spoke {
        assert_eq!(session.state(), S::VB_STATE_LISTENING);
    }
    let mut played = Vec::new();
    let mut buf = vec![0i16; 4096];
    let deadline = Instant::now() + PATIENCE;
    loop {
        while let Some(event) = session.poll_event().expect("poll_event") {
            events.push(event);
        }
        let n = session.read_audio(&mut buf).expect("read_audio");
        played.extend_from_slice(&buf[..n]);
        let stopped = !spoke || events.iter().any(|e| e.kind == K::VB_EVENT_SPEECH_STOPPED);
        let told = events
            .iter()
            .rev()
            .find(|e| e.kind == K::VB_EVENT_STATE_CHANGED)
            .is_none_or(|e| e.state == S::VB_STATE_LISTENING);
        if stopped && told && session.state() == S::VB_STATE_LISTENING {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session never went back to listening ({:?}): {:?}",
            session.state(),
            kinds(&events)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let after = &events[from..];
    let errors = common::errors(after);
    assert!(errors.is_empty(), "a second error for the turn: {errors:?}");
    if mid_speech {
        let stopped = after
            .iter()
            .find(|e| e.kind == K::VB_EVENT_SPEECH_STOPPED)
            .expect("the turn ended after the error");
        assert_eq!(
            stopped.state,
            S::VB_STATE_LISTENING,
            "a turn that already failed has nothing to process"
        );
    }
    Outcome { events, played }
}

/// A JSON object from the table.
fn object(json: &str) -> Value {
    let value: Value = serde_json::from_str(json).expect("a JSON object");
    assert!(value.is_object(), "{json}");
    value
}

/// Whether `text` is `pattern`, where each `*` stands for any text.
fn matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[test]
fn message_patterns_match_as_globs() {
    assert!(matches("a*c", "abc") && matches("a*c", "ac") && matches("*", ""));
    assert!(matches("a*b*c", "a-b-b-c") && matches("abc", "abc"));
    assert!(!matches("abc", "abcd") && !matches("a*c", "abd") && !matches("a*b*c", "acb"));
    assert!(!matches("ab*ba", "aba"));
}
