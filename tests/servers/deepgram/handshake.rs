//! The handshake of the local Deepgram-protocol server: the `Authorization` header and the query
//! parameters, checked against Deepgram's documented values, and refusals in Deepgram's form.

use std::collections::BTreeMap;

use serde_json::json;

use crate::servers::ws_server::{self, HandshakeInfo, Refusal};

/// Models the endpoint documents.
const MODELS: [&str; 30] = [
    "nova-3",
    "nova-3-general",
    "nova-3-medical",
    "nova-2",
    "nova-2-general",
    "nova-2-meeting",
    "nova-2-finance",
    "nova-2-conversationalai",
    "nova-2-voicemail",
    "nova-2-video",
    "nova-2-medical",
    "nova-2-drivethru",
    "nova-2-automotive",
    "nova",
    "nova-general",
    "nova-phonecall",
    "nova-medical",
    "enhanced",
    "enhanced-general",
    "enhanced-meeting",
    "enhanced-phonecall",
    "enhanced-finance",
    "base",
    "meeting",
    "phonecall",
    "finance",
    "conversationalai",
    "voicemail",
    "video",
    "custom",
];
/// Encodings the endpoint documents.
const ENCODINGS: [&str; 11] = [
    "linear16", "linear32", "flac", "alaw", "mulaw", "amr-nb", "amr-wb", "opus", "ogg-opus",
    "speex", "g729",
];
/// Documented parameters whose value is `true` or `false`.
const BOOLEANS: [&str; 11] = [
    "diarize",
    "dictation",
    "interim_results",
    "mip_opt_out",
    "multichannel",
    "numerals",
    "profanity_filter",
    "punctuate",
    "smart_format",
    "vad_events",
    "filler_words",
];
/// Documented parameters taken as given (they change nothing this server computes).
const FREE_FORM: [&str; 9] = [
    "callback",
    "extra",
    "keyterm",
    "keywords",
    "replace",
    "search",
    "tag",
    "version",
    "callback_method",
];

/// What the query asked for.
#[derive(Debug, Clone)]
pub(super) struct Params {
    pub(super) model: String,
    pub(super) sample_rate: u32,
    pub(super) interim_results: bool,
    pub(super) endpointing_ms: Option<u32>,
    pub(super) punctuate: bool,
    pub(super) smart_format: bool,
}

impl Params {
    pub(super) fn parse(query: &[(String, String)]) -> Result<Params, String> {
        let mut map = BTreeMap::new();
        for (k, v) in query {
            if map.insert(k.as_str(), v.as_str()).is_some() {
                return Err(format!("{k} is given twice"));
            }
        }
        let flag = |name: &str| match map.get(name) {
            None => Ok(false),
            Some(&"true") => Ok(true),
            Some(&"false") => Ok(false),
            Some(v) => Err(format!("{name}={v}: expected true or false")),
        };
        for (name, value) in &map {
            let known = BOOLEANS.contains(name)
                || FREE_FORM.contains(name)
                || [
                    "model",
                    "language",
                    "encoding",
                    "sample_rate",
                    "channels",
                    "endpointing",
                    "utterance_end_ms",
                    "redact",
                ]
                .contains(name);
            if !known {
                return Err(format!("{name}: unknown query parameter"));
            }
            if BOOLEANS.contains(name) {
                flag(name)?;
            }
            if *name == "callback_method" && !["POST", "GET", "PUT", "DELETE"].contains(value) {
                return Err(format!("callback_method={value}: not a documented method"));
            }
        }
        let model = map.get("model").copied().unwrap_or("base");
        if !MODELS.contains(&model) {
            return Err(format!("model={model}: no such model"));
        }
        let language = map.get("language").copied().unwrap_or("en");
        if !(language == "en" || language.starts_with("en-")) {
            return Err(format!(
                "language={language}: this local server's model (Whisper tiny.en) is English-only"
            ));
        }
        let encoding = map.get("encoding").copied();
        match encoding {
            Some("linear16") => {}
            Some(e) if ENCODINGS.contains(&e) => {
                return Err(format!(
                    "encoding={e}: this local server decodes linear16 only"
                ));
            }
            Some(e) => return Err(format!("encoding={e}: not a documented encoding")),
            None => {
                return Err(
                    "encoding: missing (this local server needs raw linear16 audio)".to_owned(),
                );
            }
        }
        let sample_rate = match map.get("sample_rate").map(|r| r.parse::<u32>()) {
            Some(Ok(rate)) if (8000..=48_000).contains(&rate) => rate,
            Some(_) => return Err("sample_rate: expected 8000 to 48000".to_owned()),
            None => return Err("sample_rate: required when encoding is given".to_owned()),
        };
        if map.get("channels").is_some_and(|c| *c != "1") || flag("multichannel")? {
            return Err("channels: this local server transcribes mono audio only".to_owned());
        }
        let interim_results = flag("interim_results")?;
        let endpointing_ms = match map.get("endpointing").copied() {
            None => Some(10),
            Some("false") => None,
            Some("true") => Some(10),
            Some(ms) => Some(
                ms.parse::<u32>()
                    .map_err(|_| format!("endpointing={ms}: expected false or milliseconds"))?,
            ),
        };
        if let Some(ms) = map.get("utterance_end_ms") {
            ms.parse::<u32>()
                .map_err(|_| format!("utterance_end_ms={ms}: expected milliseconds"))?;
            if !interim_results {
                return Err("utterance_end_ms needs interim_results=true".to_owned());
            }
        }
        if let Some(r) = map.get("redact") {
            let redactions = [
                "true",
                "false",
                "pci",
                "numbers",
                "aggressive_numbers",
                "ssn",
            ];
            if !redactions.contains(r) {
                return Err(format!("redact={r}: not a documented value"));
            }
        }
        Ok(Params {
            model: model.to_owned(),
            sample_rate,
            interim_results,
            endpointing_ms,
            punctuate: flag("punctuate")?,
            smart_format: flag("smart_format")?,
        })
    }
}

/// A refusal in Deepgram's form: the status, `dg-error` and `dg-request-id` headers, and the
/// error body (`err_code`, `err_msg`, `request_id`).
fn refusal(status: u16, code: &str, message: &str) -> Refusal {
    let request_id = ws_server::uuid();
    Refusal {
        status,
        headers: vec![
            ("dg-error", message.to_owned()),
            ("dg-request-id", request_id.clone()),
        ],
        body: json!({"err_code": code, "err_msg": message, "request_id": request_id}).to_string(),
    }
}

pub(super) fn check_handshake(info: &HandshakeInfo, key: &str) -> Result<Params, Refusal> {
    if info.path != "/v1/listen" {
        return Err(refusal(404, "NOT_FOUND", "no such endpoint"));
    }
    let credentials = info.header("authorization").unwrap_or_default();
    let token = credentials
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("token"))
        .map(|(_, token)| token.trim());
    if token != Some(key) {
        return Err(refusal(401, "INVALID_AUTH", "Invalid credentials."));
    }
    Params::parse(&info.query).map_err(|why| refusal(400, "Bad Request", &why))
}
