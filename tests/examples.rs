//! The Rust example host of the README runs a real conversation (on the test providers).
#![cfg(feature = "test-providers")]

mod common;

use std::process::Command;

#[test]
fn the_rust_host_example_holds_a_conversation() {
    // A whole `cargo test` run builds the examples next to the test executables, with the same
    // features (`cargo test --test examples` alone does not).
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/rust_host");
    assert!(
        example.is_file(),
        "{} was not built: run the whole suite (`cargo test --features test-providers`) or build it \
         first with `cargo build --features test-providers --example rust_host`",
        example.display()
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rust-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("speech.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 24000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&wav, spec).unwrap();
    for s in common::utterance(180.0, 1000, 24000) {
        writer.write_sample(s).unwrap();
    }
    writer.finalize().unwrap();
    let output = Command::new(&example)
        .arg(&wav)
        .arg(r#"{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts"}"#)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("user:  pitch 180 hz"), "{stdout}");
    assert!(stdout.contains("agent: You said: pitch 180 hz"), "{stdout}");
    assert!(stdout.contains("voice to voice: "), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_readme_shows_the_minimal_hosts_as_tested() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for example in [
        "examples/minimal_host.c",
        "bindings/cpp/examples/minimal_host.cpp",
        "bindings/go/examples/minimal/main.go",
    ] {
        let source = std::fs::read_to_string(root.join(example)).unwrap();
        assert!(
            source.lines().count() < 40,
            "{example} is meant to stay under 40 lines"
        );
        assert!(
            readme.contains(&source),
            "README.md does not show {example} as it is; copy it in again"
        );
    }
}
