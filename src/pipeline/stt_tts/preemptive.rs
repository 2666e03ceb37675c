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
//!   cancelled (the agent sees `Reply::is_cancelled`, its messages are dropped);
//! - the turn ends and its final transcript has the preview's words: the held reply is
//!   **promoted** — it is the turn's reply, its audio plays at once, its events follow the
//!   transcript's as for any reply;
//! - the final transcript differs (or is empty, or STT failed): the held reply is cancelled and
//!   the turn is answered as usual.
//!
//! The price: every turn (and every pause of `preemptive_ms` inside one) is transcribed once more
//! and may start the agent for nothing. Runs on the session task.
//!
//! [`RtOutput::UserWentOn`]: crate::rt::message::RtOutput::UserWentOn

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::{Conversation, ReplySource};
use crate::event::{VbEventKind, VbSessionState};
use crate::pipeline::manners::words;
use crate::provider::SttTurn;
use crate::provider::stt::{SttResult, SttSink, speech_ring};
use crate::rt::message::RtControl;

/// The preemptive side of one conversation (present only with `turn.preemptive_ms`).
pub(super) struct Preemption {
    /// The open turn's audio so far: the preview's input.
    audio: Option<(u32, Vec<i16>)>,
    /// The latest preview: its id, its turn and, once known, its transcript.
    preview: Option<Preview>,
    next_preview_id: u32,
    /// Where previews report (tagged with the preview's id, not a turn number).
    preview_tx: mpsc::UnboundedSender<(u32, SttResult)>,
    /// Held replies cancelled before their agent returned: what their agent still sends is
    /// dropped, whatever it is.
    discarded: HashSet<u64>,
}

struct Preview {
    id: u32,
    turn: u32,
    transcript: Option<String>,
}

impl Preemption {
    /// The preemptive side, reporting previews to `preview_tx`.
    pub(super) fn new(preview_tx: mpsc::UnboundedSender<(u32, SttResult)>) -> Self {
        Preemption {
            audio: None,
            preview: None,
            next_preview_id: 1,
            preview_tx,
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
    /// A user turn started: keep its audio for previews.
    pub(super) fn keep_turn_audio(&mut self, turn: u32) {
        if let Some(p) = self.preemption.as_mut() {
            p.audio = Some((turn, Vec::new()));
        }
    }

    /// Speech of `turn` for previews.
    pub(super) fn keep_speech(&mut self, turn: u32, samples: &[i16]) {
        if let Some((_, audio)) = self
            .preemption
            .as_mut()
            .and_then(|p| p.audio.as_mut())
            .filter(|(t, _)| *t == turn)
        {
            audio.extend_from_slice(samples);
        }
    }

    /// The turn ended: nothing more to preview.
    pub(super) fn forget_turn_audio(&mut self, turn: u32) {
        if let Some(p) = self.preemption.as_mut() {
            if p.audio.as_ref().is_some_and(|(t, _)| *t == turn) {
                p.audio = None;
            }
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
        let Some((_, audio)) = p.audio.as_ref().filter(|(t, _)| *t == turn) else {
            return;
        };
        let (mut writer, stream) = speech_ring(audio.len());
        writer.write(audio);
        drop(writer); // closed: the preview is this audio and no more
        let id = p.next_preview_id;
        p.next_preview_id = p.next_preview_id.wrapping_add(1);
        p.preview = Some(Preview {
            id,
            turn,
            transcript: None,
        });
        let request = SttTurn {
            sample_rate: self.ctx.spec.internal_rate,
            audio: stream,
            results: SttSink::new(id, p.preview_tx.clone()),
        };
        let future = self.stt.transcribe(request);
        self.ctx.runtime.spawn(
            async move {
                if let Err(e) = future.await {
                    tracing::debug!(error = %e.message(), "preview transcription failed");
                }
            }
            .instrument(tracing::error_span!("turn", turn)),
        );
    }

    /// A preview's result: its final transcript starts the held reply.
    pub(super) fn on_preview_result(&mut self, id: u32, result: SttResult) {
        let SttResult::Final(text) = result else {
            return;
        };
        let Some(turn) = self
            .preemption
            .as_ref()
            .and_then(|p| p.preview.as_ref())
            .filter(|preview| preview.id == id)
            .map(|preview| preview.turn)
        else {
            return; // an older pause's preview
        };
        let transcript = text.trim().to_owned();
        if words(&transcript).is_empty() || !self.may_answer_early(turn) {
            return;
        }
        if let Some(preview) = self.preemption.as_mut().and_then(|p| p.preview.as_mut()) {
            preview.transcript = Some(transcript.clone());
        }
        tracing::debug!(turn, transcript, "preemptive reply started");
        self.begin_reply(ReplySource::Agent { turn, transcript }, true);
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
        let held = self.active.as_ref().is_some_and(|a| a.held);
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
        if let (Some(turn), Some(at)) = (reply.turn, reply.first_text_at_us) {
            reply.metrics.agent_first_text_us = self.clock.since_speech_end(turn, at);
        }
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
