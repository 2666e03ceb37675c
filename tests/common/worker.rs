//! LiveKit agent workers as separate OS processes: `tests/c/livekit_worker.c`, a C host of the
//! library (`vb_backend_set_incoming`), compiled against the library this test run built. Each
//! prints one line per fact (`registered`, `job ROOM ID`, `turn ROOM TEXT`, `ended ROOM`,
//! `refused ROOM`, `drained`), which the tests read.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The C worker host, built once per test process.
fn program() -> &'static PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("livekit-worker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // This test executable sits in target/<profile>/deps, beside the cdylib cargo built
        // for this run (with the test providers). A private copy: another cargo run may rewrite
        // the original while workers run.
        let exe = std::env::current_exe().unwrap();
        let deps = exe.parent().unwrap();
        let built = [deps.to_path_buf(), deps.parent().unwrap().to_path_buf()]
            .iter()
            .map(|d| d.join("libvoicebackend.so"))
            .find(|p| p.is_file())
            .expect("libvoicebackend.so next to the test executable");
        std::fs::copy(&built, dir.join("libvoicebackend.so")).unwrap();
        let soname = dir.join("libvoicebackend.so.0");
        if std::fs::symlink_metadata(&soname).is_err() {
            std::os::unix::fs::symlink("libvoicebackend.so", &soname).unwrap();
        }
        let program = dir.join("livekit_worker");
        let out = Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
            .arg(manifest.join("include"))
            .arg(manifest.join("tests/c/livekit_worker.c"))
            .arg("-o")
            .arg(&program)
            .arg(format!("-L{}", dir.display()))
            .arg("-lvoicebackend")
            .arg(format!("-Wl,-rpath,{}", dir.display()))
            .args(["-lpthread", "-lm"])
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "compiling tests/c/livekit_worker.c: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        program
    })
}

/// A worker process.
pub struct WorkerProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: PathBuf,
    /// Its name in messages.
    pub name: String,
}

impl WorkerProcess {
    /// Starts a worker host with `backend_json` (plus a session store of its own: a store file
    /// belongs to one process; other `persistence` keys, such as `shared_dir`, are kept);
    /// `refuse`: it refuses every session.
    pub fn start(name: &str, backend_json: &str, refuse: bool) -> WorkerProcess {
        WorkerProcess::start_mode(name, backend_json, refuse.then_some("refuse"))
    }

    /// Starts a worker host in `mode` (`"refuse"`: it refuses every session; `"busy"`: two of its
    /// threads burn CPU).
    pub fn start_mode(name: &str, backend_json: &str, mode: Option<&str>) -> WorkerProcess {
        let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let stderr = scratch.join(format!("{}-worker-{name}.log", std::process::id()));
        let store = scratch.join(format!("{}-worker-{name}.redb", std::process::id()));
        let _ = std::fs::remove_file(&store);
        let mut config: serde_json::Value =
            serde_json::from_str(backend_json).expect("a JSON object");
        let persistence = config
            .as_object_mut()
            .expect("a JSON object")
            .entry("persistence")
            .or_insert_with(|| serde_json::json!({}));
        persistence["path"] = store.display().to_string().into();
        let backend_json = config.to_string();
        let mut command = Command::new(program());
        command
            .arg(backend_json)
            .args(mode)
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let mut child = command.spawn().expect("start the C worker host");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                sink.lock().unwrap().push(line);
            }
        });
        WorkerProcess {
            child,
            lines,
            stderr,
            name: name.to_owned(),
        }
    }

    /// Starts a worker and waits until it has registered.
    pub fn registered(name: &str, backend_json: &str) -> WorkerProcess {
        let worker = WorkerProcess::start(name, backend_json, false);
        worker.wait_for(|l| l == "registered", Duration::from_secs(20));
        worker
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Rooms of the jobs it took so far (`job ROOM ID` lines).
    pub fn rooms(&self) -> Vec<String> {
        self.words_after("job ")
    }

    /// First words after `prefix` of its lines (the room of `job`, `turn`, `ended` lines).
    pub fn words_after(&self, prefix: &str) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|rest| rest.split(' ').next().unwrap_or_default().to_owned())
            .collect()
    }

    /// Waits for a line matching `found`; panics with what it printed after `patience`.
    pub fn wait_for(&self, found: impl Fn(&str) -> bool, patience: Duration) -> String {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| found(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "worker {} did not print the line in {patience:?}; it printed {:?}; stderr: {}",
                self.name,
                self.lines(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it wrote to stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends SIGTERM (the host drains and exits).
    pub fn terminate(&self) {
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// Kills it with SIGKILL: no goodbye to the server.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for it to exit.
    pub fn wait_exit(&mut self, patience: Duration) -> ExitStatus {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker {} did not exit in {patience:?}: {:?}",
                self.name,
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
