//! Deepgram in the fault matrix: the `deepgram` STT provider against the local Deepgram-protocol
//! server (`tests/servers/deepgram/`), which transcribes with the embedded Whisper. A turn is the
//! user's speech: a voiced buzz, or, where the transcript matters (a dropped connection), two
//! sentences spoken by eSpeak NG.

use super::{Fault, Outcome, VendorServer};
use crate::common::*;
use crate::servers::deepgram::{DeepgramFault, DeepgramServer, DeepgramServerOptions};
use voicebackend::{Backend, Session, VbEventKind as K};

/// The key the server accepts.
pub const KEY: &str = "dg-matrix-key-5b1e9c-kq";
/// A key it refuses.
pub const WRONG_KEY: &str = "dg-wrong-key-0c41aa-wz";

/// The sentences of a turn cut by a dropped connection: the first is final before the drop.
const FIRST: &str = "Can you tell me the way to the train station?";
const SECOND: &str = "We need to finish the report before Friday.";

pub struct Deepgram {
    server: DeepgramServer,
    fault: Fault,
}

impl Deepgram {
    pub fn start(fault: Fault) -> Deepgram {
        let mode = match fault {
            Fault::RefusedKey | Fault::Rejected => DeepgramFault::None,
            Fault::Malformed => DeepgramFault::Malformed,
            Fault::Stall => DeepgramFault::Stall,
            // Well into the second sentence, after the pause between them was endpointed.
            Fault::Drop => DeepgramFault::DropOnce {
                after_audio_ms: (espeak_speech(FIRST, "en-us").len() / 16) as u32 + 1200,
            },
        };
        let server = DeepgramServer::start(DeepgramServerOptions {
            api_key: KEY.to_owned(),
            fault: mode,
            ..DeepgramServerOptions::default()
        });
        Deepgram { server, fault }
    }
}

impl VendorServer for Deepgram {
    fn base_url(&self) -> String {
        self.server.base_url()
    }

    fn session(&self, backend: &Backend) -> Session {
        session_at(backend, 16000)
    }

    fn begin_turn(&self, session: &Session, _n: usize) {
        if self.fault == Fault::Drop {
            let mut audio = silence(300, 16000);
            audio.extend(espeak_speech(FIRST, "en-us"));
            audio.extend(silence(450, 16000));
            audio.extend(espeak_speech(SECOND, "en-us"));
            push_all(session, &audio, 16000);
        } else {
            push_all(session, &speech(150.0, 800, 16000), 16000);
        }
    }

    fn end_turn(&self, session: &Session) {
        push_all(session, &silence(1000, 16000), 16000);
    }

    fn answered(&self, session: &Session, _n: usize) -> Outcome {
        let events = events_until(session, |e| e.kind == K::VB_EVENT_TRANSCRIPT_FINAL);
        let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL)
            .join(" ")
            .to_lowercase();
        assert!(heard.contains("train station"), "{heard}");
        assert!(
            heard.contains("report") && heard.contains("friday"),
            "{heard}"
        );
        Outcome {
            events,
            played: Vec::new(),
        }
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
            Fault::Stall => {
                let connections = self.server.connections();
                assert!(
                    connections[0]
                        .controls
                        .ends_with(&["Finalize".into(), "CloseStream".into()]),
                    "the client still finalized and closed its stream: {:?}",
                    connections[0].controls
                );
            }
            Fault::Drop => {
                let connections = self
                    .server
                    .wait_for(|c| c.len() == 2 && c[1].closed_normally);
                let (lost, resumed) = (&connections[0], &connections[1]);
                assert!(lost.dropped);
                assert!(
                    lost.final_transcript()
                        .to_lowercase()
                        .contains("train station"),
                    "the first sentence was final before the drop: {lost:?}"
                );
                assert!(
                    !resumed
                        .final_transcript()
                        .to_lowercase()
                        .contains("station"),
                    "audio already covered by final results is not sent again: {resumed:?}"
                );
                assert!(resumed.audio_samples < lost.audio_samples + resumed.audio_samples / 2);
                let heard = texts(&seen.events, K::VB_EVENT_TRANSCRIPT_FINAL).join(" ");
                assert_eq!(
                    heard.matches("station").count(),
                    1,
                    "nothing heard twice: {heard}"
                );
            }
            Fault::RefusedKey | Fault::Rejected | Fault::Malformed => {}
        }
    }
}
