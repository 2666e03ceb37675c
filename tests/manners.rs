//! Interruptions with manners (`interruptions.decide_by` `"words"`), on real audio: eSpeak NG
//! speech heard by Whisper tiny.en while the agent's reply (a tone) plays. Speech over the reply
//! pauses it; a backchannel or a noise resumes it where it paused (nothing lost, no
//! `VB_EVENT_INTERRUPTED`); words that take the turn interrupt it and are answered.
#![cfg(feature = "test-providers")]

mod common;

use std::sync::Arc;

use common::*;
use voicebackend::{Backend, Reply, SessionConfig, VbEventKind as K};

/// The reply: 280 characters, 5.6 s of tone from `test-tone-tts`.
const REPLY: &str = "a long answer a long answer a long answer a long answer a long answer \
    a long answer a long answer a long answer a long answer a long answer a long answer a long \
    answer a long answer a long answer a long answer a long answer a long answer a long answer \
    a long answer a long answer";

fn backend() -> Backend {
    let backend = Backend::from_json(
        r#"{"provider":"local","stt_provider":"whisper","tts_provider":"test-tone-tts",
            "persistence":{"path":""},"interruptions":{"decide_by":"words"}}"#,
    )
    .expect("backend");
    backend.start().expect("start");
    backend
}

/// A session whose agent answers every turn with [`REPLY`], playing it after a first turn.
fn session_playing_a_reply(backend: &Backend) -> voicebackend::Session {
    let agent = Arc::new(|_: &str, reply: &mut Reply| -> voicebackend::Result<()> {
        reply.write(REPLY)?;
        reply.end()
    });
    let session = backend
        .create_session(SessionConfig::default(), Some(agent), None)
        .expect("session");
    session.start().expect("start");
    say_as_user(&session, "Tell me a story.");
    // Reading no audio: it plays in real time from here, as the user's audio is pushed.
    events_until(&session, |e| e.kind == K::VB_EVENT_TURN_METRICS);
    session
}

/// Samples louder than a whisper: the tone of the reply.
fn loud(audio: &[i16]) -> usize {
    audio.iter().filter(|s| s.unsigned_abs() > 300).count()
}

/// The longest run of quiet 10 ms blocks in `audio` after its first loud one, in ms.
fn longest_gap_ms(audio: &[i16]) -> usize {
    let blocks: Vec<bool> = audio.chunks(160).map(|b| loud(b) > 0).collect();
    let start = blocks.iter().position(|&b| b).unwrap_or(blocks.len());
    let end = blocks.iter().rposition(|&b| b).unwrap_or(0);
    let (mut best, mut run) = (0, 0);
    for &b in blocks.get(start..=end).unwrap_or(&[]) {
        run = if b { 0 } else { run + 1 };
        best = best.max(run);
    }
    best * 10
}

/// A host on one audio clock: every 20 ms it pushes 20 ms of the user's `audio` (then
/// silence) and plays 20 ms of the agent (silence when there is none), polling events, until an
/// event matches `until` (at most 30 s). Returns the events and the agent's timeline.
fn over_the_reply(
    session: &voicebackend::Session,
    audio: &[i16],
    mut until: impl FnMut(&voicebackend::Event) -> bool,
) -> (Vec<voicebackend::Event>, Vec<i16>) {
    let start = std::time::Instant::now();
    let (mut events, mut timeline) = (Vec::new(), Vec::new());
    let mut frame = [0i16; 320];
    for i in 0..1500 {
        let due = start + std::time::Duration::from_millis(20 * i);
        if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(wait);
        }
        let at = i as usize * 320;
        let user = audio.get(at..at + 320).unwrap_or(&[0; 320]);
        session.process_audio(user).expect("process_audio");
        let n = session.read_audio(&mut frame).expect("read_audio");
        frame[n..].fill(0);
        timeline.extend_from_slice(&frame);
        while let Ok(Some(event)) = session.poll_event() {
            let done = until(&event);
            events.push(event);
            if done {
                return (events, timeline);
            }
        }
    }
    panic!("no matching event within 30 s: {:?}", kinds(&events));
}

#[test]
fn a_backchannel_pauses_the_reply_which_resumes_where_it_paused() {
    let backend = backend();
    let session = session_playing_a_reply(&backend);
    let mut user = silence(500, 16000);
    user.extend(espeak_speech("Okay.", "en-us"));
    user.extend(silence(1500, 16000));
    let (events, played) = over_the_reply(&session, &user, back_to_listening);
    let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL);
    assert!(
        !kinds(&events).contains(&K::VB_EVENT_INTERRUPTED),
        "the backchannel {heard:?} interrupted the agent"
    );
    assert!(
        texts(&events, K::VB_EVENT_AGENT_RESPONSE).is_empty(),
        "the backchannel was answered"
    );
    // Paused while the user spoke and the words were judged, then the whole reply: 5.6 s of
    // tone (minus what played before the push: at least what was left), none of it lost.
    let gap = longest_gap_ms(&played);
    assert!(gap >= 300, "no pause: longest gap {gap} ms");
    let tone_s = loud(&played) as f64 / 16000.0;
    println!("heard {heard:?}; paused {gap} ms; {tone_s:.2} s of the reply after the first turn");
    assert!(
        tone_s >= 5.0,
        "only {tone_s:.2} s of the 5.6 s reply was heard"
    );
}

#[test]
fn words_that_take_the_turn_interrupt_the_reply_and_are_answered() {
    let backend = backend();
    let session = session_playing_a_reply(&backend);
    let mut user = silence(500, 16000);
    user.extend(espeak_speech("Wait, stop.", "en-us"));
    user.extend(silence(1200, 16000));
    let (events, played) = over_the_reply(&session, &user, |e| e.kind == K::VB_EVENT_TURN_METRICS);
    let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL);
    assert!(
        kinds(&events).contains(&K::VB_EVENT_INTERRUPTED),
        "{heard:?} did not interrupt"
    );
    assert!(
        heard.iter().any(|t| t.to_lowercase().contains("stop")),
        "{heard:?}"
    );
    // The turn is answered (the same reply again, from its start).
    assert_eq!(texts(&events, K::VB_EVENT_AGENT_RESPONSE).len(), 1);
    assert!(loud(&played) < 16000 * 5, "the reply played on");
}

#[test]
fn a_noise_burst_resumes_the_reply() {
    let backend = backend();
    let session = session_playing_a_reply(&backend);
    // A knock: 300 ms of loud broadband noise (a fixed pseudo-random sequence).
    let mut user = silence(500, 16000);
    let mut x = 0x2545_f491_u32;
    user.extend((0..4800).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        ((x >> 16) as i16) / 3
    }));
    user.extend(silence(2000, 16000));
    let (events, played) = over_the_reply(&session, &user, back_to_listening);
    let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL);
    assert!(
        !kinds(&events).contains(&K::VB_EVENT_INTERRUPTED),
        "the noise ({heard:?}) interrupted the agent"
    );
    let tone_s = loud(&played) as f64 / 16000.0;
    println!("noise heard as {heard:?}; {tone_s:.2} s of the reply");
    assert!(
        tone_s >= 5.0,
        "only {tone_s:.2} s of the 5.6 s reply was heard"
    );
}
