//! The one error type of the engine and the C status codes it maps onto.
//!
//! Every fallible operation returns [`Result`]; [`Error::status`] gives the `VbStatus` that the C
//! ABI returns, one to one. Messages say what was wrong and with which value.

use std::borrow::Cow;
use std::ffi::CStr;
use std::fmt;

/// Status codes of the C ABI. Values are fixed by the contract (`C_API.md`).
// The variant names are spelled as in C so that Rust and C code read the same.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VbStatus {
    /// Success.
    VB_OK = 0,
    /// NULL pointer, bad length, invalid UTF-8.
    VB_ERR_INVALID_ARGUMENT = 1,
    /// Config JSON malformed or failed validation; the message names the field.
    VB_ERR_INVALID_CONFIG = 2,
    /// No backend/STT/TTS/S2S provider registered under that name.
    VB_ERR_PROVIDER_NOT_FOUND = 3,
    /// The call is not allowed in the object's current state (audio before start, start after stop).
    VB_ERR_INVALID_STATE = 4,
    /// `max_concurrent_sessions` reached.
    VB_ERR_SESSION_LIMIT = 5,
    /// A rate limiter refused the call.
    VB_ERR_RATE_LIMITED = 6,
    /// The auth hook refused the session.
    VB_ERR_UNAUTHORIZED = 7,
    /// A provider or transport could not connect.
    VB_ERR_CONNECTION_FAILED = 8,
    /// An operation ran out of time.
    VB_ERR_TIMEOUT = 9,
    /// A provider answered with an error.
    VB_ERR_PROVIDER = 10,
    /// Input ring full: the call accepted fewer samples than given.
    VB_ERR_BUFFER_FULL = 11,
    /// No object with that id.
    VB_ERR_NOT_FOUND = 12,
    /// A panic was caught at the C boundary.
    VB_ERR_PANIC = 13,
    /// A bug or an unexpected failure inside the engine.
    VB_ERR_INTERNAL = 14,
}

static ALL_STATUSES: [VbStatus; 15] = [
    VbStatus::VB_OK,
    VbStatus::VB_ERR_INVALID_ARGUMENT,
    VbStatus::VB_ERR_INVALID_CONFIG,
    VbStatus::VB_ERR_PROVIDER_NOT_FOUND,
    VbStatus::VB_ERR_INVALID_STATE,
    VbStatus::VB_ERR_SESSION_LIMIT,
    VbStatus::VB_ERR_RATE_LIMITED,
    VbStatus::VB_ERR_UNAUTHORIZED,
    VbStatus::VB_ERR_CONNECTION_FAILED,
    VbStatus::VB_ERR_TIMEOUT,
    VbStatus::VB_ERR_PROVIDER,
    VbStatus::VB_ERR_BUFFER_FULL,
    VbStatus::VB_ERR_NOT_FOUND,
    VbStatus::VB_ERR_PANIC,
    VbStatus::VB_ERR_INTERNAL,
];

impl VbStatus {
    /// Every status, in value order.
    pub fn all() -> &'static [VbStatus] {
        &ALL_STATUSES
    }

    /// Reads a status that came from C as a plain integer; `None` when it is out of range.
    pub fn from_raw(raw: i64) -> Option<VbStatus> {
        usize::try_from(raw)
            .ok()
            .and_then(|i| ALL_STATUSES.get(i).copied())
    }

    /// The C name of the status as a static C string, e.g. `c"VB_ERR_INVALID_CONFIG"`.
    pub fn c_name(self) -> &'static CStr {
        match self {
            VbStatus::VB_OK => c"VB_OK",
            VbStatus::VB_ERR_INVALID_ARGUMENT => c"VB_ERR_INVALID_ARGUMENT",
            VbStatus::VB_ERR_INVALID_CONFIG => c"VB_ERR_INVALID_CONFIG",
            VbStatus::VB_ERR_PROVIDER_NOT_FOUND => c"VB_ERR_PROVIDER_NOT_FOUND",
            VbStatus::VB_ERR_INVALID_STATE => c"VB_ERR_INVALID_STATE",
            VbStatus::VB_ERR_SESSION_LIMIT => c"VB_ERR_SESSION_LIMIT",
            VbStatus::VB_ERR_RATE_LIMITED => c"VB_ERR_RATE_LIMITED",
            VbStatus::VB_ERR_UNAUTHORIZED => c"VB_ERR_UNAUTHORIZED",
            VbStatus::VB_ERR_CONNECTION_FAILED => c"VB_ERR_CONNECTION_FAILED",
            VbStatus::VB_ERR_TIMEOUT => c"VB_ERR_TIMEOUT",
            VbStatus::VB_ERR_PROVIDER => c"VB_ERR_PROVIDER",
            VbStatus::VB_ERR_BUFFER_FULL => c"VB_ERR_BUFFER_FULL",
            VbStatus::VB_ERR_NOT_FOUND => c"VB_ERR_NOT_FOUND",
            VbStatus::VB_ERR_PANIC => c"VB_ERR_PANIC",
            VbStatus::VB_ERR_INTERNAL => c"VB_ERR_INTERNAL",
        }
    }

    /// The C name of the status, e.g. `"VB_ERR_INVALID_CONFIG"`.
    pub fn name(self) -> &'static str {
        self.c_name().to_str().unwrap_or("VB_STATUS_UNKNOWN")
    }
}

impl fmt::Display for VbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An engine error: a status code plus a message that names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Error {
    status: VbStatus,
    message: String,
}

/// The longest message an [`Error`] keeps, in characters.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// `text` if it has at most `max` characters (`max` ≥ 40), else its first half and its last third
/// of `max` with the number of characters left out between them: the start says what
/// failed, the end often says where.
pub fn shorten(text: &str, max: usize) -> Cow<'_, str> {
    let max = max.max(40);
    let chars = text.chars().count();
    if chars <= max {
        return Cow::Borrowed(text);
    }
    let (head, tail) = (max / 2, max / 3);
    let head_end = text.char_indices().nth(head).map_or(text.len(), |(i, _)| i);
    let tail_start = text
        .char_indices()
        .nth(chars - tail)
        .map_or(text.len(), |(i, _)| i);
    Cow::Owned(format!(
        "{} … ({} characters left out) … {}",
        &text[..head_end],
        chars - head - tail,
        &text[tail_start..]
    ))
}

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with the given status and message. `status` must not be `VB_OK`.
    ///
    /// A message longer than [`MAX_MESSAGE_CHARS`] keeps its start and end (see [`shorten`]): a
    /// message may quote what a peer sent (serde_json quotes an offending string whole), and one
    /// hostile or broken frame must not become a megabyte in the host's logs.
    pub fn new(status: VbStatus, message: impl Into<String>) -> Self {
        debug_assert_ne!(status, VbStatus::VB_OK);
        let message = message.into();
        let message = match shorten(&message, MAX_MESSAGE_CHARS) {
            Cow::Borrowed(_) => message,
            Cow::Owned(short) => short,
        };
        Error { status, message }
    }

    /// The C status this error maps onto.
    pub fn status(&self) -> VbStatus {
        self.status
    }

    /// The human-readable reason, without the status name.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// `VB_ERR_INVALID_ARGUMENT`.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(VbStatus::VB_ERR_INVALID_ARGUMENT, message)
    }

    /// `VB_ERR_INVALID_CONFIG`; the message should start with the field path.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(VbStatus::VB_ERR_INVALID_CONFIG, message)
    }

    /// `VB_ERR_PROVIDER_NOT_FOUND` for a `kind` ("backend", "stt", …) named `name`.
    pub fn provider_not_found(kind: &str, name: &str, known: &[String]) -> Self {
        Self::new(
            VbStatus::VB_ERR_PROVIDER_NOT_FOUND,
            format!(
                "no {kind} provider named '{name}' is registered (registered: {})",
                known.join(", ")
            ),
        )
    }

    /// `VB_ERR_INVALID_STATE`.
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(VbStatus::VB_ERR_INVALID_STATE, message)
    }

    /// `VB_ERR_PROVIDER`, naming the provider.
    pub fn provider(provider: &str, message: impl fmt::Display) -> Self {
        Self::new(VbStatus::VB_ERR_PROVIDER, format!("{provider}: {message}"))
    }

    /// `VB_ERR_INTERNAL`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(VbStatus::VB_ERR_INTERNAL, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_values_are_the_contract_values() {
        for (value, status) in VbStatus::all().iter().enumerate() {
            assert_eq!(*status as usize, value);
            assert_eq!(VbStatus::from_raw(value as i64), Some(*status));
        }
        assert_eq!(VbStatus::from_raw(-1), None);
        assert_eq!(VbStatus::from_raw(15), None);
        assert_eq!(VbStatus::VB_ERR_INTERNAL.name(), "VB_ERR_INTERNAL");
    }

    #[test]
    fn a_long_message_keeps_its_start_and_end_and_says_how_much_is_left_out() {
        let quoted = "x".repeat(100_000);
        let e = Error::provider(
            "deepgram",
            format!("malformed message: invalid type: string \"{quoted}\", expected u32 at line 1"),
        );
        let message = e.message();
        assert!(
            message.chars().count() < MAX_MESSAGE_CHARS + 40,
            "{}",
            message.len()
        );
        assert!(message.starts_with("deepgram: malformed message: invalid type: string"));
        assert!(message.ends_with("\", expected u32 at line 1"), "{message}");
        assert!(message.contains("characters left out"), "{message}");
        let short = "turn.silence_ms: 0 is below the minimum 50";
        assert_eq!(Error::invalid_config(short).message(), short);
        // Characters, not bytes: never cut inside one.
        let wide = "é".repeat(2000);
        assert!(shorten(&wide, 100).starts_with(&"é".repeat(50)));
    }

    #[test]
    fn display_puts_status_before_message() {
        let e = Error::invalid_config("turn.silence_ms: 0 is below the minimum 50");
        assert_eq!(
            e.to_string(),
            "VB_ERR_INVALID_CONFIG: turn.silence_ms: 0 is below the minimum 50"
        );
    }
}
