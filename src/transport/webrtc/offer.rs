//! The signalling messages, in the shape of Pipecat's SmallWebRTC runner (pipecat-ai 1.14.0,
//! `pipecat/transports/smallwebrtc/request_handler.py` and `pipecat/runner/run.py`):
//!
//! - `POST /api/offer` takes a `SmallWebRTCRequest`: `{"sdp": …, "type": "offer", "pc_id": …?,
//!   "restart_pc": …?, "request_data": …?}` (`requestData` is accepted too), and answers what
//!   `SmallWebRTCConnection.get_answer()` returns: `{"sdp": …, "type": "answer", "pc_id": …}`.
//!   An offer naming a `pc_id` renegotiates that connection (a browser's `restartIce()` is an
//!   ICE restart on it); with `"restart_pc": true` the connection is replaced by a new one for
//!   the same session, as Pipecat's `SmallWebRTCConnection.renegotiate(restart_pc=True)` does.
//! - `PATCH /api/offer` takes a `SmallWebRTCPatchRequest`: `{"pc_id": …, "candidates":
//!   [{"candidate": …, "sdp_mid": …, "sdp_mline_index": …}]}` (trickled ICE candidates).
//!
//! Pure data: parsing and building, on the calling thread.

use serde::Deserialize;
use serde_json::{Value, json};

/// An offer as posted (`SmallWebRTCRequest`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OfferRequest {
    /// The SDP of the offer.
    pub sdp: String,
    /// Must be `"offer"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The connection renegotiated, when the client has one.
    #[serde(default)]
    pub pc_id: Option<String>,
    /// Replace the connection `pc_id` by a new one (the session goes on).
    #[serde(default)]
    pub restart_pc: Option<bool>,
    /// The client's own data, handed to the host with the arriving session.
    #[serde(default, alias = "requestData")]
    pub request_data: Option<Value>,
}

/// Trickled candidates as patched (`SmallWebRTCPatchRequest`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PatchRequest {
    /// The connection they belong to.
    pub pc_id: String,
    /// The candidates.
    pub candidates: Vec<PatchCandidate>,
}

/// One trickled candidate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PatchCandidate {
    /// The `candidate:` line (empty: end of candidates).
    pub candidate: String,
    /// Its media line's mid.
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// Its media line's index.
    #[serde(default)]
    pub sdp_mline_index: Option<u32>,
}

/// Why a request was refused: the HTTP status and the message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status (4xx, 5xx).
    pub status: u16,
    /// What was wrong, for a person.
    pub message: String,
    /// The engine's status name when the engine refused (`VB_ERR_SESSION_LIMIT`).
    pub code: Option<&'static str>,
}

impl Refusal {
    /// A refusal with `status` saying `message`.
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            code: None,
        }
    }

    /// The JSON body: `{"error": message, "status": status, "code": …}`.
    pub fn body(&self) -> String {
        let mut body = json!({ "error": self.message, "status": self.status });
        if let Some(code) = self.code {
            body["code"] = code.into();
        }
        body.to_string()
    }
}

fn bad_json(what: &str, e: serde_json::Error) -> Refusal {
    Refusal::new(400, format!("{what}: not the expected JSON ({e})"))
}

/// Parses a posted offer: 400 naming what is wrong (not JSON, a field missing or of the wrong
/// type, `type` not `"offer"`, an empty SDP).
pub fn parse_offer(body: &[u8]) -> Result<OfferRequest, Refusal> {
    let offer: OfferRequest = serde_json::from_slice(body).map_err(|e| {
        bad_json(
            "POST /api/offer takes {\"sdp\": …, \"type\": \"offer\", \"pc_id\"?, \"restart_pc\"?}",
            e,
        )
    })?;
    if offer.kind != "offer" {
        return Err(Refusal::new(
            400,
            format!("type: '{}', expected 'offer'", offer.kind),
        ));
    }
    if offer.sdp.trim().is_empty() {
        return Err(Refusal::new(400, "sdp: empty"));
    }
    if offer.restart_pc == Some(true) && offer.pc_id.is_none() {
        return Err(Refusal::new(
            400,
            "restart_pc: true needs the pc_id of the connection to restart",
        ));
    }
    Ok(offer)
}

/// Parses trickled candidates: 400 naming what is wrong.
pub fn parse_patch(body: &[u8]) -> Result<PatchRequest, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        bad_json(
            "PATCH /api/offer takes {\"pc_id\": …, \"candidates\": [{\"candidate\", \"sdp_mid\", \"sdp_mline_index\"}]}",
            e,
        )
    })
}

/// The answer's JSON body.
pub fn answer_body(sdp: &str, pc_id: &str) -> String {
    json!({ "sdp": sdp, "type": "answer", "pc_id": pc_id }).to_string()
}

/// The `candidateInit` JSON str0m reads for one trickled candidate; `None` for the end marker.
pub fn candidate_init(candidate: &PatchCandidate) -> Option<String> {
    if candidate.candidate.trim().is_empty() {
        return None;
    }
    Some(
        json!({
            "candidate": candidate.candidate,
            "sdpMid": candidate.sdp_mid,
            "sdpMLineIndex": candidate.sdp_mline_index,
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_parse_in_pipecats_shape() {
        let offer = parse_offer(
            br#"{"sdp": "v=0", "type": "offer", "pc_id": "p1", "restart_pc": true, "requestData": {"a": 1}}"#,
        )
        .unwrap();
        assert_eq!(offer.pc_id.as_deref(), Some("p1"));
        assert_eq!(offer.restart_pc, Some(true));
        assert_eq!(offer.request_data, Some(json!({"a": 1})));
        let plain = parse_offer(br#"{"sdp": "v=0", "type": "offer"}"#).unwrap();
        assert_eq!((plain.pc_id, plain.restart_pc), (None, None));
        let answer: Value = serde_json::from_str(&answer_body("v=0", "p1")).unwrap();
        assert_eq!(
            answer,
            json!({"sdp": "v=0", "type": "answer", "pc_id": "p1"})
        );
    }

    #[test]
    fn bad_offers_are_400_and_say_why() {
        let refused = |body: &[u8]| parse_offer(body).unwrap_err();
        assert!(
            refused(b"{not json")
                .message
                .contains("not the expected JSON")
        );
        assert!(
            refused(br#"{"type": "offer"}"#)
                .message
                .contains("missing field `sdp`")
        );
        assert!(
            refused(br#"{"sdp": "v=0", "type": "answer"}"#)
                .message
                .contains("'answer', expected 'offer'")
        );
        assert!(
            refused(br#"{"sdp": " ", "type": "offer"}"#)
                .message
                .contains("sdp: empty")
        );
        assert!(
            refused(br#"{"sdp": "v=0", "type": "offer", "restart_pc": true}"#)
                .message
                .contains("needs the pc_id")
        );
        assert_eq!(refused(b"[]").status, 400);
        let body: Value = serde_json::from_str(&refused(b"1").body()).unwrap();
        assert_eq!(body["status"], 400);
    }

    #[test]
    fn trickled_candidates_become_candidate_inits() {
        let patch = parse_patch(
            br#"{"pc_id": "p", "candidates": [{"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdp_mid": "0", "sdp_mline_index": 0}, {"candidate": ""}]}"#,
        )
        .unwrap();
        let init: Value =
            serde_json::from_str(&candidate_init(&patch.candidates[0]).unwrap()).unwrap();
        assert_eq!(init["sdpMid"], "0");
        assert_eq!(candidate_init(&patch.candidates[1]), None);
        assert!(parse_patch(br#"{"candidates": []}"#).is_err());
    }
}
