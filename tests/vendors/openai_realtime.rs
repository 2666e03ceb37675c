//! OpenAI's Realtime API in the fault matrix: the `openai-realtime` speech-to-speech provider
//! (`pipeline_type: "s2s"`) against the local OpenAI-protocol Realtime server
//! (`tests/servers/openai_realtime/`), which transcribes the committed turn with Whisper and
//! answers "You said: …" spoken by eSpeak NG. A turn is the user saying a sentence (eSpeak NG).

use super::{Fault, Outcome, VendorServer};
use crate::common::*;
use crate::servers::openai_engines::Fault as ServerFault;
use crate::servers::openai_realtime::OpenAiRealtimeServer;
use voicebackend::{Backend, Session, SessionConfig, VbEventKind as K};

/// The key the server accepts.
pub const KEY: &str = "sk-local-realtime-0123456789-kq";
/// A key it refuses.
pub const WRONG_KEY: &str = "sk-wrong-realtime-0123-wxyz";

/// What the user says in turn `n` (from 1), and a word its answer repeats.
const USER_SAYS: [(&str, &str); 2] = [
    ("What time is it?", "time"),
    ("Can you hear me now?", "hear"),
];

pub struct Realtime {
    server: OpenAiRealtimeServer,
}

impl Realtime {
    pub fn start(fault: Fault) -> Realtime {
        let server = OpenAiRealtimeServer::start(KEY);
        match fault {
            Fault::RefusedKey | Fault::Rejected => {}
            Fault::Malformed => server.fail_next(ServerFault::Malformed, 1),
            Fault::Stall => server.fail_all(ServerFault::Stall),
            Fault::Drop => server.fail_next(ServerFault::DropMidStream, 1),
        }
        Realtime { server }
    }
}

impl VendorServer for Realtime {
    fn base_url(&self) -> String {
        self.server.base_url()
    }

    fn session(&self, backend: &Backend) -> Session {
        let session = backend
            .create_session(SessionConfig::default(), None, None)
            .expect("create_session");
        session.start().unwrap();
        session
    }

    fn begin_turn(&self, session: &Session, n: usize) {
        let mut audio = silence(300, 16000);
        audio.extend(espeak_speech(USER_SAYS[n - 1].0, "en-us"));
        push_all(session, &audio, 16000);
    }

    fn end_turn(&self, session: &Session) {
        push_all(session, &silence(900, 16000), 16000);
    }

    fn answered(&self, session: &Session, n: usize) -> Outcome {
        let events = events_until(session, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
        let answer = texts(&events, K::VB_EVENT_AGENT_RESPONSE).join(" ");
        assert!(answer.starts_with("You said:"), "{answer}");
        assert!(
            answer.to_lowercase().contains(USER_SAYS[n - 1].1),
            "{answer}"
        );
        Outcome {
            events,
            played: Vec::new(),
        }
    }

    fn heal(&self) {
        self.server.clear_faults();
    }

    fn attempts(&self) -> Vec<Option<u16>> {
        let refused = self.server.refusals().into_iter().map(Some);
        refused
            .chain(std::iter::repeat_n(None, self.server.connections()))
            .collect()
    }

    fn evidence(&self, fault: Fault, _seen: &Outcome) {
        match fault {
            Fault::Rejected => assert!(
                self.server.client_events_of("response.create").is_empty(),
                "never run with the server's defaults"
            ),
            Fault::Drop => assert_eq!(
                self.server.client_events_of("session.update").len(),
                2,
                "the new connection was configured again"
            ),
            Fault::RefusedKey | Fault::Malformed | Fault::Stall => {}
        }
    }
}
