//! Shared harness: the fixed inputs and ONNX Runtime (Python) references written by
//! scripts/gen_reference.py, timing statistics, and the comparison report. Every runtime binary
//! feeds the models exactly as /work/main/src/infer/{silero,smart_turn}.rs do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const WINDOW: usize = 512;
pub const CONTEXT: usize = 64;
pub const STREAMS: usize = 32;
pub const STEPS: usize = 320;
pub const N_MELS: usize = 80;
pub const FRAMES: usize = 800;

/// Warm-up and measured calls.
pub const SILERO_WARMUP: usize = 50;
pub const SILERO_B1_RUNS: usize = 1000;
pub const SILERO_B32_RUNS: usize = 320;
pub const ST_WARMUP: usize = 3;
pub const ST_RUNS: usize = 40;

pub fn site_packages() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/voicebackend/venv/lib/python3.11/site-packages")
}
pub fn silero_path() -> PathBuf {
    site_packages().join("pipecat/audio/vad/data/silero_vad.onnx")
}
pub fn smart_turn_path() -> PathBuf {
    site_packages().join("pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx")
}
/// data/ of the spike (the patched build's manifest lives one folder down).
pub fn data_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if here.join("data").is_dir() { here.join("data") } else { here.join("../data") }
}

pub fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(data_dir().join(name))
        .unwrap_or_else(|e| panic!("{name}: {e} (run scripts/gen_reference.py first)"));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub struct Data {
    /// [STREAMS][STEPS * WINDOW]
    pub streams: Vec<f32>,
    /// [STREAMS][STEPS], each stream alone.
    pub ref_b1: Vec<f32>,
    /// [STEPS][STREAMS], all streams batched.
    pub ref_b32: Vec<f32>,
    /// [N][80][800]
    pub st_features: Vec<f32>,
    /// [N]
    pub st_ref: Vec<f32>,
}

impl Data {
    pub fn load() -> Data {
        let d = Data {
            streams: read_f32("silero_streams.f32"),
            ref_b1: read_f32("silero_ref_b1.f32"),
            ref_b32: read_f32("silero_ref_b32.f32"),
            st_features: read_f32("st_features.f32"),
            st_ref: read_f32("st_ref.f32"),
        };
        assert_eq!(d.streams.len(), STREAMS * STEPS * WINDOW);
        assert_eq!(d.ref_b1.len(), STREAMS * STEPS);
        assert_eq!(d.ref_b32.len(), STREAMS * STEPS);
        assert_eq!(d.st_features.len(), d.st_ref.len() * N_MELS * FRAMES);
        d
    }
    pub fn window(&self, stream: usize, step: usize) -> &[f32] {
        let base = stream * STEPS * WINDOW + step * WINDOW;
        &self.streams[base..base + WINDOW]
    }
    pub fn st_count(&self) -> usize {
        self.st_ref.len()
    }
    pub fn st_block(&self, i: usize) -> &[f32] {
        &self.st_features[i * N_MELS * FRAMES..(i + 1) * N_MELS * FRAMES]
    }
}

/// One stream's memory between windows (as the engine's `SileroStream`).
#[derive(Clone)]
pub struct Stream {
    pub state: [f32; 256],
    pub context: [f32; CONTEXT],
}
impl Default for Stream {
    fn default() -> Self {
        Stream { state: [0.0; 256], context: [0.0; CONTEXT] }
    }
}

/// Builds the batch input `[B, 576]` and state `[2, B, 128]` exactly as the engine does.
pub fn pack(windows: &[&[f32]], streams: &[Stream], input: &mut Vec<f32>, state: &mut Vec<f32>) {
    input.clear();
    for (w, s) in windows.iter().zip(streams) {
        input.extend_from_slice(&s.context);
        input.extend_from_slice(w);
    }
    state.clear();
    for half in 0..2 {
        for s in streams {
            state.extend_from_slice(&s.state[half * 128..(half + 1) * 128]);
        }
    }
}

/// Carries `stateN` `[2, B, 128]` and the context back into the streams (as the engine does).
pub fn unpack(windows: &[&[f32]], next: &[f32], streams: &mut [Stream]) {
    let batch = streams.len();
    assert_eq!(next.len(), 2 * batch * 128);
    for (i, (w, s)) in windows.iter().zip(streams.iter_mut()).enumerate() {
        for half in 0..2 {
            let from = (half * batch + i) * 128;
            s.state[half * 128..(half + 1) * 128].copy_from_slice(&next[from..from + 128]);
        }
        s.context.copy_from_slice(&w[WINDOW - CONTEXT..]);
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Decisions (p > 0.5) that differ.
pub fn flips(a: &[f32], b: &[f32]) -> usize {
    a.iter().zip(b).filter(|(x, y)| (**x > 0.5) != (**y > 0.5)).count()
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub struct Stats {
    pub median_us: f64,
    pub p10_us: f64,
    pub p90_us: f64,
    pub n: usize,
}
pub fn stats(mut d: Vec<Duration>) -> Stats {
    d.sort();
    let us = |x: Duration| x.as_secs_f64() * 1e6;
    let n = d.len();
    Stats { median_us: us(d[n / 2]), p10_us: us(d[n / 10]), p90_us: us(d[n * 9 / 10]), n }
}

pub fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

/// One line of the report: `RESULT runtime model key=value ...`.
pub fn report(runtime: &str, model: &str, fields: &[(&str, String)]) {
    let mut line = format!("RESULT {runtime} {model}");
    for (k, v) in fields {
        line.push_str(&format!(" {k}={v}"));
    }
    println!("{line}");
}

/// The common flow for every runtime: `b1` runs one Silero call on `(input [B,576], state
/// [2,B,128])` returning `(probs [B], stateN [2,B,128])` for a batch of 1 or 32 through the
/// runtime's model for that batch; `st` one Smart Turn call on `[1,80,800]`.
pub fn run_silero(
    runtime: &str,
    label: &str,
    batch: usize,
    load: Duration,
    data: &Data,
    mut call: impl FnMut(&[f32], &[f32]) -> (Vec<f32>, Vec<f32>),
) {
    let mut input = Vec::new();
    let mut state = Vec::new();
    // Correctness: the whole 10.24 s of every stream, state and context carried.
    let mut probs = vec![0f32; STREAMS * STEPS];
    let groups: Vec<Vec<usize>> = if batch == 1 {
        (0..STREAMS).map(|s| vec![s]).collect()
    } else {
        assert_eq!(batch, STREAMS);
        vec![(0..STREAMS).collect()]
    };
    for group in &groups {
        let mut streams = vec![Stream::default(); group.len()];
        for t in 0..STEPS {
            let windows: Vec<&[f32]> = group.iter().map(|&s| data.window(s, t)).collect();
            pack(&windows, &streams, &mut input, &mut state);
            let (p, next) = call(&input, &state);
            assert_eq!(p.len(), group.len());
            for (k, &s) in group.iter().enumerate() {
                // Stored [STREAMS][STEPS] in both cases.
                probs[s * STEPS + t] = p[k];
            }
            unpack(&windows, &next, &mut streams);
        }
    }
    // Reference in the same [STREAMS][STEPS] layout.
    let reference: Vec<f32> = if batch == 1 {
        data.ref_b1.clone()
    } else {
        let mut r = vec![0f32; STREAMS * STEPS];
        for t in 0..STEPS {
            for s in 0..STREAMS {
                r[s * STEPS + t] = data.ref_b32[t * STREAMS + s];
            }
        }
        r
    };
    let diff = max_abs_diff(&probs, &reference);
    let diff_stream0 = max_abs_diff(&probs[..STEPS], &reference[..STEPS]);
    let flipped = flips(&probs, &reference);
    // Speed: real windows of stream 0 (or all streams), state carried, after warm-up.
    let group: Vec<usize> = if batch == 1 { vec![0] } else { (0..STREAMS).collect() };
    let runs = if batch == 1 { SILERO_B1_RUNS } else { SILERO_B32_RUNS };
    let mut streams = vec![Stream::default(); group.len()];
    let mut times = Vec::with_capacity(runs);
    let before = loadavg();
    for i in 0..SILERO_WARMUP + runs {
        let t = i % STEPS;
        let windows: Vec<&[f32]> = group.iter().map(|&s| data.window(s, t)).collect();
        let started = std::time::Instant::now();
        pack(&windows, &streams, &mut input, &mut state);
        let (_, next) = call(&input, &state);
        unpack(&windows, &next, &mut streams);
        if i >= SILERO_WARMUP {
            times.push(started.elapsed());
        }
    }
    let s = stats(times);
    report(
        runtime,
        label,
        &[
            ("batch", batch.to_string()),
            ("windows_compared", (STREAMS * STEPS).to_string()),
            ("max_abs_diff", format!("{diff:.3e}")),
            ("max_abs_diff_stream0", format!("{diff_stream0:.3e}")),
            ("decision_flips", flipped.to_string()),
            ("median_us_per_call", format!("{:.1}", s.median_us)),
            ("median_us_per_window", format!("{:.2}", s.median_us / batch as f64)),
            ("p10_us", format!("{:.1}", s.p10_us)),
            ("p90_us", format!("{:.1}", s.p90_us)),
            ("runs", s.n.to_string()),
            ("load_ms", format!("{:.1}", load.as_secs_f64() * 1e3)),
            ("loadavg_before", format!("\"{before}\"")),
            ("loadavg_after", format!("\"{}\"", loadavg())),
        ],
    );
}

pub fn run_smart_turn(
    runtime: &str,
    load: Duration,
    data: &Data,
    mut call: impl FnMut(&[f32]) -> f32,
) {
    let n = data.st_count();
    let probs: Vec<f32> = (0..n).map(|i| call(data.st_block(i))).collect();
    let diff = max_abs_diff(&probs, &data.st_ref);
    let flipped = flips(&probs, &data.st_ref);
    let mut times = Vec::new();
    let before = loadavg();
    for i in 0..ST_WARMUP + ST_RUNS {
        let (_, d) = time(|| call(data.st_block(i % n)));
        if i >= ST_WARMUP {
            times.push(d);
        }
    }
    let s = stats(times);
    report(
        runtime,
        "smart_turn",
        &[
            ("batch", "1".into()),
            ("inputs_compared", n.to_string()),
            ("max_abs_diff", format!("{diff:.3e}")),
            ("decision_flips", flipped.to_string()),
            ("probs", format!("{:?}", probs.iter().map(|p| (p * 1e4).round() / 1e4).collect::<Vec<_>>()).replace(' ', "")),
            ("median_us_per_call", format!("{:.0}", s.median_us)),
            ("p10_us", format!("{:.0}", s.p10_us)),
            ("p90_us", format!("{:.0}", s.p90_us)),
            ("runs", s.n.to_string()),
            ("load_ms", format!("{:.1}", load.as_secs_f64() * 1e3)),
            ("loadavg_before", format!("\"{before}\"")),
            ("loadavg_after", format!("\"{}\"", loadavg())),
        ],
    );
}
