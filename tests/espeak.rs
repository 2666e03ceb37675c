//! The embedded eSpeak NG TTS provider (`espeak`): streaming, audio, config errors, cancellation.
//! Needs the system's `libespeak-ng` and its data (Debian: `libespeak-ng-dev`, `espeak-ng`).
//!
//! Timings are printed; run `cargo test --release --test espeak -- --nocapture` to see them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use voicebackend::provider::embedded::espeak;
use voicebackend::provider::{ProviderRegistry, ProviderSetup, TtsProvider, TtsRequest};
use voicebackend::{Result, VbStatus};

/// Upper bound against hangs, never a latency assertion.
const PATIENCE: Duration = Duration::from_secs(20);

/// Held by the tests that cancel synthesis, so that the engine's process-wide abort counters
/// change only because of the test that holds it (the other tests never cancel).
static CANCELLING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn espeak_tts(config: Value) -> Arc<dyn TtsProvider> {
    ProviderRegistry::global()
        .create_tts("espeak", &ProviderSetup::new(&config))
        .expect("the espeak provider")
}

/// A reply being synthesized on its own task.
struct Reply {
    text: Option<mpsc::UnboundedSender<String>>,
    audio: mpsc::Receiver<Vec<i16>>,
    task: JoinHandle<Result<()>>,
}

impl Reply {
    fn start(tts: &Arc<dyn TtsProvider>, audio_capacity: usize) -> Reply {
        let (text_tx, text_rx) = mpsc::unbounded_channel();
        let (audio_tx, audio_rx) = mpsc::channel(audio_capacity);
        let synthesis = tts.synthesize(TtsRequest {
            text: text_rx,
            audio: audio_tx,
        });
        Reply {
            text: Some(text_tx),
            audio: audio_rx,
            task: tokio::spawn(synthesis),
        }
    }

    fn send(&self, chunk: &str) {
        self.text
            .as_ref()
            .expect("text still open")
            .send(chunk.to_owned())
            .expect("synthesis still reads text");
    }

    fn close_text(&mut self) {
        self.text = None;
    }

    async fn next_audio(&mut self) -> Option<Vec<i16>> {
        timeout(PATIENCE, self.audio.recv())
            .await
            .expect("audio within the patience limit")
    }

    /// Reads audio until the provider closes the channel; then the task must have succeeded.
    async fn finish(mut self, mut audio: Vec<i16>) -> Vec<i16> {
        self.close_text();
        while let Some(chunk) = self.next_audio().await {
            audio.extend_from_slice(&chunk);
        }
        timeout(PATIENCE, self.task)
            .await
            .expect("synthesis ends")
            .expect("synthesis task did not panic")
            .expect("synthesis succeeded");
        audio
    }
}

fn rms(pcm: &[i16]) -> f64 {
    let sum: f64 = pcm.iter().map(|&s| f64::from(s).powi(2)).sum();
    (sum / pcm.len().max(1) as f64).sqrt()
}

fn seconds(samples: usize, rate: u32) -> f64 {
    samples as f64 / f64::from(rate)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_text_is_spoken_sentence_by_sentence_before_the_reply_ends() {
    let tts = espeak_tts(json!({}));
    assert_eq!(tts.name(), "espeak");
    assert_eq!(tts.sample_rate(), 22050, "eSpeak NG's rate");
    let rate = tts.sample_rate();

    let mut reply = Reply::start(&tts, 16);
    for chunk in ["Hello the", "re, how are", " you doing to", "day? I am"] {
        reply.send(chunk);
    }
    // The first sentence is complete and the text channel still open: audio must come now.
    let first = reply
        .next_audio()
        .await
        .expect("audio for the first sentence before the reply has ended");
    assert!(!first.is_empty());
    let mut audio = first;
    // Read the whole first sentence while the text is still open.
    let first_sentence = Instant::now();
    while seconds(audio.len(), rate) < 1.0 && first_sentence.elapsed() < PATIENCE {
        match timeout(Duration::from_millis(500), reply.audio.recv()).await {
            Ok(Some(chunk)) => audio.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let first_len = seconds(audio.len(), rate);
    assert!(
        first_len > 0.5,
        "the first sentence alone is {first_len:.2} s of audio before the text ended"
    );
    reply.send(" fine, thank you");
    reply.send(" very much.");
    let audio = reply.finish(audio).await;

    let total = seconds(audio.len(), rate);
    assert!(
        (2.0..20.0).contains(&total),
        "two sentences gave {total:.2} s of audio"
    );
    let level = rms(&audio);
    assert!(level > 500.0, "speech is audible: RMS {level:.0}");
    // The reply's last sentence ends without eSpeak NG's ~300 ms sentence pause.
    let last_sound = audio
        .iter()
        .rposition(|s| s.unsigned_abs() > 300)
        .unwrap_or(0);
    let trailing = seconds(audio.len() - last_sound, rate);
    assert!(trailing < 0.1, "{trailing:.3} s of silence after the reply");
    println!(
        "two streamed sentences: {total:.2} s of audio ({first_len:.2} s before the text ended), RMS {level:.0}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_rate_and_pitch_change_the_speech() {
    let text = "The quick brown fox jumps over the lazy dog.";
    let mut lengths = Vec::new();
    for config in [
        json!({}),
        json!({"rate_wpm": 350}),
        json!({"voice": "en-gb", "pitch": 80}),
        json!({"voice": "gmw/en-US+f3", "rate_wpm": 120, "pitch": 20}),
        json!({"voice": "English (America)"}),
        json!({"voice": "de"}),
    ] {
        let tts = espeak_tts(config.clone());
        let reply = Reply::start(&tts, 16);
        reply.send(text);
        let audio = reply.finish(Vec::new()).await;
        let len = seconds(audio.len(), tts.sample_rate());
        assert!(len > 1.0, "{config}: {len:.2} s");
        assert!(rms(&audio) > 500.0, "{config}: RMS {:.0}", rms(&audio));
        lengths.push(len);
    }
    assert!(
        lengths[1] < lengths[0] * 0.75,
        "350 wpm ({:.2} s) is faster than 175 wpm ({:.2} s)",
        lengths[1],
        lengths[0]
    );
    assert!(
        lengths[3] > lengths[0] * 1.2,
        "120 wpm ({:.2} s) is slower than 175 wpm ({:.2} s)",
        lengths[3],
        lengths[0]
    );
}

#[test]
fn config_errors_name_the_field() {
    let registry = ProviderRegistry::global();
    let cases = [
        (json!({"foo": 1}), "tts_config.foo: unknown key"),
        (json!({"voice": "zz-notavoice"}), "tts_config.voice"),
        (json!({"voice": "en-us+nosuchvariant"}), "tts_config.voice"),
        (json!({"voice": ""}), "tts_config.voice"),
        (
            json!({"rate_wpm": 500}),
            "tts_config.rate_wpm: 500 is above the maximum 450",
        ),
        (
            json!({"rate_wpm": 10}),
            "tts_config.rate_wpm: 10 is below the minimum 80",
        ),
        (
            json!({"pitch": 101}),
            "tts_config.pitch: 101 is above the maximum 100",
        ),
        (
            json!({"rate_wpm": "fast"}),
            "tts_config.rate_wpm: invalid type",
        ),
        (json!("en-us"), "tts_config: must be a JSON object"),
    ];
    for (config, expected) in cases {
        let e = match registry.create_tts("espeak", &ProviderSetup::new(&config)) {
            Ok(_) => panic!("{config} was accepted"),
            Err(e) => e,
        };
        assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG, "{config}: {e}");
        assert!(
            e.message().starts_with(expected),
            "{config}: '{}' should start with '{expected}'",
            e.message()
        );
    }
    let e = registry
        .create_tts(
            "espeak",
            &ProviderSetup::new(&json!({"voice": "zz-notavoice"})),
        )
        .err()
        .expect("unknown voice");
    assert!(e.message().contains("'zz-notavoice'"), "{}", e.message());

    for voice in [
        "en-us",
        "EN-US",
        "en",
        "en-gb",
        "de",
        "gmw/en-US",
        "en-us+f3",
        "en-us+klatt",
    ] {
        let tts = espeak::EspeakTts::new(&json!({ "voice": voice }))
            .unwrap_or_else(|e| panic!("voice {voice}: {e}"));
        println!("voice {voice} -> {}", tts.voice_file());
    }
    let tts = espeak::EspeakTts::new(&json!({"voice": "en-us+f3"})).unwrap();
    assert_eq!(tts.voice_file(), "gmw/en-US+f3");
    assert_eq!(tts.config().rate_wpm, 175);
    assert_eq!(tts.config().pitch, 50);
}

/// A sentence long enough that eSpeak NG needs a noticeable time to synthesize all of it.
fn very_long_sentence() -> String {
    let words = "and then the quick brown fox jumped over the lazy dog once more ";
    words.repeat(150) + "until the end."
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_future_stops_synthesis_promptly() {
    let _cancelling = CANCELLING.lock().await;
    let tts = espeak_tts(json!({}));
    let before = espeak::stats();

    // A small audio channel that nobody drains: synthesis waits on back-pressure.
    let (text_tx, text_rx) = mpsc::unbounded_channel();
    let (audio_tx, mut audio_rx) = mpsc::channel(1);
    let mut synthesis = tts.synthesize(TtsRequest {
        text: text_rx,
        audio: audio_tx,
    });
    text_tx.send(very_long_sentence() + " ").unwrap();
    text_tx
        .send("A second sentence that is queued. ".into())
        .unwrap();
    // Drive the future until the first audio arrives, then drop it mid-way (barge-in).
    let first = tokio::select! {
        chunk = audio_rx.recv() => chunk,
        result = &mut synthesis => panic!("synthesis ended early: {result:?}"),
        _ = tokio::time::sleep(PATIENCE) => panic!("no audio"),
    };
    assert!(first.is_some_and(|c| !c.is_empty()));
    let _ = timeout(Duration::from_millis(20), &mut synthesis).await;
    let dropped_at = Instant::now();
    drop(synthesis);

    // The engine must be free again at once: a new reply is spoken promptly.
    let next = Reply::start(&tts, 16);
    next.send("Are you still there?");
    let audio = next.finish(Vec::new()).await;
    let free_after = dropped_at.elapsed();
    assert!(seconds(audio.len(), tts.sample_rate()) > 0.5);
    assert!(
        free_after < Duration::from_secs(2),
        "the next reply took {free_after:?}"
    );

    // The long sentence was stopped part-way, not synthesized to its end.
    let after = espeak::stats();
    assert!(
        after.aborted > before.aborted,
        "the long sentence was aborted: {before:?} -> {after:?}"
    );
    println!("next reply spoken {free_after:?} after the drop; stats {before:?} -> {after:?}");
    // After a drop the audio channel ends; nothing keeps it open.
    while timeout(PATIENCE, audio_rx.recv())
        .await
        .expect("the audio channel ends")
        .is_some()
    {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_audio_receiver_ends_synthesis() {
    let _cancelling = CANCELLING.lock().await;
    let tts = espeak_tts(json!({}));
    let before = espeak::stats();
    let mut reply = Reply::start(&tts, 1);
    reply.send(&(very_long_sentence() + " Then more."));
    let first = reply.next_audio().await;
    assert!(first.is_some());
    let Reply { text, audio, task } = reply;
    drop(audio);
    let result = timeout(PATIENCE, task)
        .await
        .expect("synthesis returns once its audio receiver is gone")
        .expect("no panic");
    assert!(result.is_ok(), "{result:?}");
    drop(text);
    let deadline = Instant::now() + PATIENCE;
    // The long sentence was being synthesized: it is stopped part-way.
    while espeak::stats().aborted == before.aborted {
        assert!(Instant::now() < deadline, "the sentence was never aborted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replies_are_all_spoken() {
    let tts = espeak_tts(json!({}));
    let other = espeak_tts(json!({"voice": "en-gb", "rate_wpm": 220}));
    let mut replies = Vec::new();
    for i in 0..6 {
        let provider = if i % 2 == 0 { &tts } else { &other };
        let reply = Reply::start(provider, 4);
        reply.send(&format!("This is reply number {i}. It has two sentences."));
        replies.push(tokio::spawn(reply.finish(Vec::new())));
    }
    for reply in replies {
        let audio = reply.await.unwrap();
        assert!(seconds(audio.len(), 22050) > 1.5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_to_first_audio_and_synthesis_speed() {
    let tts = espeak_tts(json!({}));
    let rate = tts.sample_rate();
    let mut ttfa = Vec::new();
    let mut cold = Duration::ZERO;
    for i in 0..21 {
        let mut reply = Reply::start(&tts, 16);
        tokio::time::sleep(Duration::from_millis(2)).await; // the task is waiting for text
        let sent = Instant::now();
        reply.send("Hello there. ");
        let first = reply.next_audio().await.expect("audio");
        if i == 0 {
            cold = sent.elapsed(); // includes loading the voice, unless another test did
        } else {
            ttfa.push(sent.elapsed());
        }
        reply.finish(first).await;
    }
    let med = median(ttfa.clone());
    let max = ttfa.iter().max().copied().unwrap_or_default();
    println!(
        "time to first audio for \"Hello there. \": median {med:?}, max {max:?} over 20 runs \
         (first run {cold:?})"
    );

    // The same when the sentence is only known to be complete when the text ends.
    let mut at_end = Vec::new();
    for _ in 0..20 {
        let mut reply = Reply::start(&tts, 16);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let sent = Instant::now();
        reply.send("Hello there.");
        reply.close_text();
        let first = reply.next_audio().await.expect("audio");
        at_end.push(sent.elapsed());
        reply.finish(first).await;
    }
    println!(
        "time to first audio for \"Hello there.\" then end of text: median {:?}",
        median(at_end)
    );

    assert!(
        med < Duration::from_millis(200),
        "median time to first audio {med:?}"
    );

    // Synthesis speed: a long reply, drained as fast as it comes.
    let text = "This sentence is one of many in a long reply, spoken as fast as it can be. ";
    let reply = Reply::start(&tts, 16);
    let started = Instant::now();
    for _ in 0..40 {
        reply.send(text);
    }
    let audio = reply.finish(Vec::new()).await;
    let wall = started.elapsed();
    let spoken = seconds(audio.len(), rate);
    println!(
        "synthesis speed: {spoken:.1} s of audio in {wall:?} ({:.0}x real time)",
        spoken / wall.as_secs_f64()
    );
    assert!(spoken > 60.0);
}

/// Through a whole session: `say` speaks with eSpeak NG, converted to the host's 48 kHz.
#[cfg(feature = "test-providers")]
#[test]
fn a_session_speaks_with_espeak_at_the_host_rate() {
    use voicebackend::{Agent, Backend, Reply, SessionConfig, VbEventKind, VbSessionState};

    let backend = Backend::from_json(
        r#"{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"espeak",
            "tts_config":{"voice":"en-us","rate_wpm":190}}"#,
    )
    .expect("backend config");
    backend.start().expect("start");
    // Never called: no user speaks in this test.
    let agent: Arc<dyn Agent> = Arc::new(|_: &str, reply: &mut Reply| reply.write("Yes."));
    let config = SessionConfig {
        input_sample_rate: 48000,
        output_sample_rate: 48000,
        ..SessionConfig::default()
    };
    let session = backend
        .create_session(config, Some(agent), None)
        .expect("create_session");
    session.start().expect("start");
    session
        .say("Hello there. This is eSpeak speaking through a session.")
        .expect("say");

    let deadline = Instant::now() + PATIENCE;
    let (mut audio, mut buf, mut spoke) = (Vec::new(), vec![0i16; 4096], false);
    'outer: loop {
        while let Some(event) = session.poll_event().expect("poll_event") {
            assert_ne!(event.kind, VbEventKind::VB_EVENT_ERROR, "{event:?}");
            if event.kind == VbEventKind::VB_EVENT_STATE_CHANGED {
                spoke |= event.state == VbSessionState::VB_STATE_SPEAKING;
                if spoke && event.state == VbSessionState::VB_STATE_LISTENING {
                    break 'outer;
                }
            }
        }
        let n = session.read_audio(&mut buf).expect("read_audio");
        audio.extend_from_slice(&buf[..n]);
        assert!(Instant::now() < deadline, "the reply never finished");
        std::thread::sleep(Duration::from_millis(2));
    }
    let n = session.read_audio(&mut buf).expect("read_audio");
    audio.extend_from_slice(&buf[..n]);
    let len = seconds(audio.len(), 48000);
    assert!((2.0..15.0).contains(&len), "{len:.2} s at 48 kHz");
    assert!(rms(&audio) > 500.0, "RMS {:.0}", rms(&audio));
    println!(
        "session reply: {len:.2} s at 48 kHz, RMS {:.0}",
        rms(&audio)
    );
}
