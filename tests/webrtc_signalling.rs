//! Direct WebRTC's signalling server (`provider_config.webrtc` of the `local` backend), spoken
//! to over plain HTTP/1.1 on 127.0.0.1: what an offer gets (an answer and a session handed to
//! the host), what bad input gets (a clear 4xx, never a crash: the server answers the next
//! request), and the refusals (a full backend: 503 naming `max_concurrent_sessions`; no host).
//! The offer is one aiortc 1.16 made (`tests/webrtc/offer.sdp`, loopback candidates only); the
//! media of real calls is tested with real peers in `webrtc_aiortc.rs` and `webrtc_browser.rs`.
#![cfg(feature = "test-providers")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::echo_agent;
use serde_json::{Value, json};
use voicebackend::backend::{Accepted, IncomingHandler};
use voicebackend::{Backend, Error, Session, SessionConfig, VbSessionState, VbStatus};

const OFFER: &str = include_str!("webrtc/offer.sdp");

/// The host: takes every call (or refuses them all) and keeps the sessions with their info.
struct Host {
    refuse: bool,
    calls: Mutex<Vec<(Value, Session)>>,
}

impl IncomingHandler for Host {
    fn on_session(&self, session: Session, info: &Value) -> voicebackend::Result<Accepted> {
        if self.refuse {
            return Err(Error::new(
                VbStatus::VB_ERR_UNAUTHORIZED,
                "this host takes no calls today",
            ));
        }
        self.calls.lock().unwrap().push((info.clone(), session));
        Ok(Accepted {
            agent: Some(echo_agent()),
            on_event: None,
        })
    }
}

fn backend(host: Option<Arc<Host>>, extra: &str) -> Backend {
    let json = format!(
        r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts",
            "persistence":{{"path":""}},
            "provider_config":{{"webrtc":{{"listen":"127.0.0.1:0"}}}}{extra}}}"#
    );
    let backend = Backend::from_json(&json).expect("backend config");
    if let Some(host) = host {
        backend.set_incoming(host).unwrap();
    }
    backend.start().expect("start");
    backend
}

fn host(refuse: bool) -> Arc<Host> {
    Arc::new(Host {
        refuse,
        calls: Mutex::new(Vec::new()),
    })
}

/// One raw HTTP/1.1 request; the status and the body (the server closes after one answer).
fn request(address: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    // A server that refuses before reading the whole body may close early: that is fine.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn send(address: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    request(address, &head, body.as_bytes())
}

fn post_offer(address: SocketAddr, offer: &Value) -> (u16, Value) {
    let (status, body) = send(address, "POST", "/api/offer", &offer.to_string());
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

fn offer() -> Value {
    json!({"sdp": OFFER, "type": "offer"})
}

/// The refusal's message, checked to be JSON with the status.
fn refused(status: u16, body: &str, expected: u16) -> String {
    assert_eq!(status, expected, "{body}");
    let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(json["status"], expected);
    json["error"].as_str().unwrap().to_owned()
}

#[test]
fn an_offer_is_answered_and_becomes_a_session_handed_to_the_host() {
    let host = host(false);
    let backend = backend(Some(host.clone()), "");
    let address = backend
        .listening_address()
        .expect("the WebRTC server's address");
    assert!(address.ip().is_loopback() && address.port() != 0);
    let mut offer = offer();
    offer["request_data"] = json!({"user": "ada"});
    let (status, answer) = post_offer(address, &offer);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["type"], "answer");
    let sdp = answer["sdp"].as_str().unwrap();
    assert!(sdp.starts_with("v=0") && sdp.contains("m=audio") && sdp.contains("opus/48000/2"));
    assert!(
        sdp.contains("m=application"),
        "the data channel is answered: {sdp}"
    );
    assert!(sdp.contains("127.0.0.1"), "a loopback candidate: {sdp}");
    let pc_id = answer["pc_id"].as_str().unwrap().to_owned();
    {
        let calls = host.calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        let (info, session) = &calls[0];
        assert_eq!(info["pc_id"], pc_id.as_str());
        assert_eq!(info["transport"], "webrtc");
        assert_eq!(info["request_data"], json!({"user": "ada"}));
        assert_ne!(session.state(), VbSessionState::VB_STATE_STOPPED);
    }
    // A renegotiation on the same connection, and a restart on a new one: same pc_id, no new
    // session.
    let mut again = self::offer();
    again["pc_id"] = pc_id.clone().into();
    let (status, answer) = post_offer(address, &again);
    assert_eq!(
        (status, answer["pc_id"].as_str()),
        (200, Some(pc_id.as_str())),
        "{answer}"
    );
    again["restart_pc"] = true.into();
    let (status, answer) = post_offer(address, &again);
    assert_eq!(
        (status, answer["pc_id"].as_str()),
        (200, Some(pc_id.as_str())),
        "{answer}"
    );
    let patch = json!({"pc_id": pc_id, "candidates": [{"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "sdp_mid": "0", "sdp_mline_index": 0}]});
    let (status, body) = send(address, "PATCH", "/api/offer", &patch.to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(host.calls.lock().unwrap().len(), 1);
    // A session of this transport cannot be made by hand: only the server opens them.
    let config = SessionConfig {
        transport: "webrtc".into(),
        ..SessionConfig::default()
    };
    let e = backend
        .create_session(config, Some(echo_agent()), None)
        .unwrap_err();
    assert!(e.message().contains("opened by the WebRTC server"), "{e}");
    backend.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn bad_requests_get_a_clear_4xx_and_the_server_goes_on() {
    let backend = backend(Some(host(false)), "");
    let address = backend.listening_address().unwrap();
    let (status, body) = send(address, "POST", "/api/offer", "{not json");
    assert!(refused(status, &body, 400).contains("not the expected JSON"));
    let (status, body) = send(address, "POST", "/api/offer", r#"{"type":"offer"}"#);
    assert!(refused(status, &body, 400).contains("missing field `sdp`"));
    let (status, body) = send(
        address,
        "POST",
        "/api/offer",
        r#"{"sdp":"v=0","type":"answer"}"#,
    );
    assert!(refused(status, &body, 400).contains("expected 'offer'"));
    let garbage = json!({"sdp": "v=0\r\nthis is no SDP\r\nm=audio nothing\r\n", "type": "offer"});
    let (status, body) = send(address, "POST", "/api/offer", &garbage.to_string());
    assert!(refused(status, &body, 400).starts_with("sdp: "), "{body}");
    let no_audio = json!({"sdp": OFFER.split("m=audio").next().unwrap(), "type": "offer"});
    let (status, body) = send(address, "POST", "/api/offer", &no_audio.to_string());
    assert!(refused(status, &body, 400).contains("no audio line"));
    let unknown =
        json!({"sdp": OFFER, "type": "offer", "pc_id": "webrtc-nobody", "restart_pc": true});
    let (status, body) = send(address, "POST", "/api/offer", &unknown.to_string());
    assert!(refused(status, &body, 404).contains("pc_id 'webrtc-nobody'"));
    let patch = json!({"pc_id": "webrtc-nobody", "candidates": []});
    let (status, body) = send(address, "PATCH", "/api/offer", &patch.to_string());
    assert!(refused(status, &body, 404).contains("webrtc-nobody"));
    let (status, body) = send(address, "PATCH", "/api/offer", r#"{"candidates": 1}"#);
    refused(status, &body, 400);
    let (status, body) = send(address, "GET", "/api/offer", "");
    assert!(refused(status, &body, 405).contains("only POST"));
    let (status, body) = send(address, "DELETE", "/api/offer", "");
    refused(status, &body, 405);
    let (status, body) = send(address, "POST", "/offer", &offer().to_string());
    assert!(refused(status, &body, 404).contains("/api/offer"));
    let (status, body) = send(address, "GET", "/", "");
    refused(status, &body, 404);
    // A huge body: refused from its declared length, and when it comes chunked without one.
    let huge = "x".repeat(1 << 20);
    let (status, body) = send(address, "POST", "/api/offer", &huge);
    assert!(refused(status, &body, 413).contains("over 65536 bytes"));
    let head = format!(
        "POST /api/offer HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut chunked = Vec::new();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 4096, "y".repeat(4096)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = request(address, &head, &chunked);
    refused(status, &body, 413);
    let head = format!(
        "POST /api/offer HTTP/1.1\r\nHost: {address}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"
    );
    let (status, body) = request(address, &head, b"{}");
    assert!(refused(status, &body, 415).contains("application/json"));
    // Not HTTP at all: the connection is dropped, the server is unharmed.
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .write_all(b"\x16\x03\x01 hello, TLS?\r\n\r\n")
        .unwrap();
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    // After all that, an offer is still answered.
    let (status, answer) = post_offer(address, &offer());
    assert_eq!(status, 200, "{answer}");
    backend.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_full_backend_refuses_with_503_naming_max_concurrent_sessions() {
    let host = host(false);
    let backend = backend(Some(host.clone()), r#","max_concurrent_sessions":1"#);
    let address = backend.listening_address().unwrap();
    let (status, answer) = post_offer(address, &offer());
    assert_eq!(status, 200, "{answer}");
    let (status, body) = send(address, "POST", "/api/offer", &offer().to_string());
    let message = refused(status, &body, 503);
    assert!(
        message.contains("max_concurrent_sessions (1) reached"),
        "{message}"
    );
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["code"], "VB_ERR_SESSION_LIMIT");
    assert_eq!(host.calls.lock().unwrap().len(), 1);
    // Once the first call's session stops, the next call is taken.
    let (_, session) = host.calls.lock().unwrap().pop().unwrap();
    session.stop().unwrap();
    drop(session);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = send(address, "POST", "/api/offer", &offer().to_string());
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    backend.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn without_a_host_or_with_a_refusing_one_offers_are_refused() {
    let backend = self::backend(None, "");
    let address = backend.listening_address().unwrap();
    let (status, body) = send(address, "POST", "/api/offer", &offer().to_string());
    assert!(refused(status, &body, 503).contains("vb_backend_set_incoming"));
    backend.stop(Duration::from_secs(5)).unwrap();

    let backend = self::backend(Some(host(true)), "");
    let address = backend.listening_address().unwrap();
    let (status, body) = send(address, "POST", "/api/offer", &offer().to_string());
    assert!(refused(status, &body, 403).contains("this host takes no calls today"));
    backend.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn configuration_mistakes_name_the_key() {
    let make = |provider_config: &str| {
        Backend::from_json(&format!(
            r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts","provider_config":{provider_config}}}"#
        ))
    };
    let message = |provider_config: &str| make(provider_config).err().unwrap().to_string();
    assert!(message(r#"{"webrtc":{"listen":"nowhere"}}"#).contains("webrtc.listen"));
    assert!(message(r#"{"webrtc":{"max":1}}"#).contains("webrtc.max: unknown key"));
    assert!(
        message(r#"{"webrtc":{},"phone":{"listen":"127.0.0.1:0"}}"#)
            .contains("'phone' and 'webrtc' cannot both be set")
    );
    // A taken address fails the start, naming it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let backend = make(&format!(r#"{{"webrtc":{{"listen":"{address}"}}}}"#)).unwrap();
    let e = backend.start().unwrap_err();
    assert!(
        e.message().contains(&format!("cannot listen on {address}")),
        "{e}"
    );
}
