//! Forwarding the process's log records to a host's sink (`vb_set_log_callback`): a global
//! `tracing` subscriber, installed on the first call, that formats each record passing the
//! environment filter and the host's level on the thread that logs it, and a bounded queue that
//! one log thread (`vb-log`) drains into the sink.
//!
//! The queue keeps a slow sink from ever holding up the engine's threads: when it is full a
//! record is dropped and counted, and once the queue has drained the sink receives a warning
//! saying how many were lost. Records reach the sink in the order they were queued, one at a
//! time. After [`forward`] returns, the previous sink is never called again (a sink being called
//! is waited for), except when `forward` is called from within the sink itself: the new sink then
//! takes over once the current record is delivered.

use std::cell::Cell;
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crossbeam_channel::{Receiver, Sender};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::error::{Error, Result};

/// Records waiting for the sink, at most; beyond that they are dropped and counted.
pub const QUEUE_CAPACITY: usize = 4096;

/// The filter when the environment sets none: the engine's records up to the host's level, other
/// crates' warnings and errors.
const DEFAULT_DIRECTIVES: &str = "voicebackend=trace,warn";

/// One log record as a sink receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its level.
    pub level: Level,
    /// Where it comes from: a module path such as `voicebackend::provider::ws_link`.
    pub target: String,
    /// The text: the spans it happened in (`session{session.id=…}:turn{turn=2}: `), its message
    /// and its other fields as `key=value`.
    pub message: String,
}

/// Receives log records on the log thread, one at a time.
pub type LogSink = Box<dyn Fn(&LogRecord) + Send + Sync>;

/// Sends the records of the whole process that pass the environment filter (see
/// [`super::env_directives`]; without one, `voicebackend=trace,warn`) and `max_level` to `sink`;
/// `None` (or [`LevelFilter::OFF`]) sends them nowhere. The first call installs the process's
/// global `tracing` subscriber: `VB_ERR_INVALID_STATE` when another one is installed already
/// (a Rust host's own; it receives the engine's records itself). Any thread.
pub fn forward(sink: Option<LogSink>, max_level: LevelFilter) -> Result<()> {
    let forwarder = installed()?;
    let level = if sink.is_some() { rank(max_level) } else { 0 };
    if level == 0 {
        forwarder.max_level.store(0, Ordering::Relaxed);
    }
    if ON_LOG_THREAD.get() {
        *lock(&forwarder.pending) = Some(sink);
    } else {
        *lock(&forwarder.sink) = sink;
    }
    forwarder.max_level.store(level, Ordering::Relaxed);
    // The host's level is part of each callsite's cached interest (a record below it costs
    // nothing): ask every callsite again.
    tracing::callsite::rebuild_interest_cache();
    Ok(())
}

/// Records dropped so far because the queue was full (the sink did not keep up).
pub fn dropped_total() -> u64 {
    FORWARDER
        .get()
        .map_or(0, |f| f.dropped_total.load(Ordering::Relaxed))
}

struct Forwarder {
    queue: Sender<LogRecord>,
    sink: Mutex<Option<LogSink>>,
    /// A sink set from within the sink, applied once the current record is delivered.
    pending: Mutex<Option<Option<LogSink>>>,
    /// 0 off, 1 error … 5 trace.
    max_level: AtomicU8,
    /// Dropped since the last notice.
    dropped: AtomicU64,
    dropped_total: AtomicU64,
}

static FORWARDER: OnceLock<Forwarder> = OnceLock::new();
static INSTALLED: Mutex<bool> = Mutex::new(false);

thread_local! {
    static ON_LOG_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn rank(level: LevelFilter) -> u8 {
    match level.into_level() {
        None => 0,
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) => 4,
        Some(Level::TRACE) => 5,
    }
}

/// The forwarder, its log thread and the global subscriber, installed on first use.
fn installed() -> Result<&'static Forwarder> {
    let mut installed = lock(&INSTALLED);
    if *installed {
        if let Some(forwarder) = FORWARDER.get() {
            return Ok(forwarder);
        }
    }
    let directives = super::env_directives();
    let env = EnvFilter::builder()
        .parse(directives.as_deref().unwrap_or(DEFAULT_DIRECTIVES))
        .map_err(|e| {
            Error::invalid_config(format!(
                "{} (or RUST_LOG): invalid filter: {e}",
                super::ENV_FILTER
            ))
        })?;
    let host_level = filter_fn(|metadata: &tracing::Metadata<'_>| {
        let max = FORWARDER
            .get()
            .map_or(0, |f| f.max_level.load(Ordering::Relaxed));
        rank(LevelFilter::from_level(*metadata.level())) <= max
    });
    let forwarder = FORWARDER.get_or_init(|| {
        let (queue, records) = crossbeam_channel::bounded(QUEUE_CAPACITY);
        let _ = std::thread::Builder::new()
            .name("vb-log".into())
            .spawn(move || deliver_all(records));
        Forwarder {
            queue,
            sink: Mutex::new(None),
            pending: Mutex::new(None),
            max_level: AtomicU8::new(0),
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
        }
    });
    let subscriber =
        tracing_subscriber::registry().with(ForwardLayer.with_filter(env.and(host_level)));
    tracing::subscriber::set_global_default(subscriber).map_err(|_| {
        Error::invalid_state(
            "a global tracing subscriber is installed already in this process: the engine's \
             records go to it",
        )
    })?;
    *installed = true;
    Ok(forwarder)
}

/// The log thread: hands every record to the sink, and a notice of what was dropped whenever
/// the queue has drained.
fn deliver_all(records: Receiver<LogRecord>) {
    ON_LOG_THREAD.set(true);
    while let Ok(record) = records.recv() {
        let Some(forwarder) = FORWARDER.get() else {
            continue;
        };
        forwarder.deliver(&record);
        if records.is_empty() {
            let dropped = forwarder.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                forwarder.deliver(&LogRecord {
                    level: Level::WARN,
                    target: module_path!().to_owned(),
                    message: format!(
                        "{dropped} log records were dropped: the log callback did not keep up"
                    ),
                });
            }
        }
    }
}

impl Forwarder {
    fn deliver(&self, record: &LogRecord) {
        {
            let sink = lock(&self.sink);
            if let Some(sink) = sink.as_ref() {
                // A panicking sink loses its record, not the log thread.
                let _ = catch_unwind(AssertUnwindSafe(|| sink(record)));
            }
        }
        if let Some(next) = lock(&self.pending).take() {
            *lock(&self.sink) = next;
        }
    }

    fn enqueue(&self, record: LogRecord) {
        if self.queue.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The formatted fields of a span, kept in its extensions.
struct SpanFields(String);

/// Formats records and queues them for the log thread.
struct ForwardLayer;

impl<S> Layer<S> for ForwardLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = String::new();
        attrs.record(&mut Fields(&mut fields));
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            values.record(&mut Fields(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(forwarder) = FORWARDER.get() else {
            return;
        };
        let mut message = String::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if !message.is_empty() {
                    message.push(':');
                }
                message.push_str(span.name());
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    if !fields.is_empty() {
                        let _ = write!(message, "{{{fields}}}");
                    }
                }
            }
            if !message.is_empty() {
                message.push_str(": ");
            }
        }
        let mut text = String::new();
        let mut others = String::new();
        event.record(&mut EventFields {
            message: &mut text,
            others: &mut Fields(&mut others),
        });
        message.push_str(&text);
        if !others.is_empty() {
            if !text.is_empty() {
                message.push(' ');
            }
            message.push_str(&others);
        }
        let metadata = event.metadata();
        forwarder.enqueue(LogRecord {
            level: *metadata.level(),
            target: metadata.target().to_owned(),
            message,
        });
    }
}

/// Writes fields as `key=value` separated by spaces (strings quoted and escaped).
struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{}={value:?}", field.name());
    }
}

/// An event's `message` field as text, the others as `key=value`.
struct EventFields<'a, 'b> {
    message: &'a mut String,
    others: &'a mut Fields<'b>,
}

impl Visit for EventFields<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.others.record_debug(field, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_rank_from_error_to_trace() {
        assert_eq!(rank(LevelFilter::OFF), 0);
        assert_eq!(rank(LevelFilter::ERROR), 1);
        assert_eq!(rank(LevelFilter::TRACE), 5);
        assert!(rank(LevelFilter::from_level(Level::DEBUG)) <= rank(LevelFilter::DEBUG));
    }
}
