//! `voicebackend serve` as the direct WebRTC tests run it: the CLI on 127.0.0.1 with a free port,
//! its URL read from what it prints, its output kept for failure messages, killed when dropped;
//! and the question the peers speak (eSpeak NG, as the demo makes its sentences).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A running `voicebackend serve`.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    output: Arc<Mutex<String>>,
}

impl Served {
    /// Starts `voicebackend serve --port 0` with `extra` arguments; panics unless it prints its
    /// URL within a minute.
    pub fn start(extra: &[&str]) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_voicebackend"))
            .args(["serve", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run voicebackend serve");
        let output = Arc::new(Mutex::new(String::new()));
        let (url_tx, url_rx) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let kept = output.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("serve: open ") {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = url_tx.send(url.trim_end_matches('/').to_owned());
                }
                let mut kept = kept.lock().unwrap();
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let kept = output.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut kept = kept.lock().unwrap();
                kept.push_str("stderr: ");
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        let url = url_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "voicebackend serve printed no URL: {}",
                    output.lock().unwrap()
                )
            });
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Served { child, url, output }
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of the test's own under the target directory.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `text` spoken by eSpeak NG (50 ms between words, which Whisper tiny.en hears well), with
/// `lead_ms` of silence before and `tail_ms` after, as a 16 kHz WAV file at `path`.
pub fn spoken_wav(path: &Path, text: &str, lead_ms: u32, tail_ms: u32) {
    let raw = path.with_extension("raw.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-g", "5", "-w"])
        .arg(&raw)
        .arg(text)
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "espeak-ng failed (run scripts/setup.sh)"
    );
    let mut reader = hound::WavReader::open(&raw).unwrap();
    let rate = reader.spec().sample_rate;
    let speech: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let speech = voicebackend::dsp::resample::StreamResampler::convert(&speech, rate, 16000);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    let silence = |ms: u32| std::iter::repeat_n(0i16, (ms * 16) as usize);
    for s in silence(lead_ms).chain(speech).chain(silence(tail_ms)) {
        writer.write_sample(s).unwrap();
    }
    writer.finalize().unwrap();
    let _ = std::fs::remove_file(raw);
}

/// Whether a test that needs `what` (absent here) may skip: only outside CI, and loudly; under
/// `CI=true` it fails instead.
pub fn skip_without(what: &str, how: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is missing under CI=true: {how}");
    }
    eprintln!(
        "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED: {what} is missing ({how}); this test did NOT run\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    true
}
