//! Finds the first tract declutter patch after which Smart Turn's output leaves the un-decluttered
//! model's (bisection over `Optimizer::declutter().stopping_at(n)`), on features whose ONNX
//! Runtime output is stable across ORT's optimization levels (the random block: 0.978 at every
//! level). Prints the patch's name from tract's own debug log.

use std::collections::HashMap;
use std::sync::Mutex;

use tract_compare::*;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::optim::Optimizer;

static LAST: Mutex<Vec<String>> = Mutex::new(Vec::new());
struct Capture;
impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Debug
    }
    fn log(&self, r: &log::Record) {
        let s = r.args().to_string();
        if s.starts_with("applying patch") {
            LAST.lock().unwrap().push(s);
        }
    }
    fn flush(&self) {}
}

fn typed() -> TypedModel {
    let model = onnx().model_for_path(smart_turn_path()).unwrap();
    let s6 = model.sym("s6");
    model.into_typed().unwrap().set_symbols(&HashMap::from([(s6, 1i64.into())])).unwrap()
}

fn output(model: TypedModel, feats: &[f32]) -> f32 {
    let plan = model.into_runnable().unwrap();
    let x = Tensor::from_shape(&[1, N_MELS, FRAMES], feats).unwrap();
    let out = plan.run(tvec![x.into_tvalue()]).unwrap();
    out[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap()[0]
}

fn main() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    let data = Data::load();
    let block = data.st_count() - 2; // the first random block
    let feats = data.st_block(block).to_vec();
    let base = output(typed(), &feats);
    let mut full = typed();
    LAST.lock().unwrap().clear();
    Optimizer::declutter().optimize(&mut full).unwrap();
    let total = LAST.lock().unwrap().len();
    let end = output(full, &feats);
    println!("typed-only output {base:.4}; fully decluttered {end:.4}; declutter applies {total} patches");
    let bad = |n: usize| {
        let mut m = typed();
        Optimizer::declutter().stopping_at(n).optimize(&mut m).unwrap();
        let y = output(m, &feats);
        println!("  stopping_at({n}) -> {y:.4}");
        (y - base).abs() > 0.05
    };
    let (mut lo, mut hi) = (0usize, total); // bad(lo) false, bad(hi) true
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if bad(mid) { hi = mid } else { lo = mid }
    }
    LAST.lock().unwrap().clear();
    let mut m = typed();
    Optimizer::declutter().stopping_at(hi).optimize(&mut m).unwrap();
    let log = LAST.lock().unwrap();
    println!("first bad patch: #{} of {total}: {}", hi - 1, log.last().cloned().unwrap_or_default());
}
