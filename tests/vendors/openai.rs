//! OpenAI's audio API in the fault matrix: the `openai` STT and TTS providers, each on its own,
//! against the local OpenAI-protocol HTTP server (`tests/servers/openai_http/`), which is backed
//! by the embedded Whisper and eSpeak NG. An STT turn is the user saying a sentence (eSpeak NG);
//! a TTS turn is the agent saying one (`say`).

use std::cell::RefCell;

use super::{Fault, Outcome, VendorServer};
use crate::common::*;
use crate::servers::openai_engines::{Fault as ServerFault, hear};
use crate::servers::openai_http::{OpenAiHttpServer, SPEECH_PIECE};
use voicebackend::{Backend, Session, VbEventKind as K};

/// The key the server accepts.
pub const KEY: &str = "sk-local-test-0123456789abcdef-kq";
/// A key it refuses.
pub const WRONG_KEY: &str = "sk-wrong-key-0123456789-wxyz";

/// What the user says in an STT turn.
const USER_SAYS: &str = "Please call me back.";
/// What the agent says in a TTS turn: long enough to be cut in the middle of its audio.
const AGENT_SAYS: &str = "This sentence is long enough to be cut in the middle of its audio.";

pub struct OpenAi {
    server: OpenAiHttpServer,
    fault: Fault,
    /// Text to speech (else speech to text).
    tts: bool,
    /// A TTS turn cut mid-stream: the same sentence played whole before, for reference.
    whole: RefCell<Vec<i16>>,
}

impl OpenAi {
    pub fn start(fault: Fault, tts: bool) -> OpenAi {
        let server = OpenAiHttpServer::start(KEY);
        match fault {
            Fault::RefusedKey | Fault::Rejected => {}
            Fault::Malformed => server.fail_next(ServerFault::Malformed, 1),
            Fault::Stall => server.fail_all(ServerFault::Stall),
            // Speech is cut once the reference is played (see `begin_turn`).
            Fault::Drop if tts => {}
            Fault::Drop => server.fail_next(ServerFault::DropMidStream, 1),
        }
        OpenAi {
            server,
            fault,
            tts,
            whole: RefCell::new(Vec::new()),
        }
    }

    fn path(&self) -> &'static str {
        if self.tts {
            "/v1/audio/speech"
        } else {
            "/v1/audio/transcriptions"
        }
    }

    /// Requests for the reference playback, which are no attempts of the turn under test.
    fn reference_requests(&self) -> usize {
        usize::from(self.tts && self.fault == Fault::Drop)
    }
}

impl VendorServer for OpenAi {
    fn base_url(&self) -> String {
        self.server.base_url()
    }

    fn session(&self, backend: &Backend) -> Session {
        session_at(backend, 16000)
    }

    fn begin_turn(&self, session: &Session, _n: usize) {
        if !self.tts {
            let mut audio = silence(300, 16000);
            audio.extend(espeak_speech(USER_SAYS, "en-us"));
            push_all(session, &audio, 16000);
            return;
        }
        if self.fault == Fault::Drop {
            session.say(AGENT_SAYS).unwrap();
            let (_, whole) = play_until(session, reply_finished());
            *self.whole.borrow_mut() = whole;
            self.server.fail_next(ServerFault::DropMidStream, 1);
        }
        session.say(AGENT_SAYS).unwrap();
    }

    fn end_turn(&self, session: &Session) {
        if !self.tts {
            push_all(session, &silence(900, 16000), 16000);
        }
    }

    fn answered(&self, session: &Session, _n: usize) -> Outcome {
        if self.tts {
            let (events, played) = play_until(session, reply_finished());
            assert!(rms(&played) > 300.0, "the reply is speech, not silence");
            return Outcome { events, played };
        }
        let events = events_until(session, |e| e.kind == K::VB_EVENT_TRANSCRIPT_FINAL);
        let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL).join(" ");
        assert!(heard.to_lowercase().contains("call"), "{heard}");
        Outcome {
            events,
            played: Vec::new(),
        }
    }

    fn heal(&self) {
        self.server.clear_faults();
    }

    fn attempts(&self) -> Vec<Option<u16>> {
        let requests = self.server.requests_to(self.path());
        let answered = requests
            .iter()
            .skip(self.reference_requests())
            .map(|r| (r.status >= 400).then_some(r.status));
        // A stalled request was taken and never answered. (Each row's provider asks one path.)
        answered
            .chain(std::iter::repeat_n(None, self.server.stalled()))
            .collect()
    }

    fn evidence(&self, fault: Fault, seen: &Outcome) {
        let requests = self.server.requests_to(self.path());
        match fault {
            Fault::RefusedKey => {
                assert!(requests.iter().all(|r| !r.authorized), "{requests:?}");
            }
            Fault::Drop if !self.tts => {
                assert_eq!(requests[0].fault, Some(ServerFault::DropMidStream));
                assert_eq!(requests[1].fault, None);
            }
            Fault::Drop => {
                let speech = requests;
                assert_eq!(speech.len(), 3, "the cut sentence was asked for again");
                assert_eq!(speech[1].fault, Some(ServerFault::DropMidStream));
                assert!(
                    speech[1].audio_bytes > 4 * SPEECH_PIECE,
                    "cut after two pieces or more"
                );
                // eSpeak NG's output length varies by a few samples between syntheses: the
                // resumed reply is as long as the synthesis it finished (the retry), to within
                // resampling. Audio lost or repeated at the cut would be thousands of samples.
                let whole = self.whole.borrow();
                let resumed = &seen.played;
                let expected = whole.len() as f64 * speech[2].audio_bytes as f64
                    / speech[0].audio_bytes as f64;
                assert!(
                    (resumed.len() as f64 - expected).abs() < 50.0,
                    "{} samples played, {expected:.0} expected",
                    resumed.len()
                );
                assert_eq!(hear(resumed), hear(&whole), "the same words, once");
            }
            Fault::Rejected | Fault::Malformed | Fault::Stall => {}
        }
    }
}
