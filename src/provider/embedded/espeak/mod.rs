//! `espeak`: embedded, offline text to speech with eSpeak NG (the system's `libespeak-ng`).
//!
//! eSpeak NG keeps its state in globals and is not thread-safe, so the process has one engine
//! (the `engine` submodule; `ffi` holds the bindings): a dedicated synthesis thread
//! (`espeak-synth`) that initializes the library once, in synchronous mode with a synth
//! callback, and then runs jobs from a queue. A job is one sentence with its
//! voice settings, a sink for its audio and the reply's cancel flag. The callback forwards each
//! buffer of audio (~60 ms) to the sink as soon as eSpeak NG delivers it, and aborts synthesis
//! (returns 1) when the reply was cancelled or nobody listens any more.
//!
//! Each [`TtsProvider::synthesize`] call splits the streamed text into sentences with
//! [`SentenceSplitter`] and queues each completed sentence at once, keeping at most two
//! sentences in flight: one whose audio is being sent to the reply's audio channel (awaiting its
//! back-pressure) and one synthesized ahead, so playout never waits for the next sentence while
//! synthesis does not run ahead of playout by more than a sentence. The synthesis thread never
//! waits for a reply's playout (that would stall every other session): a sentence's audio is
//! buffered for its reply, so memory per reply is bounded by about two sentences of audio
//! (~90 KB per second of speech). Sentences end with eSpeak NG's sentence pause, except the
//! last one of a reply, so that the reply ends with its last word.
//!
//! Dropping the future (barge-in) sets the cancel flag: a sentence being synthesized stops at
//! its next buffer (the callback returns 1), queued ones are skipped. The same happens when the
//! receiver of the reply's audio is gone; the future then returns `Ok` at once.
//!
//! Synthesis is serialized across sessions: concurrent replies queue their sentences on the one
//! thread. eSpeak NG synthesizes a sentence in about a millisecond, so the wait is short, but it
//! grows with the number of sessions speaking at the same moment.
//!
//! Settings (`tts_config`, strict: unknown keys are an error):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `voice` | `"en-us"` | a language (`en-us`, `en-gb`, `de`), a voice file (`gmw/en-US`) or name (`English (America)`), optionally with `+variant` (`en-us+f3`) |
//! | `rate_wpm` | 175 | speaking rate in words per minute, 80–450 |
//! | `pitch` | 50 | base pitch, 0–100 |

mod engine;
/// Not part of the C ABI: cbindgen would otherwise copy these bindings into the header.
/// cbindgen:ignore
mod ffi;

use std::collections::VecDeque;
use std::ffi::{CString, c_int};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::{check_range, parse_section};
use crate::error::{Error, Result};
use crate::provider::registry::TtsFactory;
use crate::provider::tts::SentenceSplitter;
use crate::provider::{BoxFuture, ProviderSetup, TtsProvider, TtsRequest};
use engine::{Engine, JobEvent, VoiceSettings};
pub use engine::{EspeakStats, stats};

/// The registry name.
const NAME: &str = "espeak";
/// Sentences of one reply queued or being sent at once (see the module docs). Not `pub`:
/// cbindgen would export it into the C header.
const LOOKAHEAD_SENTENCES: usize = 2;
/// The keys `tts_config` may have.
const KEYS: [&str; 3] = ["voice", "rate_wpm", "pitch"];

/// Settings of the `espeak` provider, parsed from `tts_config`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EspeakConfig {
    /// Voice: a language (`en-us`), voice file (`gmw/en-US`) or voice name, optionally followed
    /// by `+variant` (`en-us+f3`). Default `en-us`.
    pub voice: String,
    /// Speaking rate in words per minute, 80–450. Default 175.
    pub rate_wpm: u32,
    /// Base pitch, 0–100. Default 50.
    pub pitch: u32,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        EspeakConfig {
            voice: "en-us".to_owned(),
            rate_wpm: 175,
            pitch: 50,
        }
    }
}

impl EspeakConfig {
    /// Parses `tts_config` strictly: `null` means all defaults, unknown keys and values out of
    /// range are `VB_ERR_INVALID_CONFIG` naming the field. The voice is checked against the
    /// installed voices only by [`EspeakTts::new`].
    pub fn from_json(config: &Value) -> Result<Self> {
        let parsed: EspeakConfig = parse_section("tts_config", config, &KEYS)?;
        check_range("tts_config.rate_wpm", parsed.rate_wpm.into(), 80, 450)?;
        check_range("tts_config.pitch", parsed.pitch.into(), 0, 100)?;
        Ok(parsed)
    }
}

/// The factory the registry keeps under `espeak`.
pub fn factory() -> TtsFactory {
    Arc::new(|setup: &ProviderSetup| {
        Ok(Arc::new(EspeakTts::new(setup.config)?) as Arc<dyn TtsProvider>)
    })
}

/// The eSpeak NG text-to-speech provider. Cheap: every instance shares the one engine.
pub struct EspeakTts {
    engine: &'static Engine,
    config: EspeakConfig,
    voice: Arc<VoiceSettings>,
}

impl EspeakTts {
    /// Validates `tts_config` and starts the engine on first use. An unknown voice is
    /// `VB_ERR_INVALID_CONFIG` naming it; a library that cannot initialize (no
    /// `espeak-ng-data`) is `VB_ERR_PROVIDER`.
    pub fn new(config: &Value) -> Result<Self> {
        let config = EspeakConfig::from_json(config)?;
        let engine = Engine::get()?;
        let file = engine.resolve_voice(&config.voice).ok_or_else(|| {
            Error::invalid_config(format!(
                "tts_config.voice: unknown eSpeak NG voice '{}' (use a language such as \
                 \"en-us\", \"en-gb\", \"de\" or a voice file such as \"gmw/en-US\", \
                 optionally with \"+variant\" such as \"+f3\")",
                config.voice
            ))
        })?;
        let voice = Arc::new(VoiceSettings {
            file: CString::new(file).map_err(|_| {
                Error::invalid_config("tts_config.voice: must not contain a NUL character")
            })?,
            rate_wpm: c_int::try_from(config.rate_wpm).unwrap_or(c_int::MAX),
            pitch: c_int::try_from(config.pitch).unwrap_or(c_int::MAX),
        });
        Ok(EspeakTts {
            engine,
            config,
            voice,
        })
    }

    /// The validated settings.
    pub fn config(&self) -> &EspeakConfig {
        &self.config
    }

    /// The eSpeak NG voice file (plus `+variant`) that `voice` resolved to, e.g. `gmw/en-US`.
    pub fn voice_file(&self) -> &str {
        self.voice.file.to_str().unwrap_or_default()
    }
}

impl TtsProvider for EspeakTts {
    fn name(&self) -> &str {
        NAME
    }

    fn sample_rate(&self) -> u32 {
        self.engine.sample_rate
    }

    fn synthesize(&self, request: TtsRequest) -> BoxFuture<'static, Result<()>> {
        Box::pin(speak_reply(self.engine, self.voice.clone(), request))
    }
}

/// Sets the flag when dropped: the synthesize future ended, normally or by cancellation.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// One reply: sentences go to the engine as they complete, their audio to `request.audio` in
/// order.
async fn speak_reply(
    engine: &'static Engine,
    voice: Arc<VoiceSettings>,
    mut request: TtsRequest,
) -> Result<()> {
    let mut in_flight: VecDeque<mpsc::UnboundedReceiver<JobEvent>> = VecDeque::new();
    // Declared after `in_flight` so that it is dropped first: a cancelled reply's queued
    // sentences see the flag, and are skipped, as soon as possible.
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let mut splitter = SentenceSplitter::default();
    // Sentences not yet queued, each with whether it ends with a sentence pause.
    let mut waiting: VecDeque<(String, bool)> = VecDeque::new();
    let mut text_open = true;
    loop {
        while in_flight.len() < LOOKAHEAD_SENTENCES {
            let Some((sentence, end_pause)) = waiting.pop_front() else {
                break;
            };
            in_flight.push_back(engine.submit(
                &sentence,
                end_pause,
                &voice,
                &request.audio,
                &cancel.0,
            )?);
        }
        if !text_open && in_flight.is_empty() {
            return Ok(());
        }
        tokio::select! {
            biased;
            chunk = request.text.recv(), if text_open => match chunk {
                // More text may follow a completed sentence: end it with eSpeak NG's sentence
                // pause. The rest, after the text has ended, ends the reply: no pause.
                Some(chunk) => waiting.extend(splitter.push(&chunk).into_iter().map(|s| (s, true))),
                None => {
                    text_open = false;
                    match splitter.finish() {
                        Some(rest) => waiting.push_back((rest, false)),
                        None => {
                            if let Some((_, end_pause)) = waiting.back_mut() {
                                *end_pause = false;
                            }
                        }
                    }
                }
            },
            event = next_event(&mut in_flight) => match event {
                Some(JobEvent::Audio(pcm)) => {
                    if request.audio.send(pcm).await.is_err() {
                        return Ok(()); // nobody plays this reply any more
                    }
                }
                Some(JobEvent::Done(result)) => {
                    in_flight.pop_front();
                    result?;
                }
                None => {
                    return Err(Error::internal("espeak: the synthesis thread stopped"));
                }
            },
            () = request.audio.closed() => return Ok(()), // nobody plays this reply any more
        }
    }
}

/// The next event of the oldest sentence in flight; pending forever when there is none.
async fn next_event(
    in_flight: &mut VecDeque<mpsc::UnboundedReceiver<JobEvent>>,
) -> Option<JobEvent> {
    match in_flight.front_mut() {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_defaults_and_errors_name_the_field() {
        assert_eq!(
            EspeakConfig::from_json(&json!({})).unwrap(),
            EspeakConfig::default()
        );
        assert_eq!(
            EspeakConfig::from_json(&Value::Null).unwrap(),
            EspeakConfig::default()
        );
        let cases = [
            (json!({"foo": 1}), "tts_config.foo: unknown key"),
            (
                json!({"rate_wpm": 79}),
                "tts_config.rate_wpm: 79 is below the minimum 80",
            ),
            (
                json!({"rate_wpm": 451}),
                "tts_config.rate_wpm: 451 is above the maximum 450",
            ),
            (
                json!({"pitch": 101}),
                "tts_config.pitch: 101 is above the maximum 100",
            ),
            (json!({"pitch": -1}), "tts_config.pitch: invalid value"),
            (json!({"voice": 3}), "tts_config.voice: invalid type"),
            (json!([1]), "tts_config: must be a JSON object"),
        ];
        crate::config::assert_config_errors(&cases, EspeakConfig::from_json);
    }
}
