//! Privacy and retention hooks: what of a conversation the engine may keep in the session store
//! and what may appear in logs and traces.

use serde_json::Value;

use crate::config::PrivacyConfig;

/// A kind of conversation data a [`PrivacyPolicy`] decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    /// What the user said: final transcripts.
    Transcript,
    /// What the agent answered: reply texts.
    AgentText,
    /// The user's voice: the PCM of each turn.
    Audio,
}

/// Whose conversation the data belongs to: what a policy may base its answer on.
#[derive(Debug, Clone, Copy)]
pub struct DataOwner<'a> {
    /// The session id.
    pub session_id: &'a str,
    /// The session's `user_id`.
    pub user_id: &'a str,
    /// The session's `metadata` (a JSON object), e.g. a consent flag set by the host.
    pub metadata: &'a Value,
}

/// Decides what the engine may persist and log. Set with
/// [`Backend::set_privacy_policy`](crate::Backend::set_privacy_policy) before the backend
/// starts; the default is the backend's `privacy` configuration section (see the impl for
/// [`PrivacyConfig`]).
///
/// Asked on the session task (the backend's I/O runtime) whenever a session record is written
/// and when a turn starts (audio): answer quickly and never block.
pub trait PrivacyPolicy: Send + Sync {
    /// Whether `kind` may be kept in the session store while the session is active. The record
    /// is deleted when the session stops, whatever the answer.
    fn may_persist(&self, kind: DataKind, owner: &DataOwner<'_>) -> bool;
    /// Whether `kind` may appear in logs and traces.
    fn may_log(&self, kind: DataKind, owner: &DataOwner<'_>) -> bool;
}

/// The default policy: `persist_transcripts` covers what the user said and what the agent
/// answered, `persist_audio` the user's voice, `log_transcripts` both texts in logs. Audio is
/// never logged.
impl PrivacyPolicy for PrivacyConfig {
    fn may_persist(&self, kind: DataKind, _: &DataOwner<'_>) -> bool {
        match kind {
            DataKind::Transcript | DataKind::AgentText => self.persist_transcripts,
            DataKind::Audio => self.persist_audio,
        }
    }

    fn may_log(&self, kind: DataKind, _: &DataOwner<'_>) -> bool {
        match kind {
            DataKind::Transcript | DataKind::AgentText => self.log_transcripts,
            DataKind::Audio => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [DataKind; 3] = [DataKind::Transcript, DataKind::AgentText, DataKind::Audio];

    fn answers(policy: &dyn PrivacyPolicy) -> ([bool; 3], [bool; 3]) {
        let metadata = Value::Null;
        let owner = DataOwner {
            session_id: "sess-1",
            user_id: "user-1",
            metadata: &metadata,
        };
        (
            KINDS.map(|kind| policy.may_persist(kind, &owner)),
            KINDS.map(|kind| policy.may_log(kind, &owner)),
        )
    }

    #[test]
    fn by_default_transcripts_are_kept_while_active_audio_never_and_nothing_is_logged() {
        let (persist, log) = answers(&PrivacyConfig::default());
        assert_eq!(persist, [true, true, false]);
        assert_eq!(log, [false, false, false]);
    }

    #[test]
    fn the_configuration_switches_each_kind() {
        let config = PrivacyConfig {
            persist_transcripts: false,
            persist_audio: true,
            log_transcripts: true,
        };
        let (persist, log) = answers(&config);
        assert_eq!(persist, [false, false, true]);
        assert_eq!(log, [true, true, false], "audio is never logged");
    }
}
