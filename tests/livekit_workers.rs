//! LiveKit agent workers: voicebackend processes registered with a real livekit-server
//! (v1.13.5, loopback only) through LiveKit's agent protocol, taking the rooms it dispatches.
//! Workers are separate OS processes — a C host of the library (`tests/c/livekit_worker.c`) —
//! and every user is LiveKit's own Go SDK (`tests/livekit/peer`) speaking in its room.
#![cfg(feature = "test-providers")]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::livekit::{LiveKitServer, Peer, backend_json, wav};
use common::worker::WorkerProcess;
use serde_json::Value;
use voicebackend::backend::{Accepted, IncomingHandler};
use voicebackend::{Backend, Session, VbStatus};

/// A worker backend on `server` with the test providers (cheap: twelve rooms fit on two cores)
/// and `worker` as its worker section.
fn worker_json(server: &LiveKitServer, worker: &str) -> String {
    backend_json(&server.url(), "").replacen(
        r#""api_secret":"secret"}"#,
        &format!(
            r#""api_secret":"secret","worker":{worker}}},"stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts""#
        ),
        1,
    )
}

/// A user in `room` who waits for the agent to listen, then speaks a voiced buzz at each of
/// `at_ms` (on the clock started by the agent's subscription) and stays `duration_ms`.
fn user(server: &LiveKitServer, room: &str, at_ms: &[u32], duration_ms: u32) -> Peer {
    // Written once: peers of concurrent tests read it.
    static BUZZ: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let buzz = BUZZ.get_or_init(|| wav("worker-buzz", &common::speech(150.0, 800, 48_000), 48_000));
    let mut args: Vec<String> = vec!["--wait-subscriber".into()];
    for at in at_ms {
        args.push("--speak".into());
        args.push(format!("{}@{at}", buzz.display()));
    }
    args.extend(["--duration-ms".into(), duration_ms.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Peer::start(server, room, &format!("user-{room}"), &args)
}

/// Whether the user heard the agent after its utterance number `turn` ended.
fn heard_a_reply_to(report: &Value, turn: usize) -> bool {
    let Some(utterance) = report["utterances"].get(turn) else {
        return false;
    };
    let end = utterance["start_ms"].as_f64().unwrap() + utterance["audio_ms"].as_f64().unwrap();
    report["audible"]
        .as_array()
        .unwrap()
        .iter()
        .any(|span| span["start_ms"].as_f64().unwrap() > end)
}

/// Identities of the agents that joined the user's room.
fn agents_seen(report: &Value) -> Vec<String> {
    let mut agents: Vec<String> = report["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["event"] == "joined" && p["kind"] == "agent")
        .map(|p| p["identity"].as_str().unwrap().to_owned())
        .collect();
    agents.dedup();
    agents
}

/// The twelve-room test runs alone (its users, workers and server fill two cores); the others
/// share the machine.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared_machine() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|p| p.into_inner())
}

/// Waits until `done`; on time-out, panics with `what()` (computed then, with what was seen).
fn wait_until(what: impl Fn() -> String, patience: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + patience;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} within {patience:?}",
            what()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rooms_are_spread_over_worker_processes_as_their_capacity_allows_one_agent_each() {
    let _alone = MACHINE.write().unwrap_or_else(|p| p.into_inner());
    let server = LiveKitServer::start();
    // Four jobs each: a full worker reports itself full and refuses, so the server asks another.
    let config = worker_json(&server, r#"{"max_jobs":4}"#);
    let first = WorkerProcess::registered("first", &config);
    let second = WorkerProcess::registered("second", &config);
    let rooms: Vec<String> = (0..12).map(|i| format!("spread-{i}")).collect();
    let mut users = Vec::new();
    for room in &rooms[..6] {
        users.push(user(&server, room, &[500], 30_000));
    }
    let taken = |workers: &[&WorkerProcess]| workers.iter().map(|w| w.rooms().len()).sum::<usize>();
    wait_until(
        || {
            format!(
                "two workers take six rooms (they took {:?})",
                [first.rooms(), second.rooms()]
            )
        },
        Duration::from_secs(60),
        || taken(&[&first, &second]) == 6,
    );
    // A third worker joins while those conversations go on; six more rooms arrive.
    let third = WorkerProcess::registered("third", &config);
    for room in &rooms[6..] {
        users.push(user(&server, room, &[500], 20_000));
    }
    let workers = [&first, &second, &third];
    wait_until(
        || {
            format!(
                "three workers take twelve rooms (they took {:?})",
                workers.map(|w| w.rooms())
            )
        },
        Duration::from_secs(60),
        || taken(&workers) == 12,
    );

    // Every room got exactly one agent, from exactly one worker; each worker is full.
    let mut owner: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for worker in workers {
        for room in worker.rooms() {
            owner.entry(room).or_default().push(worker.name.clone());
        }
    }
    assert_eq!(owner.keys().cloned().collect::<Vec<_>>(), {
        let mut sorted = rooms.clone();
        sorted.sort();
        sorted
    });
    assert!(owner.values().all(|w| w.len() == 1), "{owner:?}");
    for worker in workers {
        assert_eq!(
            worker.rooms().len(),
            4,
            "{}: {:?}",
            worker.name,
            worker.lines()
        );
    }
    // And every user was answered by that one agent.
    for (room, peer) in rooms.iter().zip(users) {
        let report = peer.finish(Duration::from_secs(60));
        assert!(heard_a_reply_to(&report, 0), "{room}: no reply heard");
        assert_eq!(
            agents_seen(&report).len(),
            1,
            "{room}: {:?}",
            agents_seen(&report)
        );
    }
    for worker in workers {
        worker.wait_for(|l| l.starts_with("ended "), Duration::from_secs(30));
    }
}

#[test]
fn a_killed_workers_room_is_brought_back_to_another_worker_which_goes_on_with_the_history() {
    let _shared = shared_machine();
    let server = LiveKitServer::start();
    // The workers share a directory of conversations; a worker silent for 2 s is dead.
    let shared_dir = scratch_dir("rescue");
    let config = with_shared_conversations(&worker_json(&server, "{}"), &shared_dir);
    let mut doomed = WorkerProcess::registered("doomed", &config);
    // Two utterances 13 s apart; the worker dies after answering the first.
    let peer = user(&server, "rescue", &[500, 13_500], 18_000);
    doomed.wait_for(|l| l.starts_with("turn rescue "), Duration::from_secs(20));
    doomed.wait_for(|l| l == "context rescue 0", Duration::from_secs(1));
    // The finished turn is in the shared record (one file, the room's conversation).
    wait_until(
        || {
            format!(
                "a record with one turn; there are {:?}",
                listing(&shared_dir)
            )
        },
        Duration::from_secs(10),
        || turns_recorded(&shared_dir) == Some(1),
    );
    let survivor = WorkerProcess::registered("survivor", &config);
    doomed.kill();
    // livekit-server 1.13.5 does not dispatch a dead worker's jobs again by itself: the
    // survivor finds the conversation stale, sees the user still in the room and has the room
    // dispatched again; the server gives it to the survivor, whose session goes on with the
    // conversation: its agent is called with the first turn in the history.
    survivor.wait_for(|l| l.starts_with("job rescue "), Duration::from_secs(20));
    survivor.wait_for(|l| l.starts_with("turn rescue "), Duration::from_secs(20));
    assert_eq!(
        survivor.words_after("context rescue "),
        vec!["1".to_owned()],
        "the survivor's agent saw the turn the dead worker answered"
    );
    let report = peer.finish(Duration::from_secs(40));
    assert!(heard_a_reply_to(&report, 0), "the first worker answered");
    assert!(heard_a_reply_to(&report, 1), "the second worker answered");
    assert_eq!(agents_seen(&report).len(), 2, "{:?}", agents_seen(&report));
    // The user left: the conversation is over, and so is its record.
    survivor.wait_for(|l| l == "ended rescue", Duration::from_secs(30));
    wait_until(
        || {
            format!(
                "the shared directory emptied; it holds {:?}",
                listing(&shared_dir)
            )
        },
        Duration::from_secs(5),
        || listing(&shared_dir).is_empty(),
    );
    let _ = std::fs::remove_dir_all(&shared_dir);
}

/// A fresh directory for one test.
fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Files in `dir` (none when it is not there).
fn listing(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        },
    )
}

/// The turns in the one conversation record of `dir` (`None` unless there is exactly one).
fn turns_recorded(dir: &std::path::Path) -> Option<usize> {
    let records: Vec<String> = listing(dir)
        .into_iter()
        .filter(|f| f.ends_with(".json"))
        .collect();
    let [record] = records.as_slice() else {
        return None;
    };
    let text = std::fs::read_to_string(dir.join(record)).ok()?;
    let record: Value = serde_json::from_str(&text).ok()?;
    assert!(
        record["conversation_id"]
            .as_str()?
            .starts_with("livekit:RM_"),
        "{record}"
    );
    Some(record["history"].as_array()?.len())
}

/// `backend_json` with conversations shared through `dir` and a 2 s lease.
fn with_shared_conversations(backend_json: &str, dir: &std::path::Path) -> String {
    let mut config: Value = serde_json::from_str(backend_json).unwrap();
    config["persistence"] = serde_json::json!({"shared_dir": dir, "lease_ms": 2000});
    config.to_string()
}

#[test]
fn a_draining_worker_finishes_its_conversation_takes_no_new_room_and_exits() {
    let _shared = shared_machine();
    let server = LiveKitServer::start();
    let config = worker_json(&server, "{}");
    let mut draining = WorkerProcess::registered("draining", &config);
    let peer = user(&server, "long-talk", &[500, 5_000], 8_000);
    draining.wait_for(|l| l.starts_with("job long-talk "), Duration::from_secs(20));
    let other = WorkerProcess::registered("other", &config);
    draining.terminate();
    // While it drains, a new room goes to the other worker.
    std::thread::sleep(Duration::from_millis(500));
    let newcomer = user(&server, "newcomer", &[500], 4_000);
    other.wait_for(|l| l.starts_with("job newcomer "), Duration::from_secs(20));
    // The conversation under way goes on to its end: the second turn is answered too.
    let report = peer.finish(Duration::from_secs(30));
    assert!(heard_a_reply_to(&report, 1), "answered while draining");
    draining.wait_for(|l| l == "drained", Duration::from_secs(30));
    assert!(draining.wait_exit(Duration::from_secs(10)).success());
    assert_eq!(draining.rooms(), vec!["long-talk".to_owned()]);
    assert_eq!(draining.words_after("ended "), vec!["long-talk".to_owned()]);
    newcomer.finish(Duration::from_secs(30));
}

#[test]
fn a_worker_with_a_wrong_secret_is_refused_at_start_with_a_clear_error() {
    let _shared = shared_machine();
    let server = LiveKitServer::start();
    let config =
        worker_json(&server, "{}").replace(r#""api_secret":"secret""#, r#""api_secret":"wrong""#);
    let mut worker = WorkerProcess::start("wrong-secret", &config, false);
    assert_eq!(worker.wait_exit(Duration::from_secs(20)).code(), Some(1));
    let stderr = worker.stderr();
    assert!(
        stderr.contains("vb_backend_start: VB_ERR_UNAUTHORIZED")
            && stderr.contains("registering as an agent worker at ws://127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong"),
        "the secret is never printed: {stderr}"
    );
}

#[test]
fn a_named_worker_gets_only_explicit_dispatches_through_the_room_service() {
    let _shared = shared_machine();
    let server = LiveKitServer::start();
    let config = worker_json(&server, r#"{"agent_name":"concierge"}"#);
    let worker = WorkerProcess::registered("concierge", &config);
    let rooms = Backend::from_json(&config).unwrap().room_service().unwrap();
    rooms.create_room("lobby").unwrap();
    let peer = user(&server, "lobby", &[500], 6_000);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        worker.rooms().is_empty(),
        "a named worker takes no room by itself"
    );
    assert!(
        rooms
            .list_rooms()
            .unwrap()
            .iter()
            .any(|r| r.name == "lobby")
    );
    rooms
        .create_dispatch("lobby", "concierge", "{\"vip\":true}")
        .unwrap();
    worker.wait_for(|l| l.starts_with("turn lobby "), Duration::from_secs(20));
    let participants = rooms.list_participants("lobby").unwrap();
    let kinds: Vec<&str> = participants.iter().map(|p| p.kind.as_str()).collect();
    assert!(
        kinds.contains(&"agent") && kinds.contains(&"standard"),
        "{participants:?}"
    );
    let report = peer.finish(Duration::from_secs(30));
    assert!(heard_a_reply_to(&report, 0));
    rooms.delete_room("lobby").unwrap();
    let e = rooms.delete_room("lobby").unwrap_err();
    assert_eq!(e.status(), VbStatus::VB_ERR_NOT_FOUND, "{e}");
}

#[test]
fn a_host_that_refuses_the_session_fails_the_job_and_no_agent_joins() {
    let _shared = shared_machine();
    let server = LiveKitServer::start();
    let config = worker_json(&server, "{}");
    let refusing = WorkerProcess::start("refusing", &config, true);
    refusing.wait_for(|l| l == "registered", Duration::from_secs(20));
    let peer = user(&server, "unwelcome", &[500], 4_000);
    refusing.wait_for(|l| l == "refused unwelcome", Duration::from_secs(20));
    let report = peer.finish(Duration::from_secs(30));
    assert!(
        agents_seen(&report).is_empty(),
        "{:?}",
        agents_seen(&report)
    );
    assert!(refusing.rooms().is_empty());
}

/// A Rust host's hook: takes sessions with the echo agent, counts them, keeps them.
struct Keeper {
    taken: AtomicUsize,
    sessions: std::sync::Mutex<Vec<(Value, Session)>>,
}

impl IncomingHandler for Keeper {
    fn on_session(&self, session: Session, info: &Value) -> voicebackend::Result<Accepted> {
        self.taken.fetch_add(1, Ordering::SeqCst);
        self.sessions.lock().unwrap().push((info.clone(), session));
        Ok(Accepted {
            agent: Some(common::echo_agent()),
            on_event: None,
        })
    }
}

#[test]
fn a_dispatched_session_reaches_a_rust_host_with_what_the_job_says() {
    let _shared = shared_machine();
    let server = LiveKitServer::start();
    let backend = Backend::from_json(&worker_json(&server, "{}")).unwrap();
    let keeper = Arc::new(Keeper {
        taken: AtomicUsize::new(0),
        sessions: std::sync::Mutex::new(Vec::new()),
    });
    backend.set_incoming(keeper.clone()).unwrap();
    backend.start().unwrap();
    let e = backend.set_incoming(keeper.clone()).unwrap_err();
    assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_STATE);
    let peer = user(&server, "rust-host", &[500], 4_000);
    wait_until(
        || "the session arrives".into(),
        Duration::from_secs(20),
        || keeper.taken.load(Ordering::SeqCst) == 1,
    );
    {
        let sessions = keeper.sessions.lock().unwrap();
        let (info, session) = &sessions[0];
        assert_eq!(info["source"], "livekit-dispatch");
        assert_eq!(info["room"], "rust-host");
        assert!(
            info["job_id"].as_str().unwrap().starts_with("AJ_"),
            "{info}"
        );
        assert_eq!(session.config().transport, "webrtc");
        assert_eq!(session.config().room.as_deref(), Some("rust-host"));
        assert_eq!(backend.active_sessions(), 1);
    }
    let report = peer.finish(Duration::from_secs(30));
    assert!(heard_a_reply_to(&report, 0));
    // The user left: the session stopped by itself; the host frees it.
    wait_until(
        || "the session ends".into(),
        Duration::from_secs(10),
        || {
            keeper.sessions.lock().unwrap()[0].1.state()
                == voicebackend::VbSessionState::VB_STATE_STOPPED
        },
    );
    keeper.sessions.lock().unwrap().clear();
    assert_eq!(backend.active_sessions(), 0);
    backend.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_worker_registers_again_when_its_connection_to_the_server_is_lost() {
    let _shared = shared_machine();
    let mut server = LiveKitServer::start();
    let port = server.port;
    let worker = WorkerProcess::registered("faithful", &worker_json(&server, "{}"));
    // The server goes away and comes back on the same port: the worker finds it again.
    server.kill();
    let server = LiveKitServer::start_on(port);
    // A room made while no worker is registered gets no agent (the server dispatches a room's
    // job once, when the room is made): the user comes once the worker is back.
    wait_until(
        || format!("the worker registers again: {}", server.log()),
        Duration::from_secs(30),
        || server.log().contains("worker registered"),
    );
    let peer = user(&server, "after-restart", &[500], 5_000);
    worker.wait_for(
        |l| l.starts_with("turn after-restart "),
        Duration::from_secs(40),
    );
    let report = peer.finish(Duration::from_secs(30));
    assert!(heard_a_reply_to(&report, 0));
}

#[test]
fn the_room_service_refuses_a_wrong_secret_as_unauthorized() {
    let _shared = shared_machine();
    let server = LiveKitServer::start();
    let config =
        worker_json(&server, "{}").replace(r#""api_secret":"secret""#, r#""api_secret":"wrong""#);
    let e = Backend::from_json(&config)
        .unwrap()
        .room_service()
        .unwrap()
        .list_rooms()
        .unwrap_err();
    assert_eq!(e.status(), VbStatus::VB_ERR_UNAUTHORIZED, "{e}");
    assert!(
        e.message()
            .starts_with("livekit: list_rooms at http://127.0.0.1:"),
        "{e}"
    );
    assert!(!e.message().contains("wrong"), "{e}");
}

#[test]
fn a_worker_whose_measured_load_is_over_its_threshold_gets_no_room() {
    // Alone: the busy worker's CPU and the other worker's rooms must not disturb other tests.
    let _alone = MACHINE.write().unwrap_or_else(|p| p.into_inner());
    let server = LiveKitServer::start();
    // The load a worker reports is its process's CPU time over wall time and cores: two
    // spinning threads put the busy one well over a quarter of the machine, with no job at all.
    let config = worker_json(&server, r#"{"load_threshold":0.25}"#);
    let busy = WorkerProcess::start_mode("busy", &config, Some("busy"));
    busy.wait_for(|l| l == "registered", Duration::from_secs(20));
    let idle = WorkerProcess::registered("idle", &config);
    // Let the busy worker report a measured load (every 2.5 s).
    std::thread::sleep(Duration::from_secs(3));
    let users: Vec<Peer> = (0..6)
        .map(|i| user(&server, &format!("load-{i}"), &[500], 4_000))
        .collect();
    wait_until(
        || {
            format!(
                "the idle worker takes six rooms (it took {:?}, the busy one {:?})",
                idle.rooms(),
                busy.rooms()
            )
        },
        Duration::from_secs(60),
        || idle.rooms().len() == 6,
    );
    assert!(busy.rooms().is_empty(), "{:?}", busy.lines());
    for peer in users {
        assert!(heard_a_reply_to(&peer.finish(Duration::from_secs(30)), 0));
    }
}

/// A Rust host whose hook panics on the first session and takes the next ones.
struct Clumsy {
    calls: AtomicUsize,
    kept: std::sync::Mutex<Vec<Session>>,
}

impl IncomingHandler for Clumsy {
    fn on_session(&self, session: Session, _: &Value) -> voicebackend::Result<Accepted> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("a bug in the host");
        }
        self.kept.lock().unwrap().push(session);
        Ok(Accepted {
            agent: Some(common::echo_agent()),
            on_event: None,
        })
    }
}

#[test]
fn a_host_hook_that_panics_fails_that_job_only_and_the_worker_takes_the_next() {
    let _shared = shared_machine();
    let server = LiveKitServer::start();
    let backend = Backend::from_json(&worker_json(&server, r#"{"max_jobs":1}"#)).unwrap();
    let host = Arc::new(Clumsy {
        calls: AtomicUsize::new(0),
        kept: std::sync::Mutex::new(Vec::new()),
    });
    backend.set_incoming(host.clone()).unwrap();
    backend.start().unwrap();
    let first = user(&server, "clumsy-1", &[500], 3_000);
    assert!(agents_seen(&first.finish(Duration::from_secs(30))).is_empty());
    // With max_jobs 1, a job left counted after the panic would keep the worker full.
    let second = user(&server, "clumsy-2", &[500], 4_000);
    assert!(heard_a_reply_to(&second.finish(Duration::from_secs(30)), 0));
    assert_eq!(host.calls.load(Ordering::SeqCst), 2);
    backend.stop(Duration::from_secs(5)).unwrap();
}
