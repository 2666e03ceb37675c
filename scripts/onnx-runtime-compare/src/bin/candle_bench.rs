//! candle-onnx (pure Rust, the graph interpreted by `simple_eval` on every call) on the same
//! inputs. One thread: RAYON_NUM_THREADS=1 is set before candle starts its pool.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use tract_compare::*;

fn main() {
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let data = Data::load();
    let dev = Device::Cpu;
    println!("candle-onnx 0.11.1; loadavg {}", loadavg());

    let started = Instant::now();
    let silero = candle_onnx::read_file(silero_path()).expect("read silero");
    let load = started.elapsed();
    for batch in [1usize, 32] {
        let label = format!("silero_b{batch}");
        let mut failed = false;
        run_silero("candle-onnx", &label, batch, load, &data, |input, st| {
            if failed {
                return (vec![0.0; batch], st.to_vec());
            }
            let inputs = HashMap::from([
                ("input".to_string(), Tensor::from_slice(input, (batch, CONTEXT + WINDOW), &dev).unwrap()),
                ("state".to_string(), Tensor::from_slice(st, (2, batch, 128), &dev).unwrap()),
                ("sr".to_string(), Tensor::new(16000i64, &dev).unwrap()),
            ]);
            match candle_onnx::simple_eval(&silero, inputs) {
                Ok(out) => (
                    out["output"].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    out["stateN"].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                ),
                Err(e) => {
                    println!("FAIL candle-onnx {label} run: {e}");
                    std::process::exit(1);
                }
            }
        });
    }

    let started = Instant::now();
    let st = candle_onnx::read_file(smart_turn_path()).expect("read smart turn");
    let load = started.elapsed();
    run_smart_turn("candle-onnx", load, &data, |feats| {
        let x = Tensor::from_slice(feats, (1, N_MELS, FRAMES), &dev).unwrap();
        match candle_onnx::simple_eval(&st, HashMap::from([("input_features".to_string(), x)])) {
            Ok(out) => out["logits"].flatten_all().unwrap().to_vec1::<f32>().unwrap()[0],
            Err(e) => {
                println!("FAIL candle-onnx smart_turn run: {e}");
                std::process::exit(1);
            }
        }
    });
}
