//! `voicebackend serve` with a real browser: headless Debian Chromium (driven by playwright-core
//! from `tests/livekit/browser/`'s node_modules) opens the served page, its fake microphone
//! plays a question spoken by eSpeak NG, the test clicks Talk and reads the captions from the
//! DOM: the transcript of the question and the agent's answer must appear, with a latency row.
//! Then the page restarts ICE on its connection (a browser's `restartIce()`, a new offer for the
//! same `pc_id`) and the data channel must answer again over it. The screenshot is kept at
//! `target/webrtc-browser.png`.
//!
//! Chromium and the server run in a network namespace that has only `lo`
//! (`tests/livekit/browser/run-in-netns.sh`): every packet is on 127.0.0.1.
//!
//! Skips loudly when Chromium (or the harness's node_modules) is absent and CI is not set;
//! fails under CI=true.
#![cfg(feature = "test-providers")]

mod common;

use std::path::Path;
use std::process::Command;

use common::serve::{skip_without, spoken_wav, test_dir};
use serde_json::Value;

#[test]
fn chromium_talks_with_the_served_page_and_shows_both_captions_and_the_latency() {
    let root = env!("CARGO_MANIFEST_DIR");
    if !Path::new("/usr/bin/chromium").exists() {
        skip_without(
            "/usr/bin/chromium",
            "tests/livekit/browser/setup.sh installs it",
        );
        return;
    }
    if !Path::new(root)
        .join("tests/livekit/browser/node_modules/playwright-core")
        .exists()
    {
        skip_without(
            "playwright-core",
            "tests/livekit/browser/setup.sh runs npm ci",
        );
        return;
    }
    let dir = test_dir("webrtc-browser");
    let question = dir.join("question.wav");
    spoken_wav(&question, "What is twelve plus seven?", 1500, 6000);
    let report = dir.join("browser.json");
    let screenshot = Path::new(root).join("target/webrtc-browser.png");
    let script = format!(
        r#"set -u
{serve} serve --port 0 >{dir}/serve.log 2>&1 &
for _ in $(seq 1 600); do grep -q '^serve: open' {dir}/serve.log && break; sleep 0.1; done
URL=$(sed -n 's/^serve: open \([^ ]*\).*/\1/p' {dir}/serve.log)
[ -n "$URL" ] || {{ echo "serve printed no URL"; exit 1; }}
node {root}/tests/webrtc/browser.mjs --url "$URL" --mic {question} --screenshot {screenshot} \
  --report {report} --timeout-ms 90000 --ice-restart 2>{dir}/browser.log
"#,
        serve = env!("CARGO_BIN_EXE_voicebackend"),
        dir = dir.display(),
        question = question.display(),
        screenshot = screenshot.display(),
        report = report.display(),
    );
    let output = Command::new(format!("{root}/tests/livekit/browser/run-in-netns.sh"))
        .args(["--", "bash", "-c", &script])
        .output()
        .expect("run the browser in a network namespace");
    let logs = || {
        format!(
            "{}\n{}\nserve: {}\nbrowser: {}\nreport: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("browser.log")).unwrap_or_default(),
            std::fs::read_to_string(&report).unwrap_or_default(),
        )
    };
    assert!(
        output.status.success(),
        "the browser run failed: {}",
        logs()
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let lines = report["lines"].as_array().unwrap();
    let said = |who: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["who"] == who && l["final"] == true)
            .map(|l| l["text"].as_str().unwrap().to_lowercase())
            .collect()
    };
    assert!(
        said("user").iter().any(|t| t.contains("plus")),
        "the question's transcript: {}",
        logs()
    );
    assert!(
        said("agent").iter().any(|t| t.contains("19")),
        "the agent's answer: {}",
        logs()
    );
    let latency = &report["latency"][0];
    let voice_to_voice: f64 = latency[1].as_str().unwrap().parse().unwrap();
    assert!(voice_to_voice > 0.0, "{}", logs());
    let loudest = report["levels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .fold(0.0, f64::max);
    assert!(loudest > 0.2, "the microphone meter moved: {}", logs());
    assert!(screenshot.exists());
    // The ICE restart (restartIce, a new offer for the same pc_id): new credentials on both
    // sides, connected again, and the data channel answers over it.
    let restart = &report["iceRestart"];
    assert_eq!(restart["samePcId"], true, "{}", logs());
    assert_ne!(restart["localBefore"], restart["localAfter"], "{}", logs());
    assert_ne!(
        restart["remoteBefore"],
        restart["remoteAfter"],
        "{}",
        logs()
    );
    assert_eq!(restart["iceState"], "connected", "{}", logs());
    assert_eq!(
        restart["transportUfrag"],
        restart["localAfter"],
        "{}",
        logs()
    );
    assert_eq!(restart["transportIceState"], "connected", "{}", logs());
    assert!(
        restart["readyAfter"].as_u64() > restart["readyBefore"].as_u64(),
        "bot-ready after the restart: {}",
        logs()
    );
}
