//! `converse` and `transcribe`: one session over a WAV file, as a host with a microphone and a
//! loudspeaker on one audio clock would run it.
//!
//! Every 20 ms frame of the file is pushed and one 20 ms frame of agent audio is read back and
//! placed at the same position of the output timeline. With `--realtime` frames go at real-time
//! pace; otherwise as fast as the engine takes them, stopping at each turn end until the reply
//! starts (processing time is then not on the timeline, the measured latencies are).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use voicebackend::{
    Agent, Backend, Event, Reply, Result, Session, SessionConfig, VbEventKind as K,
    VbSessionState as S, VbTurnMetrics,
};

/// How one run behaves.
pub struct RunOptions {
    /// Backend configuration JSON.
    pub backend_json: String,
    /// Pace input at real time.
    pub realtime: bool,
    /// Print replies and metrics (converse) or only transcripts (transcribe).
    pub converse: bool,
    /// The language model that answers what the rules do not (`converse`); `None`: an echo.
    pub model: Option<Arc<dyn Agent>>,
}

/// What a run produced.
pub struct RunResult {
    /// Agent audio on the conversation timeline, at the input rate.
    pub timeline: Vec<i16>,
    /// Metrics of every answered turn.
    pub metrics: Vec<VbTurnMetrics>,
    /// Final transcripts with their position in seconds.
    pub transcripts: Vec<(f64, String)>,
}

/// Longest wait for a reply to start after a turn end, and for the last reply after the file.
const REPLY_PATIENCE: Duration = Duration::from_secs(60);
/// How long the backend's graceful stop lets a reply still in flight finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// An agent that never answers (for `transcribe`).
struct Silent;
impl Agent for Silent {
    fn on_transcript(&self, _: &str, _: &mut Reply) -> Result<()> {
        Ok(())
    }
}

/// Runs `audio` (mono, at `rate`, one of the host rates) through one session.
pub fn run(
    audio: &[i16],
    rate: u32,
    options: &RunOptions,
) -> std::result::Result<RunResult, String> {
    let backend = Backend::from_json(&options.backend_json).map_err(|e| e.to_string())?;
    backend.start().map_err(|e| e.to_string())?;
    let agent: Arc<dyn Agent> = if options.converse {
        Arc::new(crate::agent::RuleAgent::new(options.model.clone()))
    } else {
        Arc::new(Silent)
    };
    let config = SessionConfig {
        input_sample_rate: rate,
        output_sample_rate: rate,
        ..SessionConfig::default()
    };
    let session = backend
        .create_session(config, Some(agent), None)
        .map_err(|e| e.to_string())?;
    session.start().map_err(|e| e.to_string())?;

    // Whole frames only: the engine processes complete frames, so pad the tail with silence.
    let frame = (rate / 50) as usize;
    let mut audio = audio.to_vec();
    audio.resize(audio.len().div_ceil(frame) * frame, 0);
    let mut run = Runner::new(&session, rate, options);
    let started = Instant::now();
    let total_frames = audio.len() / frame;
    for (i, piece) in audio.chunks(frame).enumerate() {
        if crate::signals::stop_requested() {
            run.clear_progress();
            println!(
                "[{:7.2} s] stop requested: draining (no more input; the reply in flight finishes)",
                run.position()
            );
            break;
        }
        if options.realtime {
            sleep_until(started + Duration::from_millis(20 * i as u64));
        }
        run.step(piece)?;
        run.progress(i + 1, total_frames);
    }
    // Let the last reply finish: keep the clock running on silence.
    let silence = vec![0i16; frame];
    let deadline = Instant::now() + REPLY_PATIENCE;
    let mut i = run.timeline.len() / frame;
    while !run.idle() && Instant::now() < deadline {
        if options.realtime {
            sleep_until(started + Duration::from_millis(20 * i as u64));
        }
        run.step(&silence)?;
        i += 1;
    }
    backend.stop(DRAIN_TIMEOUT).map_err(|e| e.to_string())?;
    Ok(RunResult {
        timeline: run.timeline,
        metrics: run.metrics,
        transcripts: run.transcripts,
    })
}

fn sleep_until(when: Instant) {
    if let Some(wait) = when.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

struct Runner<'a> {
    session: &'a Session,
    rate: u32,
    realtime: bool,
    converse: bool,
    timeline: Vec<i16>,
    metrics: Vec<VbTurnMetrics>,
    transcripts: Vec<(f64, String)>,
    stops_seen: u64,
    last_progress: Instant,
    progress_shown: bool,
    buffer: Vec<i16>,
}

impl<'a> Runner<'a> {
    fn new(session: &'a Session, rate: u32, options: &RunOptions) -> Self {
        Runner {
            session,
            rate,
            realtime: options.realtime,
            converse: options.converse,
            timeline: Vec::new(),
            metrics: Vec::new(),
            transcripts: Vec::new(),
            stops_seen: 0,
            last_progress: Instant::now(),
            progress_shown: false,
            buffer: vec![0; (rate / 50) as usize],
        }
    }

    /// Seconds of conversation so far (the audio clock).
    fn position(&self) -> f64 {
        self.timeline.len() as f64 / f64::from(self.rate)
    }

    /// Pushes one frame, reads one frame of agent audio onto the timeline, handles events.
    fn step(&mut self, piece: &[i16]) -> std::result::Result<(), String> {
        if !self.realtime {
            self.wait_for(
                |s| s.session.writable_samples() >= piece.len(),
                "the engine to take audio",
            )?;
        }
        let outcome = self
            .session
            .process_audio(piece)
            .map_err(|e| e.to_string())?;
        if outcome.dropped > 0 {
            eprintln!(
                "warning: {} samples dropped (input ring full)",
                outcome.dropped
            );
        }
        if !self.realtime {
            // Stop at each turn end, as a live user would, until the reply starts.
            self.wait_for(
                |s| s.session.all_audio_heard(),
                "the engine to hear the audio",
            )?;
            if self.session.turns_ended() > self.stops_seen {
                self.wait_for(
                    |s| s.stops_seen >= s.session.turns_ended(),
                    "the turn end event",
                )?;
                self.wait_for(|s| s.session.state() != S::VB_STATE_PROCESSING, "the reply")?;
            }
        }
        let want = piece.len();
        let mut n = self
            .session
            .read_audio(&mut self.buffer[..want])
            .map_err(|e| e.to_string())?;
        if !self.realtime {
            // The audio clock outruns the pipeline: while a reply plays, wait for its audio (or
            // its end) instead of letting the clock run past it.
            let deadline = Instant::now() + REPLY_PATIENCE;
            while n < want
                && self.session.state() == S::VB_STATE_SPEAKING
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_micros(200));
                n += self
                    .session
                    .read_audio(&mut self.buffer[n..want])
                    .map_err(|e| e.to_string())?;
                self.drain_events();
            }
        }
        self.timeline.extend_from_slice(&self.buffer[..n]);
        self.timeline.resize(self.timeline.len() + (want - n), 0);
        self.drain_events();
        Ok(())
    }

    /// Polls events until `done` holds (bounded by `REPLY_PATIENCE`).
    fn wait_for(
        &mut self,
        done: impl Fn(&Self) -> bool,
        what: &str,
    ) -> std::result::Result<(), String> {
        let deadline = Instant::now() + REPLY_PATIENCE;
        while !done(self) {
            if Instant::now() > deadline {
                return Err(format!(
                    "gave up waiting for {what} (state {:?}, {} turns ended, {} seen, {} samples writable)",
                    self.session.state(),
                    self.session.turns_ended(),
                    self.stops_seen,
                    self.session.writable_samples()
                ));
            }
            self.drain_events();
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    /// Whether nothing is pending: every turn answered and the session listening.
    fn idle(&mut self) -> bool {
        self.drain_events();
        self.stops_seen >= self.session.turns_ended()
            && self.session.state() == S::VB_STATE_LISTENING
    }

    fn drain_events(&mut self) {
        while let Ok(Some(event)) = self.session.poll_event() {
            self.on_event(&event);
        }
    }

    fn on_event(&mut self, event: &Event) {
        if !matches!(
            event.kind,
            K::VB_EVENT_STATE_CHANGED | K::VB_EVENT_SPEECH_STARTED | K::VB_EVENT_SPEECH_STOPPED
        ) {
            self.clear_progress();
        }
        let at = self.position();
        let text = event.text.clone().unwrap_or_default();
        match event.kind {
            K::VB_EVENT_SPEECH_STOPPED => self.stops_seen += 1,
            K::VB_EVENT_TRANSCRIPT_FINAL => {
                println!("[{at:7.2} s] user:  {text}");
                self.transcripts.push((at, text));
            }
            K::VB_EVENT_AGENT_RESPONSE if self.converse => println!("[{at:7.2} s] agent: {text}"),
            K::VB_EVENT_TURN_METRICS if self.converse => {
                let m = event.metrics;
                println!(
                    "            stt {} · agent {} · tts {} · voice to voice {}",
                    ms(m.stt_final_us),
                    ms(m.agent_first_text_us),
                    ms(m.tts_first_audio_us),
                    ms(m.first_output_audio_us)
                );
                self.metrics.push(m);
            }
            K::VB_EVENT_INTERRUPTED if self.converse => {
                println!("[{at:7.2} s] (the user interrupted the agent)")
            }
            K::VB_EVENT_ERROR => eprintln!("[{at:7.2} s] error: {:?}: {text}", event.error),
            K::VB_EVENT_AUDIO_DROPPED => eprintln!(
                "[{at:7.2} s] {} samples dropped: {text}",
                event.dropped_samples
            ),
            _ => {}
        }
    }

    /// A progress line on stderr (a terminal only) for inputs longer than 20 s, at most once a
    /// second; event lines clear it first.
    fn progress(&mut self, done: usize, total: usize) {
        let show = total > 1000 && std::io::stderr().is_terminal();
        if show && (self.last_progress.elapsed() > Duration::from_secs(1) || done == total) {
            self.last_progress = Instant::now();
            eprint!(
                "\r  {:3.0}% of {:.1} s of audio",
                100.0 * done as f64 / total as f64,
                total as f64 / 50.0
            );
            self.progress_shown = done < total;
            if done == total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
    }

    /// Clears the progress line before an event line is printed.
    fn clear_progress(&mut self) {
        if std::mem::take(&mut self.progress_shown) {
            eprint!("\r\x1b[K");
        }
    }
}

fn ms(us: u64) -> String {
    if us == 0 {
        "-".to_owned()
    } else {
        format!("{:.0} ms", us as f64 / 1000.0)
    }
}
