//! Spans: trace and span ids, finished spans with their times (Unix nanoseconds), parent, links,
//! attributes and links, and the bounded buffer that holds them until the OTLP exporter takes
//! them. Spans are recorded by the session tasks and the backend's control calls, never by the
//! realtime thread.

use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Finished spans waiting for export, at most; beyond that new spans are dropped and counted.
pub const MAX_PENDING_SPANS: usize = 4096;

/// Nanoseconds since the Unix epoch now (0 for a clock set before 1970).
pub fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A random non-zero 64-bit value (SipHash of a process-wide counter under the standard library's
/// randomly seeded keys: unique in the process, unpredictable across processes).
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let value = RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
        if value != 0 {
            return value;
        }
    }
}

/// Where a span sits: its trace and its own id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    /// 16 random bytes shared by every span of the trace.
    pub trace_id: [u8; 16],
    /// 8 random bytes.
    pub span_id: [u8; 8],
}

impl SpanContext {
    /// The root span of a new trace.
    pub fn new_root() -> Self {
        let mut trace_id = [0; 16];
        trace_id[..8].copy_from_slice(&random_u64().to_be_bytes());
        trace_id[8..].copy_from_slice(&random_u64().to_be_bytes());
        SpanContext {
            trace_id,
            span_id: random_u64().to_be_bytes(),
        }
    }

    /// A new span in the same trace.
    pub fn new_child(&self) -> Self {
        SpanContext {
            trace_id: self.trace_id,
            span_id: random_u64().to_be_bytes(),
        }
    }
}

/// The value of a span attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
}

/// A finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanData {
    /// Its trace and id.
    pub context: SpanContext,
    /// The parent span's id (same trace), `None` for a root.
    pub parent: Option<[u8; 8]>,
    /// What it covers: `backend`, `session`, `turn`, `stt`, `agent`, `tts`.
    pub name: &'static str,
    /// Start, Unix nanoseconds.
    pub start_unix_ns: u64,
    /// End, Unix nanoseconds.
    pub end_unix_ns: u64,
    /// Details; never secrets, never transcript text.
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// Spans of other traces this one relates to.
    pub links: Vec<SpanContext>,
}

impl SpanData {
    /// A span `name` at `context` from `start` to `end` (Unix ns) without details.
    pub fn new(
        context: SpanContext,
        name: &'static str,
        start_unix_ns: u64,
        end_unix_ns: u64,
    ) -> Self {
        SpanData {
            context,
            parent: None,
            name,
            start_unix_ns,
            end_unix_ns,
            attributes: Vec::new(),
            links: Vec::new(),
        }
    }
}

/// Finished spans until the exporter takes them. A buffer that is not `enabled` (no OTLP
/// endpoint: nobody would read them) keeps nothing.
#[derive(Debug)]
pub struct SpanBuffer {
    enabled: bool,
    spans: Mutex<Vec<SpanData>>,
    dropped: AtomicU64,
}

impl SpanBuffer {
    /// An empty buffer; `enabled` says whether spans are kept at all.
    pub fn new(enabled: bool) -> Self {
        SpanBuffer {
            enabled,
            spans: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether spans are kept (callers may skip building them otherwise).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Keeps a finished span, or counts it as dropped when [`MAX_PENDING_SPANS`] are waiting.
    pub fn push(&self, span: SpanData) {
        if !self.enabled {
            return;
        }
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        if spans.len() >= MAX_PENDING_SPANS {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            spans.push(span);
        }
    }

    /// Takes every waiting span, oldest first.
    pub fn take(&self) -> Vec<SpanData> {
        std::mem::take(&mut *self.spans.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Spans dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_non_zero_and_children_share_the_trace() {
        let root = SpanContext::new_root();
        let child = root.new_child();
        assert_ne!(root.trace_id, [0; 16]);
        assert_ne!(root.span_id, [0; 8]);
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert_ne!(SpanContext::new_root().trace_id, root.trace_id);
    }

    #[test]
    fn a_full_buffer_drops_and_counts_and_a_disabled_one_keeps_nothing() {
        let buffer = SpanBuffer::new(true);
        let span = SpanData::new(SpanContext::new_root(), "turn", 1, 2);
        for _ in 0..MAX_PENDING_SPANS + 3 {
            buffer.push(span.clone());
        }
        assert_eq!(buffer.dropped(), 3);
        assert_eq!(buffer.take().len(), MAX_PENDING_SPANS);
        assert!(buffer.take().is_empty());
        let off = SpanBuffer::new(false);
        off.push(span);
        assert!(off.take().is_empty());
        assert_eq!(off.dropped(), 0);
    }
}
