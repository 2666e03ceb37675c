//! How fast sessions may be opened: the [`RateLimiter`] a host installs, and the built-in
//! [`TokenBuckets`] configured by `rate_limit`.
//!
//! Limiters run on the thread that creates a session (a control thread), never on the realtime
//! thread. A refusal is `VB_ERR_RATE_LIMITED` with a message that says which limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::RateLimitConfig;
use crate::error::{Error, Result, VbStatus};

/// Admission of new sessions by rate. `key` is the session's user id (`""` for a session
/// without one). Installed with `Backend::set_rate_limiter`, replacing the built-in
/// [`TokenBuckets`]; called concurrently from the threads that create sessions.
pub trait RateLimiter: Send + Sync {
    /// Takes one admission for `key` if one is available now; never blocks. A refusal is
    /// `VB_ERR_RATE_LIMITED` saying which limit.
    fn allow(&self, key: &str) -> Result<()>;

    /// Takes one admission for `key`, waiting up to `timeout` for one (the calling thread
    /// sleeps). The default is [`poll_allow`].
    fn wait(&self, key: &str, timeout: Duration) -> Result<()> {
        poll_allow(self, key, timeout)
    }
}

/// Asks `limiter.allow(key)` every 10 ms until it admits or `timeout` has passed: the default
/// [`RateLimiter::wait`], for limiters that cannot tell when their next admission comes.
pub fn poll_allow<L: RateLimiter + ?Sized>(
    limiter: &L,
    key: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match limiter.allow(key) {
            Err(e) if e.status() == VbStatus::VB_ERR_RATE_LIMITED => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(e);
                }
                std::thread::sleep(left.min(POLL_INTERVAL));
            }
            outcome => return outcome,
        }
    }
}

/// How often the default [`RateLimiter::wait`] asks again.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A monotonic clock for rate limiting, injectable so that tests never depend on wall time.
pub trait Clock: Send + Sync {
    /// Time since an arbitrary fixed origin; never goes back.
    fn now(&self) -> Duration;
    /// Lets `duration` pass (blocks the calling thread on a real clock).
    fn sleep(&self, duration: Duration);
}

/// The process's monotonic clock.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// A clock that moves only when told: by [`ManualClock::advance`], or by `sleep` (which
/// advances it instead of blocking). For tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Mutex<Duration>,
}

impl ManualClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }
}

/// The built-in limiter: a global token bucket (`rate_limit.sessions_per_second`, holding up
/// to `rate_limit.burst`) and one bucket per user (`rate_limit.per_user_sessions_per_minute`,
/// holding as many). A session takes one token from its user's bucket and one from the global
/// one; sessions without a user id are limited only globally. A rate of 0 turns that limit
/// off. Each check holds one short lock at a time; buckets of users who are back to a full
/// bucket are forgotten as the map grows.
pub struct TokenBuckets {
    clock: Arc<dyn Clock>,
    global: Option<(Rate, Mutex<Bucket>)>,
    per_user: Option<(Rate, Mutex<UserBuckets>)>,
}

/// Refill speed and capacity of a bucket, and the config field it comes from.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_second: f64,
    capacity: f64,
    field: &'static str,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

struct UserBuckets {
    map: HashMap<String, Bucket>,
    /// Size at which full buckets are dropped next.
    prune_at: usize,
}

/// The per-user map is pruned no earlier than at this size.
const MIN_PRUNE_AT: usize = 1024;

/// A refusal: which limit, and when a token will be there.
struct Refusal {
    message: String,
    retry_after: Duration,
}

impl Bucket {
    fn full(rate: &Rate, now: Duration) -> Bucket {
        Bucket {
            tokens: rate.capacity,
            at: now,
        }
    }

    fn refill(&mut self, rate: &Rate, now: Duration) {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.capacity);
        self.at = self.at.max(now);
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, rate: &Rate, now: Duration) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / rate.per_second,
            ))
        }
    }

    fn give_back(&mut self, rate: &Rate) {
        self.tokens = (self.tokens + 1.0).min(rate.capacity);
    }
}

impl TokenBuckets {
    /// The buckets `config` describes, on the system clock.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock::default()))
    }

    /// The buckets `config` describes, on `clock`.
    pub fn with_clock(config: &RateLimitConfig, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        let global = (config.sessions_per_second > 0).then(|| {
            let rate = Rate {
                per_second: config.sessions_per_second.into(),
                capacity: config.burst.into(),
                field: "rate_limit.sessions_per_second",
            };
            (rate, Mutex::new(Bucket::full(&rate, now)))
        });
        let per_user = (config.per_user_sessions_per_minute > 0).then(|| {
            let per_minute = f64::from(config.per_user_sessions_per_minute);
            let rate = Rate {
                per_second: per_minute / 60.0,
                capacity: per_minute,
                field: "rate_limit.per_user_sessions_per_minute",
            };
            let users = UserBuckets {
                map: HashMap::new(),
                prune_at: MIN_PRUNE_AT,
            };
            (rate, Mutex::new(users))
        });
        TokenBuckets {
            clock,
            global,
            per_user,
        }
    }

    /// One admission for `key` at `now`, or the refusal.
    fn try_take(&self, key: &str, now: Duration) -> Result<(), Refusal> {
        let user = self.per_user.as_ref().filter(|_| !key.is_empty());
        if let Some((rate, users)) = user {
            let mut users = users.lock().unwrap_or_else(|p| p.into_inner());
            let users = &mut *users;
            if !users.map.contains_key(key) && users.map.len() >= users.prune_at {
                users.map.retain(|_, b| {
                    b.refill(rate, now);
                    b.tokens < rate.capacity
                });
                users.prune_at = (2 * users.map.len()).max(MIN_PRUNE_AT);
            }
            let bucket = users
                .map
                .entry(key.to_owned())
                .or_insert_with(|| Bucket::full(rate, now));
            bucket.take(rate, now).map_err(|retry_after| Refusal {
                message: format!(
                    "{}: user '{key}' may open {} sessions per minute",
                    rate.field, rate.capacity
                ),
                retry_after,
            })?;
        }
        if let Some((rate, bucket)) = &self.global {
            let taken = bucket
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(rate, now);
            if let Err(retry_after) = taken {
                if let Some((user_rate, users)) = user {
                    let mut users = users.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(b) = users.map.get_mut(key) {
                        b.give_back(user_rate);
                    }
                }
                return Err(Refusal {
                    message: format!(
                        "{}: the backend admits {} sessions per second (burst {})",
                        rate.field, rate.per_second, rate.capacity
                    ),
                    retry_after,
                });
            }
        }
        Ok(())
    }
}

fn rate_limited(refusal: &Refusal, waited: Option<Duration>) -> Error {
    let retry = refusal.retry_after.as_secs_f64();
    let message = match waited {
        None => format!("{}; next admission in {retry:.2} s", refusal.message),
        Some(waited) => format!(
            "{}; waited {} ms, next admission in {retry:.2} s",
            refusal.message,
            waited.as_millis()
        ),
    };
    Error::new(VbStatus::VB_ERR_RATE_LIMITED, message)
}

impl RateLimiter for TokenBuckets {
    fn allow(&self, key: &str) -> Result<()> {
        self.try_take(key, self.clock.now())
            .map_err(|refusal| rate_limited(&refusal, None))
    }

    /// Sleeps (on the clock) until the bucket that refused has a token, and tries again;
    /// refuses at once when that is later than `timeout`.
    fn wait(&self, key: &str, timeout: Duration) -> Result<()> {
        let start = self.clock.now();
        let deadline = start + timeout;
        loop {
            let now = self.clock.now();
            match self.try_take(key, now) {
                Ok(()) => return Ok(()),
                Err(refusal) if now + refusal.retry_after <= deadline => {
                    self.clock.sleep(refusal.retry_after);
                }
                Err(refusal) => return Err(rate_limited(&refusal, Some(now - start))),
            }
        }
    }
}

impl std::fmt::Debug for TokenBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBuckets")
            .field("global", &self.global.as_ref().map(|(rate, _)| rate))
            .field("per_user", &self.per_user.as_ref().map(|(rate, _)| rate))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_of_users_back_to_full_are_forgotten_as_the_map_grows() {
        let clock = Arc::new(ManualClock::default());
        let config = RateLimitConfig {
            sessions_per_second: 0,
            burst: 1,
            per_user_sessions_per_minute: 2,
        };
        let buckets = TokenBuckets::with_clock(&config, clock.clone());
        let users = || {
            buckets
                .per_user
                .as_ref()
                .unwrap()
                .1
                .lock()
                .unwrap()
                .map
                .len()
        };
        for i in 0..MIN_PRUNE_AT {
            buckets.allow(&format!("user-{i}")).unwrap();
        }
        assert_eq!(users(), MIN_PRUNE_AT);
        // Half a minute later every bucket has refilled its one token: all are full again.
        clock.advance(Duration::from_secs(30));
        buckets.allow("newcomer").unwrap();
        assert_eq!(users(), 1);
        // A user short of tokens is remembered through a prune (newcomer: 0 of 2, 1 at the prune).
        buckets.allow("newcomer").unwrap();
        clock.advance(Duration::from_secs(30));
        for i in 0..MIN_PRUNE_AT {
            buckets.allow(&format!("other-{i}")).unwrap();
        }
        buckets.allow("newcomer").unwrap();
        assert!(buckets.allow("newcomer").is_err());
    }
}
