//! OpenAI Realtime server events through a session's conversation (responses, audio and
//! transcript deltas, cancels, errors, lost connections), interleaved with what the session does.
//!
//! Input: lines. The first says `server` for the server's turn detection (anything else: the
//! engine's). Then one step per line, by its first character: `S` a server text frame (the rest
//! of the line), `B` a binary frame, `C` the server closes, `A` user audio (the rest of the line's
//! bytes as 16-bit samples), `E` the end of the user's turn, `X` barge-in, `R` reconnection.
//!
//! Checks: no panic; no error reported shows the API key; each barge-in is answered with an end
//! of response. At most 100 steps and 8 ends of turn are read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicebackend::fuzzing::openai_realtime::{KEY, Step, conversation};
use voicebackend::provider::{S2sEvent, S2sInput};

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let server_vad = lines.next() == Some(b"server");
    let mut steps = Vec::new();
    let mut cancels = 0;
    // Each end of turn with the server's turn detection appends 0.8 s of padding (38 kB of
    // base64 JSON): a few of them per input keep the runs fast.
    let mut ends = 0;
    for line in lines.take(100) {
        let Some((&op, rest)) = line.split_first() else {
            continue;
        };
        steps.push(match op {
            b'S' => match std::str::from_utf8(rest) {
                Ok(text) => Step::Server(text.to_owned()),
                Err(_) => continue,
            },
            b'B' => Step::ServerBinary,
            b'C' => Step::Closed,
            b'A' => Step::Input(S2sInput::Audio(
                rest.chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect(),
            )),
            b'E' if ends < 8 => {
                ends += 1;
                Step::Input(S2sInput::EndOfTurn)
            }
            b'X' => {
                cancels += 1;
                Step::Input(S2sInput::CancelResponse)
            }
            b'R' => Step::Reconnect,
            _ => continue,
        });
    }
    let events = conversation(steps, server_vad);
    let mut done = 0;
    for event in &events {
        match event {
            S2sEvent::Error(e) => {
                assert!(!e.message().contains(KEY), "the key in: {}", e.message())
            }
            S2sEvent::ResponseDone => done += 1,
            _ => {}
        }
    }
    assert!(
        done >= cancels,
        "{cancels} barge-ins, {done} ends of response"
    );
});
