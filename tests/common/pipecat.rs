//! The Pipecat test bot (`tests/pipecat/bot.py`, a real pipecat-ai 1.14.0 pipeline) as a child
//! process on 127.0.0.1, run by the venv's Python that `scripts/setup.sh` installs
//! (`~/.cache/voicebackend/venv`, or `VB_PYTHON`). Dropping the handle kills the bot, also when
//! a test fails.
//!
//! ```ignore
//! let bot = common::pipecat::PipecatBot::start();   // waits until it listens
//! let json = format!(r#"{{"provider":"pipecat","provider_config":{{"pipecat_url":"{}"}}}}"#, bot.url());
//! ```
//!
//! The bot answers each user turn with "You said: <transcript>" spoken by eSpeak NG: as the
//! text of a stand-in LLM, or (`start_with(&["--answer", "speak"])`) as speech alone.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The longest a bot may take to start listening (Python imports, loading Whisper and Silero).
pub const STARTUP_PATIENCE: Duration = Duration::from_secs(180);

/// What the bot says to each user turn: the rule of `reply_to` in `tests/pipecat/bot.py`.
pub fn bot_reply(transcript: &str) -> String {
    format!("You said: {}", transcript.trim())
}

/// A running bot.
pub struct PipecatBot {
    child: Child,
    port: u16,
    lines: Receiver<String>,
    log: PathBuf,
}

impl PipecatBot {
    /// Starts a bot on a free loopback port and waits until it listens.
    pub fn start() -> PipecatBot {
        PipecatBot::start_on(free_port())
    }

    /// Starts a bot with the options `args` of `tests/pipecat/bot.py` (`--answer speak`,
    /// `--raw-text`) on a free loopback port and waits until it listens.
    pub fn start_with(args: &[&str]) -> PipecatBot {
        PipecatBot::spawn(free_port(), args)
    }

    /// Starts a bot on `port` (e.g. the port of a bot that was killed) and waits until it
    /// listens.
    pub fn start_on(port: u16) -> PipecatBot {
        PipecatBot::spawn(port, &[])
    }

    fn spawn(port: u16, args: &[&str]) -> PipecatBot {
        let python = python();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pipecat/bot.py");
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("pipecat-bot-{port}-{}.log", std::process::id()));
        let stderr = std::fs::File::create(&log).expect("creating the bot's log file");
        let mut child = Command::new(&python)
            .arg(script)
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let bot = PipecatBot {
            child,
            port,
            lines,
            log,
        };
        bot.wait_for_line("READY", STARTUP_PATIENCE);
        bot
    }

    /// The bot's WebSocket URL.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The bot's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits until the bot reports a client connection (`CONNECTED` on its stdout).
    pub fn wait_for_client(&self) {
        self.wait_for_line("CONNECTED", super::PATIENCE);
    }

    /// Kills the bot at once (to its client, a crash).
    pub fn kill(mut self) {
        self.stop();
    }

    fn wait_for_line(&self, prefix: &str, patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!(
                    "the Pipecat bot did not print {prefix} within {patience:?}; its log: {}",
                    self.log.display()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the Pipecat bot exited before printing {prefix}; its log: {}",
                    self.log.display()
                ),
            }
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PipecatBot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The venv's Python (`VB_PYTHON` overrides); a clear failure when it is missing.
pub fn python() -> PathBuf {
    venv_python("VB_PYTHON", "venv", "pipecat-ai", "scripts/setup.sh")
}

/// The Python of the venv `~/.cache/voicebackend/<venv>` (`env_var` overrides); a clear failure
/// naming what it should hold (`holds`) and what installs it (`installer`) when it is missing.
pub fn venv_python(env_var: &str, venv: &str, holds: &str, installer: &str) -> PathBuf {
    let python = std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(format!(".cache/voicebackend/{venv}/bin/python"))
        });
    assert!(
        python.exists(),
        "no Python with {holds} at {} (run {installer}, or set {env_var})",
        python.display()
    );
    python
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a loopback port")
        .port()
}
