//! `voicebackend serve` with an independent WebRTC peer: aiortc (Python, PyPI `aiortc`, in the
//! test venv of scripts/setup.sh --tests) runs `tests/webrtc/client.py`, which posts an offer to
//! POST /api/offer, speaks a question (eSpeak NG) over Opus at real-time pace, and reports the
//! RTVI messages of its data channel and the agent's audio it received. The embedded providers
//! (Whisper tiny.en, eSpeak NG) and the CLI's rule-based agent answer; everything on 127.0.0.1.
//!
//! Skips loudly when the venv has no aiortc and CI is not set; fails under CI=true.
#![cfg(feature = "test-providers")]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::serve::{Served, skip_without, spoken_wav, test_dir};
use serde_json::Value;

/// The venv's Python, when it has aiortc.
fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("VOICEBACKEND_VENV").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/voicebackend/venv")
        },
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    let has = Command::new(&python)
        .args(["-c", "import aiortc"])
        .status()
        .is_ok_and(|s| s.success());
    has.then_some(python)
}

/// Runs the client; its exit status and its JSON report.
fn client(python: &PathBuf, url: &str, wav: &PathBuf, args: &[&str]) -> (i32, Value, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webrtc/client.py");
    let output = Command::new(python)
        .arg(script)
        .args(["--url", url, "--wav"])
        .arg(wav)
        .args(args)
        .output()
        .expect("run the aiortc client");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), report, stderr)
}

fn question(dir: &std::path::Path) -> PathBuf {
    let wav = dir.join("question.wav");
    spoken_wav(&wav, "What is twelve plus seven?", 300, 1500);
    wav
}

#[test]
fn an_aiortc_client_talks_over_opus_hears_the_agent_and_gets_rtvi_and_a_restart_keeps_the_session()
{
    let Some(python) = python() else {
        skip_without(
            "aiortc in the test venv",
            "scripts/setup.sh --tests installs it",
        );
        return;
    };
    let dir = test_dir("webrtc-aiortc");
    let wav = question(&dir);
    let served = Served::start(&[]);
    let (code, report, stderr) = client(
        &python,
        &served.url,
        &wav,
        &["--turns", "1", "--restart", "--timeout", "60"],
    );
    let context = || {
        format!(
            "report: {report}\nclient: {stderr}\nserve: {}",
            served.output()
        )
    };
    assert_eq!(code, 0, "{}", context());
    let transcripts: Vec<&str> = report["transcripts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let replies: Vec<&str> = report["replies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        transcripts
            .iter()
            .any(|t| t.to_lowercase().contains("plus")),
        "{}",
        context()
    );
    assert!(
        replies.len() >= 2 && replies.iter().all(|r| r.contains("19")),
        "an answer before and after the restart: {}",
        context()
    );
    for kind in [
        "bot-ready",
        "user-started-speaking",
        "user-stopped-speaking",
        "user-transcription",
        "bot-started-speaking",
        "bot-stopped-speaking",
        "bot-llm-text",
        "bot-tts-text",
        "metrics",
        "server-message",
    ] {
        assert!(
            report["types"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == kind),
            "no '{kind}': {}",
            context()
        );
    }
    assert_eq!(report["restarted"], true);
    let pc_ids = report["pc_ids"].as_array().unwrap();
    assert!(pc_ids.len() == 2 && pc_ids[0] == pc_ids[1], "{}", context());
    // The agent's voice arrived over Opus: over half a second of it was loud.
    assert!(report["loud_ms"].as_u64().unwrap() >= 500, "{}", context());
    let metrics = &report["metrics"][0];
    let voice_to_voice = metrics["processing"][0]["value"].as_f64().unwrap();
    assert!(
        voice_to_voice > 0.0 && voice_to_voice < 10.0,
        "{}",
        context()
    );
    // One conversation: the restart did not make a second session.
    assert_eq!(
        served.output().matches("connected\n").count(),
        1,
        "{}",
        context()
    );
}

#[test]
fn a_second_client_is_refused_with_503_while_the_only_session_is_taken() {
    let Some(python) = python() else {
        skip_without(
            "aiortc in the test venv",
            "scripts/setup.sh --tests installs it",
        );
        return;
    };
    let dir = test_dir("webrtc-aiortc-full");
    let wav = question(&dir);
    let config = dir.join("backend.json");
    std::fs::write(
        &config,
        r#"{"provider": "local", "stt_provider": "whisper", "tts_provider": "espeak", "max_concurrent_sessions": 1, "persistence": {"path": ""}}"#,
    )
    .unwrap();
    let served = Served::start(&["--config", config.to_str().unwrap()]);
    let first = {
        let (python, url, wav) = (python.clone(), served.url.clone(), wav.clone());
        std::thread::spawn(move || client(&python, &url, &wav, &["--hold", "6"]))
    };
    // Wait for the first call to be connected.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !served.output().contains("connected\n") {
        assert!(std::time::Instant::now() < deadline, "{}", served.output());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (code, report, stderr) = client(&python, &served.url, &wav, &[]);
    assert_eq!(code, 3, "{report}\n{stderr}\n{}", served.output());
    assert_eq!(report["refused"], 503, "{report}");
    let error = report["body"]["error"].as_str().unwrap();
    assert!(
        error.contains("max_concurrent_sessions (1) reached"),
        "{report}"
    );
    assert_eq!(report["body"]["code"], "VB_ERR_SESSION_LIMIT");
    let (code, held, stderr) = first.join().unwrap();
    assert_eq!(code, 0, "{held}\n{stderr}\n{}", served.output());
    assert!(
        held["types"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "bot-ready"),
        "{held}"
    );
}

/// The host of `a_session_the_host_stops_tells_the_client_and_closes_its_channel`: keeps every
/// session it is handed.
struct Keeper(std::sync::Mutex<Vec<voicebackend::Session>>);

impl voicebackend::backend::IncomingHandler for Keeper {
    fn on_session(
        &self,
        session: voicebackend::Session,
        _: &Value,
    ) -> voicebackend::Result<voicebackend::backend::Accepted> {
        self.0.lock().unwrap().push(session);
        Ok(voicebackend::backend::Accepted {
            agent: Some(common::echo_agent()),
            on_event: None,
        })
    }
}

#[test]
fn a_session_the_host_stops_tells_the_client_and_closes_its_channel() {
    let Some(python) = python() else {
        skip_without(
            "aiortc in the test venv",
            "scripts/setup.sh --tests installs it",
        );
        return;
    };
    let dir = test_dir("webrtc-aiortc-left");
    let wav = question(&dir);
    let backend = voicebackend::Backend::from_json(
        r#"{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts",
            "persistence":{"path":""},"provider_config":{"webrtc":{}}}"#,
    )
    .unwrap();
    let keeper = std::sync::Arc::new(Keeper(std::sync::Mutex::new(Vec::new())));
    backend.set_incoming(keeper.clone()).unwrap();
    backend.start().unwrap();
    let url = format!("http://{}", backend.listening_address().unwrap());
    let client =
        std::thread::spawn(move || client(&python, &url, &wav, &["--hold", "20", "--until-left"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while keeper.0.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no call arrived");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Let the data channel open, then the host hangs up.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let stopped_at = std::time::Instant::now();
    keeper.0.lock().unwrap()[0].stop().unwrap();
    let (code, report, stderr) = client.join().unwrap();
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(report["left"], true, "peerLeft arrived: {report}\n{stderr}");
    assert_eq!(report["channel_closed"], true, "{report}\n{stderr}");
    assert!(
        stopped_at.elapsed() < std::time::Duration::from_secs(10),
        "the client heard of it at once, not after its hold"
    );
    backend.stop(std::time::Duration::from_secs(5)).unwrap();
}
