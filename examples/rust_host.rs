//! A minimal Rust host: one session over a mono 16-bit WAV file at real-time pace, events printed.
//!
//! `cargo run --release --example rust_host -- speech.wav ['<backend config JSON>']`

use std::sync::Arc;
use std::time::{Duration, Instant};

use voicebackend::{Backend, Reply, SessionConfig, VbEventKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: rust_host FILE.wav [CONFIG_JSON]")?;
    let config = args.next().unwrap_or_else(|| {
        r#"{"provider":"local","stt_provider":"whisper","tts_provider":"espeak"}"#.to_owned()
    });
    let mut wav = hound::WavReader::open(&path)?;
    let rate = wav.spec().sample_rate;
    let audio: Vec<i16> = wav.samples::<i16>().collect::<Result<_, _>>()?;

    let backend = Backend::from_json(&config)?;
    backend.start()?;
    let agent = Arc::new(
        |transcript: &str, reply: &mut Reply| -> voicebackend::Result<()> {
            reply.write(&format!("You said: {transcript}"))?;
            reply.end()
        },
    );
    let session_config = SessionConfig {
        input_sample_rate: rate,
        output_sample_rate: rate,
        ..SessionConfig::default()
    };
    let session = backend.create_session(session_config, Some(agent), None)?;
    session.start()?;

    let frame = (rate / 50) as usize;
    let mut speaker = vec![0i16; frame];
    let silence = vec![0i16; 150 * frame]; // 3 s for the last reply
    let start = Instant::now();
    for (i, piece) in audio.chunks(frame).chain(silence.chunks(frame)).enumerate() {
        std::thread::sleep(
            (start + Duration::from_millis(20 * i as u64))
                .saturating_duration_since(Instant::now()),
        );
        session.process_audio(piece)?;
        session.read_audio(&mut speaker)?; // a host would play this
        while let Some(event) = session.poll_event()? {
            match event.kind {
                VbEventKind::VB_EVENT_TRANSCRIPT_FINAL => {
                    println!("user:  {}", event.text.unwrap_or_default())
                }
                VbEventKind::VB_EVENT_AGENT_RESPONSE => {
                    println!("agent: {}", event.text.unwrap_or_default())
                }
                VbEventKind::VB_EVENT_TURN_METRICS => {
                    println!(
                        "voice to voice: {} ms",
                        event.metrics.first_output_audio_us / 1000
                    )
                }
                _ => {}
            }
        }
    }
    Ok(())
}
