//! The shared store as the processes of a deployment see it: two stores on one directory stand
//! for two worker processes (a store dropped without ending its conversations is a process that
//! died: its writer thread stops renewing them).

use super::*;
use crate::config::PrivacyConfig;
use crate::error::VbStatus;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vb-shared-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn store(dir: &Path, lease_ms: u32) -> Arc<SharedStore> {
    let config = PersistenceConfig {
        shared_dir: Some(dir.display().to_string()),
        lease_ms,
        ..PersistenceConfig::default()
    };
    SharedStore::open(&config).unwrap().expect("a shared dir")
}

fn room_session() -> SessionConfig {
    SessionConfig {
        user_id: "user-1".into(),
        room: Some("support".into()),
        connection_token: Some(crate::config::Secret::new("job-token")),
        ..SessionConfig::default()
    }
}

fn turn(said: &str, reply: &str) -> Turn {
    Turn {
        transcript: Some(said.into()),
        reply: Some(reply.into()),
        interrupted: false,
    }
}

fn policy() -> Arc<dyn PrivacyPolicy> {
    Arc::new(PrivacyConfig::default())
}

/// Keeps what the agent said, never what the user said.
struct AgentTextOnly;

impl PrivacyPolicy for AgentTextOnly {
    fn may_persist(&self, kind: DataKind, _: &DataOwner<'_>) -> bool {
        kind == DataKind::AgentText
    }
    fn may_log(&self, _: DataKind, _: &DataOwner<'_>) -> bool {
        false
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn any_conversation_id_is_one_plain_file_name_and_distinct_ids_stay_distinct() {
    for id in [
        "livekit:RM_abc",
        "livekit%3ARM_abc",
        "../../etc/passwd",
        "a b/ü",
        ".",
    ] {
        let name = file_name(id);
        assert!(name.ends_with(".json"), "{name}");
        let stem = name.strip_suffix(".json").unwrap();
        assert!(
            stem.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-%".contains(&b)),
            "{name}"
        );
        assert_eq!(decode(stem).as_deref(), Some(id));
    }
    assert_ne!(file_name("livekit:RM_abc"), file_name("livekit%3ARM_abc"));
}

#[test]
fn a_second_process_goes_on_with_the_history_without_tokens_and_as_privacy_allows() {
    let dir = scratch("adopt");
    let first = store(&dir, 10_000);
    let conversation = first.conversation(
        "livekit:RM_1",
        "sess-1-a",
        &room_session(),
        None,
        Arc::new(AgentTextOnly),
    );
    conversation.record(&[turn("my name is Ada", "hello Ada")], None);
    first.flush();

    let second = store(&dir, 10_000);
    let record = second.adopt("livekit:RM_1").expect("the record");
    assert_eq!(record.session_id, "sess-1-a");
    assert_eq!(record.config.room.as_deref(), Some("support"));
    assert!(record.config.connection_token.is_none(), "no token on disk");
    assert_eq!(record.history.len(), 1);
    assert_eq!(record.history[0].transcript, None, "withheld by the policy");
    assert_eq!(record.history[0].reply.as_deref(), Some("hello Ada"));
    let text = std::fs::read_to_string(dir.join(file_name("livekit:RM_1"))).unwrap();
    assert!(!text.contains("job-token"), "{text}");
    assert!(second.adopt("livekit:RM_other").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_live_conversation_stays_fresh_a_dead_owners_goes_stale_after_the_lease() {
    let dir = scratch("lease");
    let watcher = store(&dir, 300);
    let alive = store(&dir, 300);
    let live = alive.conversation("live", "sess-1", &room_session(), None, policy());
    live.record(&[turn("one", "1")], None);
    alive.flush();
    {
        let dying = store(&dir, 300);
        let orphan = dying.conversation("orphan", "sess-2", &room_session(), None, policy());
        orphan.record(&[turn("two", "2")], None);
        dying.flush();
        // The process dies: nothing deletes or renews its conversation any more.
    }
    std::thread::sleep(Duration::from_millis(700));
    let stale: Vec<String> = watcher
        .stale()
        .into_iter()
        .map(|r| r.conversation_id)
        .collect();
    assert_eq!(stale, vec!["orphan".to_owned()], "the live one was renewed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_released_conversation_is_stale_at_once_a_deleted_one_is_gone() {
    let dir = scratch("release");
    let store = store(&dir, 60_000);
    let released = store.conversation("handed-off", "s1", &room_session(), None, policy());
    released.record(&[turn("a", "b")], None);
    let over = store.conversation("over", "s2", &room_session(), None, policy());
    over.record(&[turn("c", "d")], None);
    store.flush();
    released.release();
    over.delete();
    over.record(&[turn("late", "write")], None);
    store.flush();
    let stale: Vec<String> = store
        .stale()
        .into_iter()
        .map(|r| r.conversation_id)
        .collect();
    assert_eq!(stale, vec!["handed-off".to_owned()]);
    assert_eq!(
        files(&dir),
        vec![file_name("handed-off")],
        "nothing written after the end"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_process_claims_a_stale_conversation_and_the_next_owner_ends_the_claim() {
    let dir = scratch("claim");
    let (a, b) = (store(&dir, 60_000), store(&dir, 60_000));
    let c = a.conversation("room", "s1", &room_session(), None, policy());
    c.record(&[turn("hi", "hello")], None);
    a.flush();
    c.release();
    a.flush();
    assert_eq!(b.stale().len(), 1);
    assert!(b.claim("room"), "the first claim wins");
    assert!(!a.claim("room"), "the second loses");
    assert!(
        a.stale().is_empty(),
        "claimed: not offered again while the claim lives"
    );
    // The worker the conversation was dispatched to goes on with it: its first write ends the
    // claim.
    let record = a.adopt("room").unwrap();
    let next = a.conversation(
        "room",
        "s2",
        &record.config,
        Some(record.created_at_ms),
        policy(),
    );
    next.record(&[turn("hi", "hello"), turn("again", "yes")], None);
    a.flush();
    assert_eq!(files(&dir), vec![file_name("room")]);
    assert_eq!(a.adopt("room").unwrap().created_at_ms, record.created_at_ms);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_record_that_does_not_parse_is_set_aside_not_lost_and_the_conversation_starts_afresh() {
    let dir = scratch("corrupt");
    let store = store(&dir, 60_000);
    std::fs::write(
        dir.join(file_name("broken")),
        b"{\"version\": 1, \"history\": [",
    )
    .unwrap();
    assert!(store.adopt("broken").is_none());
    let names = files(&dir);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("broken.json.corrupt-"), "{names:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_shared_dir_that_cannot_be_used_is_a_configuration_error_naming_it() {
    let dir = scratch("unusable");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    std::fs::write(&dir, b"a file, not a directory").unwrap();
    let config = PersistenceConfig {
        shared_dir: Some(dir.display().to_string()),
        ..PersistenceConfig::default()
    };
    let e = SharedStore::open(&config).err().expect("refused");
    assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG);
    assert!(e.message().contains("persistence.shared_dir"), "{e}");
    assert!(e.message().contains(&dir.display().to_string()), "{e}");
    let _ = std::fs::remove_file(&dir);
}
