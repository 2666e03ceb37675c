//! The process-wide eSpeak NG engine: one synthesis thread that owns the library and runs
//! sentence jobs from a queue, streaming each job's audio out of the synth callback.
//!
//! eSpeak NG keeps its state in globals and is not thread-safe: every call into it happens on
//! the `espeak-synth` thread started here. The library runs in synchronous mode, so
//! `espeak_Synth` calls the callback on that same thread and returns when the sentence is done
//! or the callback aborted it; the job being synthesized is handed to the callback through a
//! thread-local.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int, c_short};
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

use super::ffi;
use crate::error::{Error, Result};

/// Length of the audio buffers eSpeak NG hands to the synth callback, in ms.
const BUFFER_MS: c_int = 60;

/// Counters of the process-wide eSpeak NG engine, for monitoring and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EspeakStats {
    /// Sentences synthesized to the end.
    pub completed: u64,
    /// Sentences stopped part-way because their reply was cancelled or its audio receiver gone.
    pub aborted: u64,
    /// Queued sentences dropped without synthesis because their reply was already cancelled.
    pub skipped: u64,
}

static COMPLETED: AtomicU64 = AtomicU64::new(0);
static ABORTED: AtomicU64 = AtomicU64::new(0);
static SKIPPED: AtomicU64 = AtomicU64::new(0);

/// The engine's counters since the process started.
pub fn stats() -> EspeakStats {
    EspeakStats {
        completed: COMPLETED.load(Ordering::Relaxed),
        aborted: ABORTED.load(Ordering::Relaxed),
        skipped: SKIPPED.load(Ordering::Relaxed),
    }
}

/// A voice as the synthesis thread applies it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct VoiceSettings {
    /// What `espeak_SetVoiceByName` gets: a voice file, optionally `+variant`.
    pub(super) file: CString,
    /// Words per minute, 80–450.
    pub(super) rate_wpm: c_int,
    /// Base pitch, 0–100.
    pub(super) pitch: c_int,
}

/// What a job reports to its reply, in order: audio buffers, then exactly one `Done`.
pub(super) enum JobEvent {
    /// One buffer of mono PCM at the engine's rate.
    Audio(Vec<i16>),
    /// The sentence ended: synthesized, stopped because nobody wanted it, or failed.
    Done(Result<()>),
}

/// One sentence to synthesize.
struct Job {
    text: CString,
    /// End with a sentence pause (what eSpeak NG puts between sentences of one text).
    end_pause: bool,
    voice: Arc<VoiceSettings>,
    sink: JobSink,
}

/// Where a job's audio goes and how it learns that nobody wants it any more.
struct JobSink {
    events: mpsc::UnboundedSender<JobEvent>,
    /// The reply's audio channel, held only to see whether its receiver is gone. Dropped before
    /// `Done` is sent so that the reply's receiver sees its end as soon as the reply returns.
    reply_audio: mpsc::Sender<Vec<i16>>,
    cancel: Arc<AtomicBool>,
}

impl JobSink {
    fn abandoned(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
            || self.events.is_closed()
            || self.reply_audio.is_closed()
    }

    fn finish(self, result: Result<()>) {
        let JobSink {
            events,
            reply_audio,
            ..
        } = self;
        drop(reply_audio);
        let _ = events.send(JobEvent::Done(result));
    }
}

/// An installed voice or variant, copied out of `espeak_ListVoices`.
#[derive(Debug, Clone)]
struct VoiceEntry {
    name: String,
    identifier: String,
    /// (priority, language); a lower priority number is a better match.
    languages: Vec<(u8, String)>,
}

impl VoiceEntry {
    /// The file name without its directory: `en-US` for `gmw/en-US`.
    fn file_name(&self) -> &str {
        self.identifier
            .rsplit('/')
            .next()
            .unwrap_or(&self.identifier)
    }
}

/// What the synthesis thread reports once eSpeak NG is initialized.
struct EngineInfo {
    sample_rate: u32,
    voices: Vec<VoiceEntry>,
    variants: Vec<VoiceEntry>,
}

/// The process-wide engine: the job queue of the synthesis thread and what it found at start.
pub(super) struct Engine {
    jobs: crossbeam_channel::Sender<Job>,
    /// eSpeak NG's output rate, as `espeak_Initialize` returned it (22050 Hz).
    pub(super) sample_rate: u32,
    voices: Vec<VoiceEntry>,
    variants: Vec<VoiceEntry>,
}

impl Engine {
    /// The engine, started on first use. A failed start is remembered and reported every time.
    pub(super) fn get() -> Result<&'static Engine> {
        static ENGINE: OnceLock<Result<Engine>> = OnceLock::new();
        ENGINE
            .get_or_init(Engine::start)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn start() -> Result<Engine> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("espeak-synth".to_owned())
            .spawn(move || match initialize() {
                Ok(info) => {
                    let _ = ready_tx.send(Ok(info));
                    run_jobs(&queue);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| {
                Error::internal(format!("espeak: cannot start the synthesis thread: {e}"))
            })?;
        let info = ready_rx.recv().map_err(|_| {
            Error::internal("espeak: the synthesis thread stopped while initializing")
        })??;
        Ok(Engine {
            jobs,
            sample_rate: info.sample_rate,
            voices: info.voices,
            variants: info.variants,
        })
    }

    /// Resolves a configured voice to the voice file (plus `+variant`) eSpeak NG loads, or
    /// `None` when no installed voice matches. Tried in order: voice name, voice file (with or
    /// without directory), language (the voice listing it with the best priority).
    pub(super) fn resolve_voice(&self, voice: &str) -> Option<String> {
        let (base, variant) = match voice.split_once('+') {
            Some((base, variant)) => (base.trim(), Some(variant.trim())),
            None => (voice.trim(), None),
        };
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let by_name = self.voices.iter().find(|v| {
            same(&v.name, base) || same(&v.identifier, base) || same(v.file_name(), base)
        });
        let by_language = || {
            self.voices
                .iter()
                .filter_map(|v| {
                    let (priority, _) = v.languages.iter().find(|(_, l)| same(l, base))?;
                    Some((*priority, v))
                })
                .min_by_key(|(priority, _)| *priority)
                .map(|(_, v)| v)
        };
        let chosen = by_name.or_else(by_language)?;
        let mut file = chosen.identifier.clone();
        if let Some(variant) = variant {
            let found = self
                .variants
                .iter()
                .find(|v| same(&v.name, variant) || same(v.file_name(), variant))?;
            file.push('+');
            file.push_str(found.file_name());
        }
        Some(file)
    }

    /// Queues one sentence; its audio and end arrive on the returned receiver.
    pub(super) fn submit(
        &self,
        sentence: &str,
        end_pause: bool,
        voice: &Arc<VoiceSettings>,
        reply_audio: &mpsc::Sender<Vec<i16>>,
        cancel: &Arc<AtomicBool>,
    ) -> Result<mpsc::UnboundedReceiver<JobEvent>> {
        let text = CString::new(sentence.replace('\0', " ")).expect("NULs were replaced");
        let (events, receiver) = mpsc::unbounded_channel();
        let job = Job {
            text,
            end_pause,
            voice: voice.clone(),
            sink: JobSink {
                events,
                reply_audio: reply_audio.clone(),
                cancel: cancel.clone(),
            },
        };
        self.jobs
            .send(job)
            .map_err(|_| Error::internal("espeak: the synthesis thread stopped"))?;
        Ok(receiver)
    }
}

// ---- The synthesis thread: the only code that calls eSpeak NG. ----

/// Initializes eSpeak NG and reads the installed voices. Runs once, on the synthesis thread.
fn initialize() -> Result<EngineInfo> {
    // SAFETY: called once per process, on the synthesis thread, before any other eSpeak NG call;
    // a NULL path selects the default data directory (or $ESPEAK_DATA_PATH). DONT_EXIT makes a
    // missing data directory an error return instead of exit().
    let rate = unsafe {
        ffi::espeak_Initialize(
            ffi::AUDIO_OUTPUT_SYNCHRONOUS,
            BUFFER_MS,
            ptr::null(),
            ffi::INITIALIZE_DONT_EXIT,
        )
    };
    let sample_rate = u32::try_from(rate).ok().filter(|&r| r > 0).ok_or_else(|| {
        Error::provider(
            super::NAME,
            "eSpeak NG could not initialize (is espeak-ng-data installed? Debian: espeak-ng-data)",
        )
    })?;
    // SAFETY: `on_audio` has the callback's signature and never unwinds into C.
    unsafe { ffi::espeak_SetSynthCallback(Some(on_audio)) };
    // SAFETY: eSpeak NG is initialized; NULL lists every voice but the variants.
    let voices = unsafe { list_voices(ptr::null_mut()) };
    let mut selector = ffi::EspeakVoice {
        name: ptr::null(),
        languages: c"variant".as_ptr(),
        identifier: ptr::null(),
        gender: 0,
        age: 0,
        variant: 0,
        xx1: 0,
        score: 0,
        spare: ptr::null_mut(),
    };
    // SAFETY: as above; the selector is a valid `espeak_VOICE` whose strings outlive the call.
    let variants = unsafe { list_voices(&mut selector) };
    Ok(EngineInfo {
        sample_rate,
        voices,
        variants,
    })
}

/// Copies the result of `espeak_ListVoices(selector)`.
///
/// # Safety
/// eSpeak NG is initialized, this runs on the synthesis thread, and `selector` is NULL or a
/// valid `espeak_VOICE`.
unsafe fn list_voices(selector: *mut ffi::EspeakVoice) -> Vec<VoiceEntry> {
    let text = |p: *const c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: eSpeak NG's voice strings are NUL-terminated and live until the next
            // espeak_ListVoices call, after this copy.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    let mut entries = Vec::new();
    // SAFETY: guaranteed by the caller.
    let list = unsafe { ffi::espeak_ListVoices(selector) };
    if list.is_null() {
        return entries;
    }
    for i in 0.. {
        // SAFETY: the array is NULL-terminated and we stop at the NULL.
        let voice = unsafe { *list.add(i) };
        if voice.is_null() {
            break;
        }
        // SAFETY: a non-NULL entry points to a valid `espeak_VOICE`.
        let voice = unsafe { &*voice };
        let mut languages = Vec::new();
        let mut p = voice.languages.cast::<u8>();
        // SAFETY: `languages` is a sequence of (priority byte, NUL-terminated name) ended by a
        // zero priority byte, so every read stays inside it.
        unsafe {
            while !p.is_null() && *p != 0 {
                let priority = *p;
                let name = CStr::from_ptr(p.add(1).cast());
                languages.push((priority, name.to_string_lossy().into_owned()));
                p = p.add(1 + name.to_bytes_with_nul().len());
            }
        }
        entries.push(VoiceEntry {
            name: text(voice.name),
            identifier: text(voice.identifier),
            languages,
        });
    }
    entries
}

thread_local! {
    /// The sink of the job being synthesized on this (the synthesis) thread, read by `on_audio`.
    static ACTIVE: RefCell<Option<ActiveJob>> = const { RefCell::new(None) };
}

/// The job being synthesized, as the synth callback sees it.
struct ActiveJob {
    sink: JobSink,
    aborted: bool,
}

/// Runs jobs until the queue closes (never, in practice: the engine lives as long as the process).
fn run_jobs(queue: &crossbeam_channel::Receiver<Job>) {
    let mut selected: Option<Arc<VoiceSettings>> = None;
    for job in queue {
        if job.sink.abandoned() {
            SKIPPED.fetch_add(1, Ordering::Relaxed);
            job.sink.finish(Ok(()));
            continue;
        }
        if let Err(e) = apply_voice(&job.voice, &mut selected) {
            job.sink.finish(Err(e));
            continue;
        }
        ACTIVE.set(Some(ActiveJob {
            sink: job.sink,
            aborted: false,
        }));
        let text = job.text.as_bytes_with_nul();
        let flags = ffi::CHARS_UTF8 | if job.end_pause { ffi::ENDPAUSE } else { 0 };
        // SAFETY: synthesis thread; `text` is NUL-terminated UTF-8 and outlives the call, which
        // in synchronous mode returns only when synthesis has ended; NULL identifier and user
        // data are allowed. The callback reads the job from ACTIVE, set above and not borrowed.
        let status = unsafe {
            ffi::espeak_Synth(
                text.as_ptr().cast(),
                text.len(),
                0,
                ffi::POS_CHARACTER,
                0,
                flags,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        let Some(active) = ACTIVE.take() else {
            continue; // unreachable: only this thread sets and takes ACTIVE
        };
        let result = if active.aborted {
            ABORTED.fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else if status != ffi::EE_OK {
            Err(Error::provider(
                super::NAME,
                format!("eSpeak NG synthesis failed (status {status})"),
            ))
        } else {
            COMPLETED.fetch_add(1, Ordering::Relaxed);
            Ok(())
        };
        active.sink.finish(result);
    }
}

/// Selects `voice` unless it is the one selected last, then sets its rate and pitch.
fn apply_voice(
    voice: &Arc<VoiceSettings>,
    selected: &mut Option<Arc<VoiceSettings>>,
) -> Result<()> {
    if selected.as_deref() == Some(&**voice) {
        return Ok(());
    }
    // SAFETY: synthesis thread; the name is NUL-terminated and outlives the call.
    let status = unsafe { ffi::espeak_SetVoiceByName(voice.file.as_ptr()) };
    if status != ffi::EE_OK {
        *selected = None;
        return Err(Error::provider(
            super::NAME,
            format!(
                "eSpeak NG cannot load voice '{}' (status {status})",
                voice.file.to_string_lossy()
            ),
        ));
    }
    // SAFETY: synthesis thread; plain integer parameters, ranges checked by EspeakConfig.
    let (rate, pitch) = unsafe {
        (
            ffi::espeak_SetParameter(ffi::PARAM_RATE, voice.rate_wpm, 0),
            ffi::espeak_SetParameter(ffi::PARAM_PITCH, voice.pitch, 0),
        )
    };
    if rate != ffi::EE_OK || pitch != ffi::EE_OK {
        *selected = None;
        return Err(Error::provider(
            super::NAME,
            format!(
                "eSpeak NG refused rate {} or pitch {}",
                voice.rate_wpm, voice.pitch
            ),
        ));
    }
    *selected = Some(voice.clone());
    Ok(())
}

/// eSpeak NG's synth callback: forwards one buffer of the active job's audio. Returns 1 (abort)
/// when the job's reply was cancelled or nobody receives its audio any more.
extern "C" fn on_audio(
    wav: *mut c_short,
    numsamples: c_int,
    _events: *mut ffi::EspeakEvent,
) -> c_int {
    const CONTINUE: c_int = 0;
    const ABORT: c_int = 1;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        ACTIVE.with_borrow_mut(|active| {
            let Some(job) = active else {
                return ABORT; // not synthesizing a job of ours
            };
            if job.aborted || job.sink.abandoned() {
                job.aborted = true;
                return ABORT;
            }
            let Ok(len) = usize::try_from(numsamples) else {
                return CONTINUE;
            };
            if wav.is_null() || len == 0 {
                return CONTINUE; // NULL marks the end; zero samples may happen mid-way
            }
            // SAFETY: eSpeak NG passes `numsamples` valid samples at `wav` for this call.
            let pcm = unsafe { std::slice::from_raw_parts(wav, len) }.to_vec();
            if job.sink.events.send(JobEvent::Audio(pcm)).is_err() {
                job.aborted = true;
                return ABORT;
            }
            CONTINUE
        })
    }));
    outcome.unwrap_or(ABORT)
}
