//! Whether a session is admitted now, through the Rust API: rate limiting (the built-in token
//! buckets on an injected clock, and host limiters), waiting for admission, the session limit
//! checked first, hooks and limiters installed only before start, and a refused session that
//! creates nothing and uses up nothing. Who the user is (auth hooks) is in `tests/auth_hooks.rs`.
#![cfg(feature = "test-providers")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::admission::{NO_RATE_LIMIT, RecordingHook, backend, create, refusal};
use common::*;
use voicebackend::backend::limits::{Clock, ManualClock, RateLimiter, TokenBuckets};
use voicebackend::{Backend, Error, Result, Session, SessionConfig, VbStatus};

#[test]
fn a_refused_session_creates_nothing() {
    let b = backend(
        r#""rate_limit":{"sessions_per_second":1,"burst":1,"per_user_sessions_per_minute":0}"#,
    );
    b.set_auth_hook(Arc::new(RecordingHook::default())).unwrap();
    let clock = Arc::new(ManualClock::default());
    b.set_rate_limiter(Arc::new(TokenBuckets::with_clock(
        &b.config().rate_limit,
        clock,
    )))
    .unwrap();
    b.start().unwrap();
    let before = b.health();
    for (user, token) in [
        ("", "forged"),
        ("", "token-for-eve"),
        ("bob", "token-for-carol"),
    ] {
        let (status, message) = refusal(create(&b, user, Some(token)));
        assert_eq!(status, VbStatus::VB_ERR_UNAUTHORIZED, "{message}");
        assert!(!message.contains(token), "{message}");
    }
    let after = b.health();
    assert_eq!(b.active_sessions(), 0);
    assert_eq!(after.active_sessions, before.active_sessions);
    assert_eq!(after.status, before.status);
    assert_eq!(after.frames_processed, before.frames_processed);
    // No refusal used up the only admission of the rate limiter.
    create(&b, "", Some("token-for-carol")).expect("the one admission is still there");
}

#[test]
fn hooks_and_limiters_are_set_only_before_start() {
    let b = backend(NO_RATE_LIMIT);
    b.start().unwrap();
    let (status, message) = refusal(b.set_auth_hook(Arc::new(RecordingHook::default())));
    assert_eq!(status, VbStatus::VB_ERR_INVALID_STATE);
    assert!(message.contains("before the backend starts"), "{message}");
    let limiter = TokenBuckets::new(&b.config().rate_limit);
    assert_eq!(
        refusal(b.set_rate_limiter(Arc::new(limiter))).0,
        VbStatus::VB_ERR_INVALID_STATE
    );
}

// ---------------------------------------------------------------------------------------------
// Rate limiting.
// ---------------------------------------------------------------------------------------------

/// A started backend whose built-in buckets (from `rate_limit`) run on a manual clock.
fn limited_backend(rate_limit: &str) -> (Backend, Arc<ManualClock>) {
    let b = backend(&format!(r#""rate_limit":{rate_limit}"#));
    let clock = Arc::new(ManualClock::default());
    let buckets = TokenBuckets::with_clock(&b.config().rate_limit, clock.clone());
    b.set_rate_limiter(Arc::new(buckets)).unwrap();
    b.start().unwrap();
    (b, clock)
}

fn assert_rate_limited<T: std::fmt::Debug>(result: Result<T>, which: &str) -> String {
    let (status, message) = refusal(result);
    assert_eq!(status, VbStatus::VB_ERR_RATE_LIMITED, "{message}");
    assert!(message.contains(which), "'{which}' not in: {message}");
    message
}

#[test]
fn the_global_bucket_admits_a_burst_then_refills_at_its_rate() {
    let (b, clock) =
        limited_backend(r#"{"sessions_per_second":2,"burst":3,"per_user_sessions_per_minute":0}"#);
    let mut sessions: Vec<Session> = (0..3).map(|_| create(&b, "", None).unwrap()).collect();
    let message = assert_rate_limited(create(&b, "", None), "rate_limit.sessions_per_second");
    assert!(message.contains("burst 3"), "{message}");
    assert_eq!(b.active_sessions(), 3);
    clock.advance(Duration::from_millis(499));
    assert_rate_limited(create(&b, "", None), "rate_limit.sessions_per_second");
    clock.advance(Duration::from_millis(1));
    sessions.push(create(&b, "", None).expect("one token after 500 ms at 2/s"));
    assert_rate_limited(create(&b, "", None), "rate_limit.sessions_per_second");
    clock.advance(Duration::from_secs(10));
    // Refilled up to the burst, not beyond.
    sessions.extend((0..3).map(|_| create(&b, "", None).unwrap()));
    assert_rate_limited(create(&b, "", None), "rate_limit.sessions_per_second");
    assert_eq!(b.active_sessions(), 7);
}

#[test]
fn each_user_has_a_bucket_of_their_own() {
    let (b, clock) =
        limited_backend(r#"{"sessions_per_second":0,"per_user_sessions_per_minute":2}"#);
    let _alice: Vec<Session> = (0..2).map(|_| create(&b, "alice", None).unwrap()).collect();
    let message = assert_rate_limited(
        create(&b, "alice", None),
        "rate_limit.per_user_sessions_per_minute",
    );
    assert!(message.contains("'alice'"), "{message}");
    let _bob = create(&b, "bob", None).expect("bob is not alice");
    // Sessions without a user id are limited only globally (off here).
    let _anonymous: Vec<Session> = (0..5).map(|_| create(&b, "", None).unwrap()).collect();
    clock.advance(Duration::from_secs(30));
    let _again = create(&b, "alice", None).expect("one token after 30 s at 2/min");
    assert_rate_limited(create(&b, "alice", None), "per_user_sessions_per_minute");
}

#[test]
fn a_global_refusal_gives_the_users_token_back() {
    let (b, clock) =
        limited_backend(r#"{"sessions_per_second":1,"burst":1,"per_user_sessions_per_minute":1}"#);
    let _alice = create(&b, "alice", None).unwrap();
    assert_rate_limited(create(&b, "bob", None), "rate_limit.sessions_per_second");
    clock.advance(Duration::from_secs(1));
    create(&b, "bob", None).expect("bob's own bucket was not charged for the refusal");
}

#[test]
fn the_built_in_limits_are_on_by_configuration() {
    let b = backend(r#""rate_limit":{"per_user_sessions_per_minute":1}"#);
    b.start().unwrap();
    let _first = create(&b, "alice", None).unwrap();
    assert_rate_limited(create(&b, "alice", None), "per_user_sessions_per_minute");
    assert_eq!(b.active_sessions(), 1);
}

#[test]
fn a_session_can_wait_for_admission_instead_of_failing() {
    let (b, clock) =
        limited_backend(r#"{"sessions_per_second":1,"burst":1,"per_user_sessions_per_minute":0}"#);
    let _first = create(&b, "", None).unwrap();
    let waiting = SessionConfig {
        admission_wait_ms: 2000,
        ..SessionConfig::default()
    };
    let start = clock.now();
    b.create_session(waiting, Some(echo_agent()), None)
        .expect("admitted after waiting");
    let waited = clock.now() - start;
    assert!(
        waited >= Duration::from_millis(999) && waited <= Duration::from_millis(1001),
        "waited {waited:?} on the clock"
    );
    // A wait shorter than the next admission fails at once, without sleeping.
    let impatient = SessionConfig {
        admission_wait_ms: 500,
        ..SessionConfig::default()
    };
    let start = clock.now();
    let message = assert_rate_limited(
        b.create_session(impatient, Some(echo_agent()), None),
        "rate_limit.sessions_per_second",
    );
    assert!(message.contains("waited 0 ms"), "{message}");
    assert_eq!(clock.now(), start);
}

#[test]
fn admission_wait_is_range_checked() {
    let (status, message) = refusal(SessionConfig::from_json(r#"{"admission_wait_ms":60001}"#));
    assert_eq!(status, VbStatus::VB_ERR_INVALID_CONFIG);
    assert!(message.starts_with("admission_wait_ms"), "{message}");
}

/// Admits everyone but "blocked"; refuses the first `refusals` calls; records the keys.
#[derive(Default)]
struct HostLimiter {
    keys: Mutex<Vec<String>>,
    refusals: AtomicUsize,
}

impl RateLimiter for HostLimiter {
    fn allow(&self, key: &str) -> Result<()> {
        self.keys.lock().unwrap().push(key.to_owned());
        let refusing = self
            .refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refusing || key == "blocked" {
            return Err(Error::new(
                VbStatus::VB_ERR_RATE_LIMITED,
                format!("host quota exhausted for '{key}'"),
            ));
        }
        Ok(())
    }
}

#[test]
fn a_host_limiter_replaces_the_built_in_buckets() {
    let b = backend(r#""rate_limit":{"per_user_sessions_per_minute":1}"#);
    let limiter = Arc::new(HostLimiter::default());
    b.set_rate_limiter(limiter.clone()).unwrap();
    b.start().unwrap();
    // The built-in bucket would refuse alice's second session.
    let _sessions: Vec<Session> = (0..3).map(|_| create(&b, "alice", None).unwrap()).collect();
    assert_rate_limited(
        create(&b, "blocked", None),
        "host quota exhausted for 'blocked'",
    );
    let _anonymous = create(&b, "", None).unwrap();
    assert_eq!(
        *limiter.keys.lock().unwrap(),
        ["alice", "alice", "alice", "blocked", ""]
    );
}

#[test]
fn a_host_limiter_without_a_wait_of_its_own_is_asked_again() {
    let b = backend(NO_RATE_LIMIT);
    let limiter = Arc::new(HostLimiter {
        refusals: AtomicUsize::new(2),
        ..HostLimiter::default()
    });
    b.set_rate_limiter(limiter.clone()).unwrap();
    b.start().unwrap();
    let waiting = SessionConfig {
        user_id: "alice".into(),
        admission_wait_ms: 10_000,
        ..SessionConfig::default()
    };
    b.create_session(waiting, Some(echo_agent()), None)
        .expect("admitted on the third ask");
    assert_eq!(limiter.keys.lock().unwrap().len(), 3);
}

#[test]
fn the_session_limit_is_checked_before_a_rate_token_is_taken() {
    let (b, _clock) = limited_backend(
        r#"{"sessions_per_second":1,"burst":2,"per_user_sessions_per_minute":0},
           "max_concurrent_sessions":1"#,
    );
    let first = create(&b, "", None).unwrap();
    assert_eq!(
        refusal(create(&b, "", None)).0,
        VbStatus::VB_ERR_SESSION_LIMIT
    );
    first.stop().unwrap();
    create(&b, "", None).expect("the refused session took no token");
}
