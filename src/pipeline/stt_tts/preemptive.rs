//! Preemptive replies (`turn.preemptive_ms`): the agent starts on the turn so far while the end
//! of the turn is still undecided, and the reply is kept only if the turn ends as it was heard.
//!
//! When a pause inside the user's turn reaches `preemptive_ms` (the realtime thread's
//! [`RtOutput::UserPaused`](crate::rt::message::RtOutput::UserPaused)), the session transcribes
//! the turn's audio so far with a second request to its STT provider (a *preview*). When the
//! preview's transcript comes back and the session is otherwise idle, the agent starts on it and
//! TTS speaks its text — but the reply is **held**: nothing is played, no event is sent, the
//! state does not change. Then:
//! - the user speaks again in the same turn ([`RtOutput::UserWentOn`]): the held reply is
//!   cancelled (the agent sees `Reply::is_cancelled`, its messages are dropped), and the preview
//!   forgotten;
//! - the turn ends with no voice after the pause: the preview heard every voiced frame of the
//!   turn, so **its transcript is the turn's** — the turn's own STT request is dropped (the work
//!   is not done twice) and the preview's transcript is delivered as the final one, which
//!   promotes the held reply: it is the turn's reply, its audio plays at once, its events follow
//!   the transcript's as for any reply;
//! - the turn's own STT delivers a final transcript first (a streaming provider may, before the
//!   engine ends the turn): the held reply is kept if it has the preview's words, and cancelled
//!   otherwise (the turn is then answered as usual); an empty transcript or a failure cancels it
//!   too.
//!
//! The price: each pause of `preemptive_ms` after which the user goes on is transcribed once
//! more, and may start the agent for nothing. Runs on the session task.
//!
//! [`RtOutput::UserWentOn`]: crate::rt::message::RtOutput::UserWentOn

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::{Conversation, ReplySource};
use crate::error::Result;
use crate::event::{VbEventKind, VbSessionState};
use crate::pipeline::manners::words;
use crate::provider::stt::{SttResult, speech_ring};
use crate::rt::message::RtControl;

/// The preemptive side of one conversation (present only with `turn.preemptive_ms`).
pub(super) struct Preemption {
    /// The open turn's audio so far (the preview's input), and its own STT task.
    audio: Option<OpenTurn>,
    /// The latest preview: its id, its turn and, once known, its transcript.
    preview: Option<Preview>,
    next_preview_id: u32,
    /// Where previews report (tagged with the preview's id, not a turn number).
    preview_tx: mpsc::UnboundedSender<(u32, SttResult)>,
    /// Where previews say they resolved.
    preview_done_tx: mpsc::UnboundedSender<(u32, Result<()>)>,
    /// Held replies cancelled before their agent returned: what their agent still sends is
    /// dropped, whatever it is.
    discarded: HashSet<u64>,
}

/// The turn being spoken.
struct OpenTurn {
    turn: u32,
    audio: Vec<i16>,
    /// Its own STT request, dropped when a preview covers the turn.
    stt: AbortHandle,
}

struct Preview {
    id: u32,
    turn: u32,
    transcript: Option<String>,
    /// The turn ended with no voice after this preview's pause: its transcript is the turn's.
    covers_turn: bool,
    /// The request resolved (with or without a final transcript).
    resolved: bool,
}

impl Preemption {
    /// The preemptive side, reporting previews to `preview_tx`.
    pub(super) fn new(
        preview_tx: mpsc::UnboundedSender<(u32, SttResult)>,
        preview_done_tx: mpsc::UnboundedSender<(u32, Result<()>)>,
    ) -> Self {
        Preemption {
            audio: None,
            preview: None,
            next_preview_id: 1,
            preview_tx,
            preview_done_tx,
            discarded: HashSet::new(),
        }
    }

    /// Whether a message of reply `id` belongs to a held reply that was cancelled (and forgets
    /// it once its agent returned).
    pub(super) fn swallows(&mut self, id: u64, last: bool) -> bool {
        if last {
            self.discarded.remove(&id)
        } else {
            self.discarded.contains(&id)
        }
    }
}

impl Conversation {
    /// A user turn started (its own STT runs as `stt`): keep its audio for previews.
    pub(super) fn keep_turn_audio(&mut self, turn: u32, stt: AbortHandle) {
        if let Some(p) = self.preemption.as_mut() {
            p.audio = Some(OpenTurn {
                turn,
                audio: Vec::new(),
                stt,
            });
        }
    }

    /// Speech of `turn` for previews.
    pub(super) fn keep_speech(&mut self, turn: u32, samples: &[i16]) {
        if let Some(open) = self
            .preemption
            .as_mut()
            .and_then(|p| p.audio.as_mut())
            .filter(|open| open.turn == turn)
        {
            open.audio.extend_from_slice(samples);
        }
    }

    /// `turn` ended (called before its own STT hears the end). When the user said nothing
    /// after the last preview's pause (else the preview would be gone), the preview heard the
    /// whole turn: its transcript becomes the turn's ([`Conversation::deliver_covering_preview`]),
    /// and the turn's own STT request is dropped before it starts on the same audio.
    pub(super) fn preview_covers_turn(&mut self, turn: u32) {
        let Some(p) = self.preemption.as_mut() else {
            return;
        };
        let open = p.audio.take_if(|open| open.turn == turn);
        let waiting = self
            .transcripts
            .get(&turn)
            .is_some_and(|outcome| outcome.is_none());
        // A preview that failed covers nothing: the turn's own STT goes on.
        let Some(preview) = p
            .preview
            .as_mut()
            .filter(|pv| pv.turn == turn && waiting && (pv.transcript.is_some() || !pv.resolved))
        else {
            return;
        };
        preview.covers_turn = true;
        if let Some(open) = open {
            open.stt.abort();
        }
    }

    /// After `VB_EVENT_SPEECH_STOPPED`: a preview that covers the turn and is already in is the
    /// turn's final transcript now (one still running will be when it comes).
    pub(super) fn deliver_covering_preview(&mut self, turn: u32) {
        let text = self
            .preemption
            .as_ref()
            .and_then(|p| p.preview.as_ref())
            .filter(|preview| preview.turn == turn && preview.covers_turn)
            .and_then(|preview| preview.transcript.clone());
        if let Some(text) = text {
            self.on_stt_result(turn, SttResult::Final(text));
        }
    }

    /// Whether an early reply to `turn` could start now: nothing else is being said or waits,
    /// no earlier turn waits for its transcript and `turn`'s has not come yet.
    fn may_answer_early(&self, turn: u32) -> bool {
        self.active.is_none()
            && self.queue.is_empty()
            && self.paused.is_none()
            && self
                .transcripts
                .first_key_value()
                .is_some_and(|(t, outcome)| *t == turn && outcome.is_none())
    }

    /// A pause in `turn` reached `preemptive_ms`: transcribe the turn so far.
    pub(super) fn on_user_paused(&mut self, turn: u32) {
        if !self.may_answer_early(turn) {
            return;
        }
        let Some(p) = self.preemption.as_mut() else {
            return;
        };
        let Some(open) = p.audio.as_ref().filter(|open| open.turn == turn) else {
            return;
        };
        let (mut writer, stream) = speech_ring(open.audio.len());
        writer.write(&open.audio);
        drop(writer); // closed: the preview is this audio and no more
        let id = p.next_preview_id;
        p.next_preview_id = p.next_preview_id.wrapping_add(1);
        p.preview = Some(Preview {
            id,
            turn,
            transcript: None,
            covers_turn: false,
            resolved: false,
        });
        let (results, done) = (p.preview_tx.clone(), p.preview_done_tx.clone());
        self.transcribe(turn, stream, id, results, done);
    }

    /// The current preview, when `id` is its id (an older pause's preview is no news).
    fn preview(&mut self, id: u32) -> Option<&mut Preview> {
        self.preemption
            .as_mut()?
            .preview
            .as_mut()
            .filter(|preview| preview.id == id)
    }

    /// A preview's result: its final transcript starts the held reply, and is the turn's final
    /// transcript when the preview covers the turn.
    pub(super) fn on_preview_result(&mut self, id: u32, result: SttResult) {
        let SttResult::Final(text) = result else {
            return;
        };
        let Some(preview) = self.preview(id) else {
            return;
        };
        if preview.transcript.is_some() {
            return; // one final per request
        }
        preview.transcript = Some(text.clone());
        let (turn, covers_turn) = (preview.turn, preview.covers_turn);
        let transcript = text.trim().to_owned();
        if !words(&transcript).is_empty() && self.may_answer_early(turn) {
            tracing::debug!(turn, transcript, "preemptive reply started");
            self.begin_reply(ReplySource::Agent { turn, transcript }, true);
        }
        if covers_turn {
            self.on_stt_result(turn, SttResult::Final(text));
        }
    }

    /// A preview resolved: when it covers its turn, its failure (or its end without a final
    /// transcript) is the turn's.
    pub(super) fn on_preview_done(&mut self, id: u32, done: Result<()>) {
        let Some(preview) = self.preview(id) else {
            return;
        };
        preview.resolved = true;
        if preview.covers_turn {
            let turn = preview.turn;
            self.on_stt_done(turn, done);
        } else if let Err(e) = done {
            // The turn's own STT still runs: the turn loses nothing.
            tracing::debug!(error = %e.message(), "preview transcription failed");
        }
    }

    /// The user went on after the pause: the early reply (if any) answered half a turn.
    pub(super) fn on_user_went_on(&mut self, turn: u32) {
        let Some(p) = self.preemption.as_mut() else {
            return;
        };
        if p.preview
            .as_ref()
            .is_some_and(|preview| preview.turn == turn)
        {
            p.preview = None;
            self.discard_held("the user went on");
            self.start_next_reply();
        }
    }

    /// `turn`'s final transcript arrived: promotes the held reply when the preview heard the same
    /// words (returns true: the turn is answered), cancels it otherwise.
    pub(super) fn settle_preemptive(&mut self, turn: u32, transcript: Option<&str>) -> bool {
        let Some(p) = self.preemption.as_mut() else {
            return false;
        };
        let Some(preview) = p.preview.take_if(|preview| preview.turn == turn) else {
            return false;
        };
        let held = self
            .active
            .as_ref()
            .is_some_and(|a| a.held && a.turn == Some(turn));
        let same = match (&preview.transcript, transcript) {
            (Some(early), Some(text)) => words(early) == words(text),
            _ => false,
        };
        if !held {
            return false;
        }
        if !same {
            self.discard_held("the final transcript differs from the preview");
            self.start_next_reply();
            return false;
        }
        self.promote_held(transcript.unwrap_or_default());
        true
    }

    /// The held reply becomes the turn's reply, as if it had started now: playout may begin,
    /// and what the host was not told yet is told.
    fn promote_held(&mut self, transcript: &str) {
        let Some(reply) = self.active.as_mut().filter(|a| a.held) else {
            return;
        };
        reply.held = false;
        reply.transcript = transcript.to_owned();
        let ended = reply.text_tx.is_none();
        let text = reply.full_text.clone();
        let failures = std::mem::take(&mut reply.held_failures);
        tracing::debug!("preemptive reply kept: the final transcript is the preview's");
        let _ = self.ctx.control.try_send(RtControl::ReplyStarted);
        self.ctx.shared.wake();
        self.ctx
            .events
            .set_state(VbSessionState::VB_STATE_PROCESSING);
        for e in failures {
            self.agent_failed(&e);
        }
        if ended {
            self.ctx
                .events
                .emit(VbEventKind::VB_EVENT_AGENT_RESPONSE, |e| {
                    e.text = Some(text)
                });
        }
    }

    /// Cancels the held reply, if there is one: its agent sees the cancellation, its TTS stops,
    /// nothing of it reaches the host or the history.
    pub(super) fn discard_held(&mut self, why: &str) {
        if !self.active.as_ref().is_some_and(|a| a.held) {
            return;
        }
        let Some(reply) = self.active.take() else {
            return;
        };
        reply.cancelled.store(true, Ordering::Release);
        reply.tts_task.abort();
        if let Some(p) = self.preemption.as_mut() {
            p.discarded.insert(reply.id);
        }
        tracing::debug!(why, "preemptive reply cancelled");
    }
}
