//! ONNX Runtime through the `ort` crate exactly as the engine uses it (/work/main/src/infer/):
//! load-dynamic against the PyPI wheel's libonnxruntime.so, Level3 graph optimizations, one
//! intra-op and one inter-op thread, one session per model (Silero's takes any batch).

use std::path::PathBuf;
use std::time::Instant;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;
use tract_compare::*;

fn open(path: &std::path::Path) -> Session {
    Session::builder()
        .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3))
        .and_then(|b| b.with_intra_threads(1))
        .and_then(|b| b.with_inter_threads(1))
        .and_then(|b| b.commit_from_file(path))
        .expect("session")
}

fn main() {
    let data = Data::load();
    let lib = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| site_packages().join("onnxruntime/capi/libonnxruntime.so.1.32.0"));
    let (_, init) = time(|| ort::init_from(lib.to_string_lossy()).with_name("bench").commit().expect("ort init"));
    println!("ort 2.0.0-rc.10 load-dynamic, library {} (dlopen+init {:.1} ms); loadavg {}", lib.display(), init.as_secs_f64() * 1e3, loadavg());

    let started = Instant::now();
    let mut silero = open(&silero_path());
    let load = started.elapsed();
    for batch in [1usize, 32] {
        let label = format!("silero_b{batch}");
        run_silero("ort", &label, batch, load, &data, |input, st| {
            let x = TensorRef::from_array_view(([batch, CONTEXT + WINDOW], input)).unwrap();
            let s = TensorRef::from_array_view(([2, batch, 128], st)).unwrap();
            let sr = ort::value::Tensor::from_array(((), vec![16000i64])).unwrap();
            let out = silero.run(ort::inputs!["input" => x, "state" => s, "sr" => sr]).unwrap();
            let (_, p) = out["output"].try_extract_tensor::<f32>().unwrap();
            let (_, n) = out["stateN"].try_extract_tensor::<f32>().unwrap();
            (p.to_vec(), n.to_vec())
        });
    }

    let started = Instant::now();
    let mut st = open(&smart_turn_path());
    let load = started.elapsed();
    run_smart_turn("ort", load, &data, |feats| {
        let x = TensorRef::from_array_view(([1usize, N_MELS, FRAMES], feats)).unwrap();
        let out = st.run(ort::inputs!["input_features" => x]).unwrap();
        let (_, p) = out["logits"].try_extract_tensor::<f32>().unwrap();
        p[0]
    });
}
