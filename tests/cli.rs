//! The `voicebackend` command line as an operator runs it (on the test providers).
#![cfg(feature = "test-providers")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use common::{PATIENCE, silence, utterance};

fn write_wav(path: &std::path::Path, samples: &[i16], rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        writer.write_sample(s).unwrap();
    }
    writer.finalize().unwrap();
}

#[test]
fn sigterm_drains_the_conversation_the_reply_in_flight_finishes_and_no_new_turn_starts() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("in.wav"), dir.join("out.wav"));
    // One turn, a long pause, a second turn that must never be heard after the signal.
    let mut audio = silence(500, 16000);
    audio.extend(utterance(150.0, 1200, 16000));
    audio.extend(silence(8000, 16000));
    audio.extend(utterance(220.0, 1200, 16000));
    write_wav(&input, &audio, 16000);

    let mut child = Command::new(env!("CARGO_BIN_EXE_voicebackend"))
        .args([
            "converse",
            "--realtime",
            "--stt",
            "test-pitch-stt",
            "--tts",
            "test-tone-tts",
            // The rules and their echo: a reply whose length the test knows.
            "--agent",
            "rules",
        ])
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    // SIGTERM as soon as the first turn has been transcribed: its reply is then in flight.
    loop {
        let line = lines.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("no transcript from the CLI; it printed {seen:#?}")
        });
        let heard = line.contains("user:");
        seen.push(line);
        if heard {
            break;
        }
    }
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    seen.extend(lines.iter());
    let status = child.wait().unwrap();
    let stdout = seen.join("\n");
    assert!(status.success(), "exit {status:?}\n{stdout}");
    assert!(stdout.contains("stop requested: draining"), "{stdout}");
    assert_eq!(stdout.matches("user:").count(), 1, "{stdout}");
    let reply = stdout
        .lines()
        .find_map(|l| l.split_once("agent: ").map(|(_, text)| text.to_owned()))
        .unwrap_or_else(|| panic!("the reply in flight was not finished:\n{stdout}"));

    // The whole reply was played: the test TTS speaks 20 ms of tone per character.
    let played = hound::WavReader::open(&output)
        .unwrap()
        .into_samples::<i16>()
        .filter(|s| *s.as_ref().unwrap() != 0)
        .count();
    let expected = reply.chars().count() * 20 * 16;
    assert!(
        played.abs_diff(expected) < 16 * 100,
        "{played} samples of reply audio, expected about {expected}\n{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
