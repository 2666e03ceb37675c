//! ElevenLabs in the fault matrix: the `elevenlabs` TTS provider against the local
//! ElevenLabs-protocol server (`tests/servers/elevenlabs/`), which synthesizes with the embedded
//! eSpeak NG. A turn is the user's (a voiced buzz, heard by `test-pitch-stt`) and the agent's
//! reply to it, spoken by ElevenLabs: the echo agent's, or, where what is spoken matters (a
//! dropped connection), a long answer streamed in pieces.

use super::{Fault, Outcome, VendorServer};
use crate::common::*;
use crate::servers::elevenlabs::{ElevenLabsFault, ElevenLabsServer, ElevenLabsServerOptions};
use voicebackend::{Backend, Session};

/// The key the server accepts.
pub const KEY: &str = "xi-matrix-key-93d7f2-kq";
/// A key it refuses.
pub const WRONG_KEY: &str = "xi-wrong-key-77ab01-wz";

/// The answer a dropped connection cuts.
const ANSWER: &str = "The train leaves at nine in the morning from the second platform. \
    Please be there ten minutes early, because the doors close on time. \
    Bring your ticket and a warm coat.";

pub struct ElevenLabs {
    server: ElevenLabsServer,
    fault: Fault,
}

impl ElevenLabs {
    pub fn start(fault: Fault) -> ElevenLabs {
        let mode = match fault {
            Fault::RefusedKey | Fault::Rejected => ElevenLabsFault::None,
            Fault::Malformed => ElevenLabsFault::Malformed,
            Fault::Stall => ElevenLabsFault::Stall,
            Fault::Drop => ElevenLabsFault::DropOnce {
                after_generations: 1,
            },
        };
        let server = ElevenLabsServer::start(ElevenLabsServerOptions {
            api_key: KEY.to_owned(),
            fault: mode,
        });
        ElevenLabs { server, fault }
    }
}

impl VendorServer for ElevenLabs {
    fn base_url(&self) -> String {
        self.server.base_url()
    }

    fn session(&self, backend: &Backend) -> Session {
        if self.fault == Fault::Drop {
            started_session(backend, agent_saying(ANSWER))
        } else {
            session_at(backend, 16000)
        }
    }

    fn begin_turn(&self, session: &Session, _n: usize) {
        push_all(session, &utterance(150.0, 800, 16000), 16000);
    }

    fn end_turn(&self, _session: &Session) {}

    fn answered(&self, session: &Session, _n: usize) -> Outcome {
        let (events, played) = play_until(session, reply_finished());
        assert!(rms(&played) > 300.0, "the reply is speech, not silence");
        Outcome { events, played }
    }

    fn heal(&self) {}

    fn attempts(&self) -> Vec<Option<u16>> {
        self.server
            .connections()
            .iter()
            .map(|c| c.refused)
            .collect()
    }

    fn evidence(&self, fault: Fault, seen: &Outcome) {
        match fault {
            Fault::Rejected => {
                let connections = self.server.wait_for(|c| c.first().is_some_and(|c| c.ended));
                assert_eq!(
                    connections[0].error_close.as_ref().map(|e| e.0),
                    Some(1008),
                    "the server closed with a policy violation"
                );
            }
            Fault::Stall => {
                let connections = self.server.connections();
                assert_eq!(
                    connections[0].messages.last().unwrap()["text"],
                    "",
                    "the client still ended its input"
                );
            }
            Fault::Drop => {
                let connections = self.server.wait_for(|c| c.len() == 2 && c[1].final_sent);
                let (lost, resumed) = (&connections[0], &connections[1]);
                assert!(lost.dropped);
                assert_eq!(lost.generations.len(), 1);
                let spoken_before = &lost.generations[0];
                assert!(
                    ANSWER.starts_with(spoken_before.as_str()),
                    "{spoken_before:?}"
                );
                // The new connection got exactly the text not spoken yet.
                assert_eq!(
                    format!("{spoken_before}{}", resumed.text).trim_end(),
                    ANSWER,
                    "{resumed:?}"
                );
                let generated: String = lost
                    .generations
                    .iter()
                    .chain(&resumed.generations)
                    .cloned()
                    .collect();
                assert_eq!(generated.trim_end(), ANSWER, "every word spoken once");
                let sent = (lost.audio_samples + resumed.audio_samples) as f64 * 16000.0 / 24000.0;
                assert!(
                    (seen.played.len() as f64 - sent).abs() < sent * 0.05,
                    "played {} samples of {sent}",
                    seen.played.len()
                );
            }
            Fault::RefusedKey | Fault::Malformed => {}
        }
    }
}
