//! The two telephony media-stream protocols, as their vendors document them: JSON text frames
//! with an `event` discriminator over one WebSocket per call.
//!
//! - Twilio Media Streams (<https://www.twilio.com/docs/voice/media-streams/websocket-messages>):
//!   `connected`, `start` (`streamSid`, `callSid`, `accountSid`, `tracks`, `customParameters`,
//!   `mediaFormat` `audio/x-mulaw` 8000 Hz mono), `media` (`track`, `chunk`, `timestamp`,
//!   base64 `payload`), `dtmf` (`digit`), `mark` (the echo of ours), `stop`. We send `media`,
//!   `mark` and `clear`, each with the `streamSid`.
//! - Telnyx media streaming
//!   (<https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket>):
//!   the same events with snake_case names (`stream_id`, `call_control_id`, `media_format`
//!   `PCMU`/`PCMA`, `from`, `to`, `custom_parameters`), plus `error` frames. We send `media`,
//!   `mark` and `clear` without the stream id.
//!
//! Parsing borrows the audio payload from the frame (no copy before base64 decoding); everything
//! here is pure and runs on the I/O runtime.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::NAME;
use crate::error::{Error, Result, VbStatus};
use crate::transport::media::g711::{G711_RATE, Law};

/// Which vendor's protocol a connection speaks (chosen by the URL path it connected to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Twilio Media Streams.
    Twilio,
    /// Telnyx media streaming.
    Telnyx,
}

impl Dialect {
    /// The vendor's name, for `info.source` and messages.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Twilio => "twilio",
            Dialect::Telnyx => "telnyx",
        }
    }
}

/// What the `start` message says about the call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallStart {
    /// The stream's id (Twilio `streamSid`, Telnyx `stream_id`): what we address our messages to.
    pub stream_id: String,
    /// The call's id (Twilio `callSid`, Telnyx `call_control_id`).
    pub call_id: String,
    /// The caller, when known (Telnyx `from`; on Twilio a `From` custom parameter).
    pub from: Option<String>,
    /// The number called, when known (Telnyx `to`; on Twilio a `To` custom parameter).
    pub to: Option<String>,
    /// The G.711 law of the audio both ways.
    pub law: Law,
    /// What the host is told of the call (`info_json` of `VbIncoming`).
    pub info: Value,
}

/// One message from the telephony provider.
#[derive(Debug, PartialEq)]
pub enum Inbound<'a> {
    /// The socket is open (the first message).
    Connected,
    /// The call's stream begins.
    Start(Box<CallStart>),
    /// Audio: base64 G.711. `caller` is false for a track other than the caller's (the agent's
    /// own audio, when a stream asked for both tracks).
    Media {
        /// Whether this is the caller's audio (`inbound` track, or no track named).
        caller: bool,
        /// The base64 payload, borrowed from the frame when it had no escapes.
        payload: Cow<'a, str>,
    },
    /// The caller pressed a key.
    Dtmf(String),
    /// A mark of ours came back: the audio before it was played (or cleared).
    Mark(String),
    /// The stream ended (the call hung up, or the stream was stopped).
    Stop,
    /// Telnyx reported an error (code, title, detail), the stream goes on.
    Error(String),
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    media: Option<MediaBody<'a>>,
    #[serde(default)]
    start: Option<Value>,
    #[serde(default)]
    dtmf: Option<Named>,
    #[serde(default)]
    mark: Option<Named>,
    #[serde(rename = "streamSid", default)]
    stream_sid: Option<String>,
    #[serde(default)]
    stream_id: Option<String>,
    /// Telnyx `error` frames.
    #[serde(default)]
    payload: Option<Value>,
}

#[derive(Deserialize)]
struct MediaBody<'a> {
    #[serde(borrow, default)]
    track: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    digit: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// A protocol violation by the provider: `VB_ERR_PROVIDER`, naming the vendor.
pub fn violation(dialect: Dialect, what: impl std::fmt::Display) -> Error {
    Error::new(
        VbStatus::VB_ERR_PROVIDER,
        format!("{NAME}: {}: {what}", dialect.name()),
    )
}

/// Parses one text frame. Malformed JSON, an unknown event or a message missing what its event
/// needs is an error naming what was wrong.
pub fn parse(dialect: Dialect, text: &str) -> Result<Inbound<'_>> {
    let frame: Frame = serde_json::from_str(text).map_err(|e| {
        violation(
            dialect,
            format!(
                "a message is not the JSON of a media-stream event ({}): {}",
                json_error(&e),
                excerpt(text)
            ),
        )
    })?;
    let missing = |what: &str| {
        violation(
            dialect,
            format!("a '{}' message has no {what}", frame.event),
        )
    };
    Ok(match frame.event.as_ref() {
        "connected" => Inbound::Connected,
        "start" => {
            let start = frame
                .start
                .as_ref()
                .ok_or_else(|| missing("'start' object"))?;
            let stream_id = frame
                .stream_sid
                .as_deref()
                .or(frame.stream_id.as_deref())
                .or_else(|| start.get("streamSid").and_then(Value::as_str));
            Inbound::Start(Box::new(call_start(dialect, start, stream_id)?))
        }
        "media" => {
            let media = frame.media.ok_or_else(|| missing("'media.payload'"))?;
            let caller = media
                .track
                .as_deref()
                .is_none_or(|t| t == "inbound" || t == "inbound_track");
            Inbound::Media {
                caller,
                payload: media.payload,
            }
        }
        "dtmf" => {
            let digit = frame
                .dtmf
                .and_then(|d| d.digit)
                .ok_or_else(|| missing("'dtmf.digit'"))?;
            let valid = digit.len() == 1
                && matches!(digit.as_bytes()[0], b'0'..=b'9' | b'*' | b'#' | b'A'..=b'D');
            if !valid {
                return Err(violation(
                    dialect,
                    format!("'{}' is not a DTMF key (0-9, *, #, A-D)", excerpt(&digit)),
                ));
            }
            Inbound::Dtmf(digit)
        }
        "mark" => Inbound::Mark(
            frame
                .mark
                .and_then(|m| m.name)
                .ok_or_else(|| missing("'mark.name'"))?,
        ),
        "stop" => Inbound::Stop,
        "error" if dialect == Dialect::Telnyx => {
            let payload = frame.payload.unwrap_or(Value::Null);
            let field = |key: &str| match payload.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "?".to_owned(),
            };
            Inbound::Error(format!(
                "{} ({}): {}",
                field("title"),
                field("code"),
                field("detail")
            ))
        }
        other => {
            return Err(violation(
                dialect,
                format!(
                    "unknown event '{}' (the protocol has connected, start, media, dtmf, mark, stop{})",
                    excerpt(other),
                    if dialect == Dialect::Telnyx {
                        ", error"
                    } else {
                        ""
                    }
                ),
            ));
        }
    })
}

/// The `start` object of `dialect`: ids, numbers, media format, and the host's `info`.
fn call_start(dialect: Dialect, start: &Value, stream_id: Option<&str>) -> Result<CallStart> {
    let text = |key: &str| start.get(key).and_then(Value::as_str).map(str::to_owned);
    let required = |key: &str| {
        text(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| violation(dialect, format!("the 'start' message has no '{key}'")))
    };
    let stream_id = stream_id
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            let key = match dialect {
                Dialect::Twilio => "streamSid",
                Dialect::Telnyx => "stream_id",
            };
            violation(dialect, format!("the 'start' message has no '{key}'"))
        })?;
    let (parameters_key, format_key) = match dialect {
        Dialect::Twilio => ("customParameters", "mediaFormat"),
        Dialect::Telnyx => ("custom_parameters", "media_format"),
    };
    let parameters = match start.get(parameters_key) {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(_) => {
            return Err(violation(
                dialect,
                format!("'start.{parameters_key}' is not an object"),
            ));
        }
    };
    let law = media_format(dialect, start.get(format_key), format_key)?;
    let encoding = match law {
        Law::MuLaw => "PCMU",
        Law::ALaw => "PCMA",
    };
    let parameter = |keys: [&str; 2]| {
        keys.iter()
            .find_map(|k| parameters.get(*k).and_then(Value::as_str))
            .map(str::to_owned)
    };
    let (call_id, from, to, info) = match dialect {
        Dialect::Twilio => {
            let call_id = required("callSid")?;
            let from = parameter(["From", "from"]);
            let to = parameter(["To", "to"]);
            let info = json!({
                "source": dialect.name(),
                "call_sid": call_id,
                "stream_sid": stream_id,
                "account_sid": text("accountSid"),
                "from": from,
                "to": to,
                "custom_parameters": parameters,
                "tracks": start.get("tracks").cloned().unwrap_or(Value::Null),
                "encoding": encoding,
            });
            (call_id, from, to, info)
        }
        Dialect::Telnyx => {
            let call_id = required("call_control_id")?;
            let from = text("from").or_else(|| parameter(["From", "from"]));
            let to = text("to").or_else(|| parameter(["To", "to"]));
            let info = json!({
                "source": dialect.name(),
                "call_control_id": call_id,
                "call_session_id": text("call_session_id"),
                "stream_id": stream_id,
                "from": from,
                "to": to,
                "client_state": text("client_state"),
                "custom_parameters": parameters,
                "encoding": encoding,
            });
            (call_id, from, to, info)
        }
    };
    Ok(CallStart {
        stream_id,
        call_id,
        from,
        to,
        law,
        info,
    })
}

/// The law of a `mediaFormat` / `media_format` object: G.711 at 8000 Hz mono, or an error
/// naming what else it was. Absent: each vendor's default (μ-law).
fn media_format(dialect: Dialect, format: Option<&Value>, key: &str) -> Result<Law> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(Law::MuLaw);
    };
    let (rate_key, encoding) = match dialect {
        Dialect::Twilio => ("sampleRate", format.get("encoding")),
        Dialect::Telnyx => ("sample_rate", format.get("encoding")),
    };
    let encoding = encoding.and_then(Value::as_str).unwrap_or("PCMU");
    let law = match encoding.to_ascii_lowercase().as_str() {
        "audio/x-mulaw" | "pcmu" | "mulaw" | "ulaw" => Law::MuLaw,
        "audio/x-alaw" | "pcma" | "alaw" => Law::ALaw,
        _ => {
            return Err(violation(
                dialect,
                format!(
                    "'start.{key}.encoding' is '{}': only G.711 (PCMU / audio/x-mulaw, PCMA) is supported",
                    excerpt(encoding)
                ),
            ));
        }
    };
    let rate = format.get(rate_key).and_then(Value::as_u64).unwrap_or(8000);
    let channels = format.get("channels").and_then(Value::as_u64).unwrap_or(1);
    if rate != u64::from(G711_RATE) || channels != 1 {
        return Err(violation(
            dialect,
            format!(
                "'start.{key}' is {rate} Hz with {channels} channel(s): only 8000 Hz mono is supported"
            ),
        ));
    }
    Ok(law)
}

/// The messages we send on one call, with the stream id they are addressed to.
pub struct Outbound {
    dialect: Dialect,
    /// `"streamSid":"…",` (Twilio) or nothing (Telnyx), JSON-escaped once.
    address: String,
}

impl Outbound {
    /// Messages for the stream `stream_id` of `dialect`.
    pub fn new(dialect: Dialect, stream_id: &str) -> Outbound {
        let address = match dialect {
            Dialect::Twilio => format!("\"streamSid\":{},", Value::from(stream_id)),
            Dialect::Telnyx => String::new(),
        };
        Outbound { dialect, address }
    }

    /// The protocol.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// A `media` message carrying `payload` (base64).
    pub fn media(&self, payload: &str) -> String {
        format!(
            "{{\"event\":\"media\",{}\"media\":{{\"payload\":\"{payload}\"}}}}",
            self.address
        )
    }

    /// A `mark` message named `name` (letters, digits and `-` only: no escaping needed).
    pub fn mark(&self, name: &str) -> String {
        format!(
            "{{\"event\":\"mark\",{}\"mark\":{{\"name\":\"{name}\"}}}}",
            self.address
        )
    }

    /// A `clear` message: the provider drops the audio it has not played yet.
    pub fn clear(&self) -> String {
        let address = self.address.trim_end_matches(',');
        if address.is_empty() {
            "{\"event\":\"clear\"}".to_owned()
        } else {
            format!("{{\"event\":\"clear\",{address}}}")
        }
    }
}

/// serde_json's complaint, at most about 180 characters: it quotes the offending value whole
/// ("invalid type: string \"…\""), and a provider's frame must not flood the host's logs (found
/// by the `phone_stream` fuzz target). The end, which says where, is kept.
fn json_error(e: &serde_json::Error) -> String {
    crate::error::shorten(&e.to_string(), 180).into_owned()
}

/// At most 80 characters of `text`, for messages.
pub fn excerpt(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(80) {
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of the vendors' documentation (see the module docs), field for field.
    const TWILIO_START: &str = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX","streamSid":"MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX","callSid":"CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX","tracks":["inbound","outbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"FirstName":"Jane","LastName":"Doe","RemoteParty":"Bob"}},"streamSid":"MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"}"#;
    const TELNYX_START: &str = r#"{"event":"start","sequence_number":"1","stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC","start":{"user_id":"3E6F995F-85F7-4705-9741-53B116D28237","call_control_id":"v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ","call_session_id":"ff55a038-6f5d-11ef-9692-02420aeffb1f","from":"+13122010094","to":"+13122123456","tags":["TAG1","TAG2"],"client_state":"aGF2ZSBhIG5pY2UgZGF5ID1d","custom_parameters":{"customer_id":"customer_123"},"media_format":{"encoding":"PCMA","sample_rate":8000,"channels":1}}}"#;

    #[test]
    fn a_refusal_quotes_a_long_value_only_in_part() {
        let frame = format!(r#""{}""#, "x".repeat(5000));
        let e = parse(Dialect::Twilio, &frame).unwrap_err();
        assert!(e.message().chars().count() < 400, "{}", e.message());
        assert!(
            e.message()
                .contains("expected struct Frame at line 1 column"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn twilio_messages_parse() {
        assert_eq!(
            parse(
                Dialect::Twilio,
                r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#
            )
            .unwrap(),
            Inbound::Connected
        );
        let Inbound::Start(start) = parse(Dialect::Twilio, TWILIO_START).unwrap() else {
            panic!("not a start");
        };
        assert_eq!(start.stream_id, "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX");
        assert_eq!(start.call_id, "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX");
        assert_eq!(start.law, Law::MuLaw);
        assert_eq!(start.info["source"], "twilio");
        assert_eq!(start.info["custom_parameters"]["FirstName"], "Jane");
        let media = r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"no+JhoaJjpzSHxAKBgYJ"},"streamSid":"MZX"}"#;
        assert_eq!(
            parse(Dialect::Twilio, media).unwrap(),
            Inbound::Media {
                caller: true,
                payload: Cow::Borrowed("no+JhoaJjpzSHxAKBgYJ")
            }
        );
        let outbound = media.replace("\"inbound\"", "\"outbound\"");
        assert!(matches!(
            parse(Dialect::Twilio, &outbound).unwrap(),
            Inbound::Media { caller: false, .. }
        ));
        let dtmf = r#"{"event":"dtmf","streamSid":"MZX","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#;
        assert_eq!(
            parse(Dialect::Twilio, dtmf).unwrap(),
            Inbound::Dtmf("1".into())
        );
        let mark =
            r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZX","mark":{"name":"my label"}}"#;
        assert_eq!(
            parse(Dialect::Twilio, mark).unwrap(),
            Inbound::Mark("my label".into())
        );
        let stop = r#"{"event":"stop","sequenceNumber":"5","stop":{"accountSid":"AC","callSid":"CA"},"streamSid":"MZX"}"#;
        assert_eq!(parse(Dialect::Twilio, stop).unwrap(), Inbound::Stop);
    }

    #[test]
    fn telnyx_messages_parse() {
        assert_eq!(
            parse(
                Dialect::Telnyx,
                r#"{"event":"connected","version":"1.0.0"}"#
            )
            .unwrap(),
            Inbound::Connected
        );
        let Inbound::Start(start) = parse(Dialect::Telnyx, TELNYX_START).unwrap() else {
            panic!("not a start");
        };
        assert_eq!(start.stream_id, "32DE0DEA-53CB-4B21-89A4-9E1819C043BC");
        assert!(start.call_id.starts_with("v2:"));
        assert_eq!(start.from.as_deref(), Some("+13122010094"));
        assert_eq!(start.to.as_deref(), Some("+13122123456"));
        assert_eq!(start.law, Law::ALaw);
        assert_eq!(
            start.info["custom_parameters"]["customer_id"],
            "customer_123"
        );
        let media = r#"{"event":"media","sequence_number":"4","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"SGVsbG8="},"stream_id":"32DE"}"#;
        assert!(matches!(
            parse(Dialect::Telnyx, media).unwrap(),
            Inbound::Media { caller: true, .. }
        ));
        let dtmf = r##"{"event":"dtmf","stream_id":"32DE","occurred_at":"2022-03-07T14:41:56.918Z","sequence_number":"6","dtmf":{"digit":"#"}}"##;
        assert_eq!(
            parse(Dialect::Telnyx, dtmf).unwrap(),
            Inbound::Dtmf("#".into())
        );
        let error = r#"{"event":"error","sequence_number":"7","stream_id":"32DE","payload":{"code":100002,"title":"unknown_error","detail":"An unknown error occurred"}}"#;
        assert_eq!(
            parse(Dialect::Telnyx, error).unwrap(),
            Inbound::Error("unknown_error (100002): An unknown error occurred".into())
        );
    }

    #[test]
    fn violations_say_what_was_wrong() {
        let message = |dialect, text| parse(dialect, text).unwrap_err().to_string();
        assert!(message(Dialect::Twilio, "{not json").contains("not the JSON"));
        assert!(message(Dialect::Twilio, r#"{"event":"hello"}"#).contains("unknown event 'hello'"));
        assert!(message(Dialect::Twilio, r#"{"event":"error"}"#).contains("unknown event 'error'"));
        assert!(message(Dialect::Twilio, r#"{"event":"media"}"#).contains("no 'media.payload'"));
        assert!(
            message(Dialect::Twilio, r#"{"event":"dtmf","dtmf":{"digit":"x"}}"#)
                .contains("not a DTMF key")
        );
        let no_call = TWILIO_START.replace("\"callSid\"", "\"otherSid\"");
        assert!(message(Dialect::Twilio, &no_call).contains("no 'callSid'"));
        let wideband = TELNYX_START.replace("\"sample_rate\":8000", "\"sample_rate\":16000");
        assert!(message(Dialect::Telnyx, &wideband).contains("16000 Hz"));
        let opus = TELNYX_START.replace("\"PCMA\"", "\"OPUS\"");
        assert!(message(Dialect::Telnyx, &opus).contains("only G.711"));
        let error = parse(Dialect::Telnyx, "[]").unwrap_err();
        assert_eq!(error.status(), VbStatus::VB_ERR_PROVIDER);
        assert!(error.message().starts_with("phone: telnyx: "), "{error}");
    }

    #[test]
    fn outbound_messages_are_the_documented_json() {
        let twilio = Outbound::new(Dialect::Twilio, "MZ1");
        let value = |s: String| serde_json::from_str::<Value>(&s).unwrap();
        assert_eq!(
            value(twilio.media("AAAA")),
            json!({"event":"media","streamSid":"MZ1","media":{"payload":"AAAA"}})
        );
        assert_eq!(
            value(twilio.mark("reply-1")),
            json!({"event":"mark","streamSid":"MZ1","mark":{"name":"reply-1"}})
        );
        assert_eq!(
            value(twilio.clear()),
            json!({"event":"clear","streamSid":"MZ1"})
        );
        let telnyx = Outbound::new(Dialect::Telnyx, "32DE");
        assert_eq!(
            value(telnyx.media("AAAA")),
            json!({"event":"media","media":{"payload":"AAAA"}})
        );
        assert_eq!(value(telnyx.clear()), json!({"event":"clear"}));
        // A stream id needing escapes stays valid JSON.
        let odd = Outbound::new(Dialect::Twilio, "a\"b");
        assert_eq!(value(odd.clear())["streamSid"], "a\"b");
    }
}
