//! Real LiveKit peers for the tests, all on 127.0.0.1:
//!
//! - [`LiveKitServer`]: livekit-server v1.13.5 (installed by `scripts/livekit-server.sh`) as a
//!   child process with a loopback-only config, on free ports; killed when dropped.
//! - [`Peer`]: the user's side, `tests/livekit/peer` (LiveKit's own Go SDK, pion WebRTC): speaks
//!   WAV files, records what it hears, reports what the agent sent as JSON.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The API key and secret of every test server.
pub const API_KEY: &str = "devkey";
/// See [`API_KEY`].
pub const API_SECRET: &str = "secret";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-{name}", std::process::id()))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The livekit-server binary (built once per machine by the script).
fn server_binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(repo("scripts/livekit-server.sh"))
            .arg("path")
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/livekit-server.sh");
        assert!(
            out.status.success(),
            "livekit-server could not be installed"
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// A running livekit-server.
pub struct LiveKitServer {
    child: Child,
    /// Its signal port.
    pub port: u16,
    /// Where its config and log are.
    pub dir: PathBuf,
}

impl LiveKitServer {
    /// Starts a server on a free port with its own UDP range; waits until it answers.
    pub fn start() -> LiveKitServer {
        LiveKitServer::start_on(free_port())
    }

    /// Starts a server with `extra` lines of its YAML configuration (e.g. `room:` settings).
    pub fn start_configured(extra: &str) -> LiveKitServer {
        let server = LiveKitServer::start();
        if extra.is_empty() {
            return server;
        }
        let mut server = server;
        server.kill();
        let config = server.dir.join("livekit.yaml");
        let yaml = std::fs::read_to_string(&config).unwrap() + extra;
        std::fs::write(&config, yaml).unwrap();
        server.respawn();
        server
    }

    /// Starts a server on `port` (a server restarted on the port of one that was killed).
    pub fn start_on(port: u16) -> LiveKitServer {
        // 2 UDP ports per participant (publisher and subscriber connections); ranges of 200 per
        // server, distinct within this process and, by its id, across test processes.
        static NEXT_RANGE: AtomicU16 = AtomicU16::new(0);
        let slot = NEXT_RANGE.fetch_add(1, Ordering::Relaxed) % 40;
        let base = 30000 + (std::process::id() % 5) as u16 * 8000 + slot * 200;
        LiveKitServer::start_with(port, base, base + 199)
    }

    /// Starts a server for `participants` at once (a load test), alone on this machine's UDP
    /// ports 20000 and up.
    pub fn start_for(participants: u16) -> LiveKitServer {
        LiveKitServer::start_with(free_port(), 20000, 20000 + participants * 2 + 20)
    }

    fn start_with(port: u16, base: u16, last: u16) -> LiveKitServer {
        let dir = tmp(&format!("livekit-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "port: {port}\nbind_addresses: [127.0.0.1]\nkeys:\n  {API_KEY}: {API_SECRET}\n\
             rtc:\n  port_range_start: {base}\n  port_range_end: {}\n  tcp_port: 0\n  \
             use_external_ip: false\n  node_ip: 127.0.0.1\n  enable_loopback_candidate: true\n  \
             ips:\n    includes: [127.0.0.1/32]\n  use_mdns: false\n  stun_servers: [127.0.0.1:3478]\n\
             turn:\n  enabled: false\nlogging:\n  level: info\n",
            last
        );
        std::fs::write(dir.join("livekit.yaml"), config).unwrap();
        let child = spawn_server(&dir);
        let server = LiveKitServer { child, port, dir };
        server.wait_until_listening();
        server
    }

    /// Starts the server again with its (maybe changed) configuration.
    fn respawn(&mut self) {
        self.child = spawn_server(&self.dir);
        self.wait_until_listening();
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "livekit-server did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Kills the server at once (a crash, as a client sees it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LiveKitServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_server(dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    Command::new(server_binary())
        .arg("--config")
        .arg(dir.join("livekit.yaml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start livekit-server")
}

/// The `livekit` backend config for `url`, with `extra` keys after the provider's.
pub fn backend_json(url: &str, extra: &str) -> String {
    format!(
        r#"{{"provider":"livekit","provider_config":{{"url":"{url}","api_key":"{API_KEY}","api_secret":"{API_SECRET}"}}{extra}}}"#
    )
}

/// The agent's identity in the rooms.
pub const AGENT: &str = "voicebackend-agent";

/// A `webrtc` session of `user` in `room`.
pub fn webrtc_session(room: &str, user: &str) -> voicebackend::SessionConfig {
    voicebackend::SessionConfig {
        transport: "webrtc".into(),
        room: Some(room.into()),
        user_id: user.into(),
        ..voicebackend::SessionConfig::default()
    }
}

/// A started livekit backend on `url` with the embedded providers and `extra` config keys.
pub fn test_livekit_backend(url: &str, extra: &str) -> voicebackend::Backend {
    let backend = voicebackend::Backend::from_json(&backend_json(
        url,
        &format!(r#","stt_provider":"whisper","tts_provider":"espeak"{extra}"#),
    ))
    .unwrap();
    backend.start().unwrap();
    backend
}

/// eSpeak NG speech of `text` as a WAV file for the peer.
pub fn spoken(name: &str, text: &str) -> PathBuf {
    wav(name, &super::espeak_speech(text, "en-us"), 16000)
}

/// `file` to be spoken `ms` after the peer starts (its `--speak` argument).
pub fn at(file: &Path, ms: u32) -> String {
    format!("{}@{ms}", file.display())
}

/// The Go peer's binary (built once per test process by its script; ~5 s when up to date).
fn peer_binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(repo("tests/livekit/peer/build.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/livekit/peer/build.sh");
        assert!(out.status.success(), "the Go test peer did not build");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// Writes mono 16-bit `pcm` at `rate` to a WAV file named after `name` and returns its path.
pub fn wav(name: &str, pcm: &[i16], rate: u32) -> PathBuf {
    let path = tmp(&format!("{name}.wav"));
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for &s in pcm {
        writer.write_sample(s).unwrap();
    }
    writer.finalize().unwrap();
    path
}

/// A running Go peer (the user).
pub struct Peer {
    child: Child,
    /// Its report (written when it ends).
    pub report: PathBuf,
    /// Its recording of what it heard (48 kHz mono), when asked for.
    pub record: PathBuf,
    name: String,
}

impl Peer {
    /// Starts the peer as `identity` in `room` on `server` with more `args` (`--speak FILE@MS`,
    /// `--until-attribute …`, `--duration-ms …`, `--loss …`).
    pub fn start(server: &LiveKitServer, room: &str, identity: &str, args: &[&str]) -> Peer {
        let name = format!("{room}-{identity}");
        let report = tmp(&format!("peer-{name}.json"));
        let record = tmp(&format!("peer-{name}.wav"));
        let log = std::fs::File::create(tmp(&format!("peer-{name}.log"))).unwrap();
        let child = Command::new(peer_binary())
            .args([
                "--url",
                &server.url(),
                "--room",
                room,
                "--identity",
                identity,
            ])
            .args(["--api-key", API_KEY, "--api-secret", API_SECRET])
            .arg("--report")
            .arg(&report)
            .arg("--record")
            .arg(&record)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the Go peer");
        Peer {
            child,
            report,
            record,
            name,
        }
    }

    /// Waits for the peer to end (at most `patience`) and returns its report.
    pub fn finish(mut self, patience: Duration) -> Value {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let report = std::fs::read_to_string(&self.report).unwrap_or_default();
                let value: Value = serde_json::from_str(&report).unwrap_or(Value::Null);
                assert!(
                    !value.is_null(),
                    "the peer wrote no report (exit {status}): {}",
                    self.log()
                );
                return value;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the peer did not end within {patience:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(tmp(&format!("peer-{}.log", self.name))).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// CPU seconds process `pid` has used so far (user + system, from /proc), 0 once it is gone.
pub fn cpu_seconds_of(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a mono WAV file.
pub fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let mut reader = hound::WavReader::open(path).expect("a WAV recording");
    let rate = reader.spec().sample_rate;
    (reader.samples::<i16>().map(Result::unwrap).collect(), rate)
}

/// Text streams in a peer report sent by `sender` on `lk.transcription`.
pub fn transcriptions<'a>(report: &'a Value, sender: &str) -> Vec<&'a Value> {
    report["text_streams"]
        .as_array()
        .map(|streams| {
            streams
                .iter()
                .filter(|s| s["sender"] == sender && s["topic"] == "lk.transcription")
                .collect()
        })
        .unwrap_or_default()
}

/// The values `identity`'s attribute `key` took, in order, as a peer saw them.
pub fn attribute_values(report: &Value, identity: &str, key: &str) -> Vec<String> {
    report["attribute_changes"]
        .as_array()
        .map(|changes| {
            changes
                .iter()
                .filter(|c| c["identity"] == identity && c["key"] == key)
                .filter_map(|c| c["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Records what a media session's agent says (`read_audio` gives a copy) until finished.
pub struct AgentRecorder {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<i16>>,
}

impl AgentRecorder {
    /// Stops and returns the agent's audio (48 kHz).
    pub fn finish(self) -> Vec<i16> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap()
    }
}

/// Starts recording what `session`'s agent says, on a thread of its own.
pub fn record_agent(session: std::sync::Arc<voicebackend::Session>) -> AgentRecorder {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0i16; 4800];
        while !flag.load(Ordering::Acquire) {
            match session.read_audio(&mut buf) {
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        all
    });
    AgentRecorder { stop, thread }
}

/// How alike `reference` and `recording` are: the Go peer's cross-correlation (`lk-peer
/// analyze`), 1.0 for the same audio.
pub fn compare(reference: &Path, recording: &Path) -> f64 {
    let out = Command::new(peer_binary())
        .arg("analyze")
        .arg("--ref")
        .arg(reference)
        .arg("--rec")
        .arg(recording)
        .output()
        .expect("run lk-peer analyze");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "lk-peer analyze: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    result["correlation"].as_f64().expect("a correlation")
}

/// A TCP proxy in front of a server's signal port, whose connections a test can cut (a dropped
/// signal connection, as a client sees it; media goes to the server directly).
pub struct CuttableProxy {
    /// Where clients connect.
    pub port: u16,
    connections: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CuttableProxy {
    /// Forwards 127.0.0.1:`port` to 127.0.0.1:`target`.
    pub fn start(target: u16) -> CuttableProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (kept, count) = (connections.clone(), accepted.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                kept.lock().unwrap().extend([client, server]);
            }
        });
        CuttableProxy {
            port,
            connections,
            accepted,
        }
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Cuts every connection open now (both ends see the socket close).
    pub fn cut(&self) {
        for stream in self.connections.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Connections made through the proxy so far.
    pub fn connections_made(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Calls LiveKit's room service (Twirp, JSON) on `server` with an admin token for `room`.
pub fn room_service(server: &LiveKitServer, method: &str, room: &str, body: Value) {
    use livekit_api::access_token::{AccessToken, VideoGrants};
    let token = AccessToken::with_api_key(API_KEY, API_SECRET)
        .with_grants(VideoGrants {
            room_create: true,
            room_admin: true,
            room: room.to_owned(),
            ..VideoGrants::default()
        })
        .to_jwt()
        .unwrap();
    let url = format!(
        "http://127.0.0.1:{}/twirp/livekit.RoomService/{method}",
        server.port
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map(|r| r.status())
    });
    assert!(
        status.as_ref().is_ok_and(|s| s.is_success()),
        "{method}: {status:?}"
    );
}

/// Deletes `room` on `server`.
pub fn delete_room(server: &LiveKitServer, room: &str) {
    room_service(
        server,
        "DeleteRoom",
        room,
        serde_json::json!({ "room": room }),
    );
}
