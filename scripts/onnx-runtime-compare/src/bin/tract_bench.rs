//! tract (pure Rust) on Silero VAD v5 (batch 1 and 32) and Smart Turn v3.2 (batch 1), fed as the
//! engine feeds ONNX Runtime; compared with ONNX Runtime's outputs saved by gen_reference.py.
//! Several ways of loading are tried in order; each failure is printed with tract's error chain.
//! `tract_bench [silero1|silero32|smart_turn]` runs one part only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tract_compare::*;
use tract_onnx::prelude::*;

type Plan = TypedSimplePlan;

/// Names and counts of the ops left in an optimized model (one line).
fn op_summary(model: &TypedModel) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for n in model.nodes() {
        *counts.entry(n.op().name().to_string()).or_default() += 1;
    }
    counts.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(",")
}

/// Silero with `sr` replaced by the constant 16000 (dropped from the inputs), so that the
/// model's top-level If on the sample rate can fold away.
fn silero_sr_const() -> TractResult<InferenceModel> {
    let mut model = onnx().model_for_path(silero_path())?;
    let sr = model.node_id_by_name("sr")?;
    let outlets: Vec<OutletId> =
        model.input_outlets()?.iter().copied().filter(|o| o.node != sr).collect();
    model.nodes[sr].op =
        Box::new(tract_onnx::tract_hir::ops::konst::Const::new(rctensor0(16000i64))?);
    model.set_input_outlets(&outlets)?;
    Ok(model)
}

/// Strategy "concrete": input facts `[batch, 576]`, `[2, batch, 128]` set before analysis.
fn silero_concrete(batch: usize) -> TractResult<TypedModel> {
    silero_sr_const()?
        .with_input_fact(0, f32::fact([batch, CONTEXT + WINDOW]).into())?
        .with_input_fact(1, f32::fact([2, batch, 128]).into())?
        .into_optimized()
}

/// Strategy "symbolic": the batch and sample count left symbolic through analysis, fixed after.
fn silero_symbolic(batch: usize) -> TractResult<TypedModel> {
    let model = silero_sr_const()?;
    let b = model.sym("B");
    let t = model.sym("T");
    let typed = model
        .with_input_fact(0, f32::fact([TDim::from(b.clone()), TDim::from(t.clone())]).into())?
        .with_input_fact(1, f32::fact([TDim::from(2), TDim::from(b.clone()), TDim::from(128)]).into())?
        .into_typed()?;
    let subs = HashMap::from([(b, (batch as i64).into()), (t, ((CONTEXT + WINDOW) as i64).into())]);
    typed.set_symbols(&subs)?.into_optimized()
}

/// Strategy "concrete": `[1, 80, 800]` before analysis.
fn st_concrete() -> TractResult<TypedModel> {
    onnx()
        .model_for_path(smart_turn_path())?
        .with_input_fact(0, f32::fact([1, N_MELS, FRAMES]).into())?
        .into_optimized()
}

/// Strategy "symbolic": the model's own batch symbol `s6` through analysis, set to 1 after.
fn st_symbolic() -> TractResult<TypedModel> {
    let model = onnx().model_for_path(smart_turn_path())?;
    let s6 = model.sym("s6");
    let typed = model.into_typed()?;
    typed.set_symbols(&HashMap::from([(s6, 1i64.into())]))?.into_optimized()
}

/// Diagnostic: analysed and typed with batch 1, decluttered but not optimized (tract's kernels
/// selection skipped), to tell a wrong op from a wrong optimization.
fn st_decluttered() -> TractResult<TypedModel> {
    let model = onnx().model_for_path(smart_turn_path())?;
    let s6 = model.sym("s6");
    let typed = model.into_typed()?;
    typed.set_symbols(&HashMap::from([(s6, 1i64.into())]))?.into_decluttered()
}

/// Diagnostic: typed only (each ONNX op as tract translated it, no graph rewriting at all).
fn st_typed_only() -> TractResult<TypedModel> {
    let model = onnx().model_for_path(smart_turn_path())?;
    let s6 = model.sym("s6");
    let typed = model.into_typed()?;
    typed.set_symbols(&HashMap::from([(s6, 1i64.into())]))
}

/// Strategy "dynamic": the batch stays symbolic in the optimized plan (any batch at run time).
fn st_dynamic() -> TractResult<TypedModel> {
    onnx().model_for_path(smart_turn_path())?.into_optimized()
}

/// Tries the strategies in order; returns the first plan that loads (with its load time).
fn first_loading(
    label: &str,
    strategies: Vec<(&str, Box<dyn Fn() -> TractResult<TypedModel>>)>,
) -> Option<(String, Arc<Plan>, Duration)> {
    // TRACT_STRATEGY=name runs that strategy alone.
    let forced = std::env::var("TRACT_STRATEGY").ok();
    for (name, load) in strategies {
        if forced.as_deref().is_some_and(|f| f != name) {
            continue;
        }
        let started = Instant::now();
        match load().and_then(|typed| {
            let plan = typed.clone().into_runnable()?;
            Ok((typed, plan))
        }) {
            Ok((typed, plan)) => {
                let took = started.elapsed();
                println!("OK tract {label} [{name}] loaded in {:.1} ms; optimized ops: {}", took.as_secs_f64() * 1e3, op_summary(&typed));
                return Some((name.to_string(), plan, took));
            }
            Err(e) => println!("FAIL tract {label} [{name}]: {e:#}"),
        }
    }
    None
}

fn main() {
    let data = Data::load();
    let only = std::env::args().nth(1).unwrap_or_default();
    println!("tract-onnx 0.23.10{}; loadavg {}", if cfg!(feature = "patched") { " (patched If)" } else { "" }, loadavg());

    for batch in [1usize, 32] {
        if !only.is_empty() && only != format!("silero{batch}") {
            continue;
        }
        let label = format!("silero_b{batch}");
        let Some((name, plan, load)) = first_loading(
            &label,
            vec![
                ("concrete", Box::new(move || silero_concrete(batch))),
                ("symbolic", Box::new(move || silero_symbolic(batch))),
            ],
        ) else {
            continue;
        };
        let mut state = plan.spawn().expect("spawn");
        run_silero(&format!("tract[{name}]"), &label, batch, load, &data, |input, st| {
            let x = Tensor::from_shape(&[batch, CONTEXT + WINDOW], input).unwrap();
            let s = Tensor::from_shape(&[2, batch, 128], st).unwrap();
            match state.run(tvec![x.into_tvalue(), s.into_tvalue()]) {
                Ok(out) => (
                    out[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec(),
                    out[1].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec(),
                ),
                Err(e) => {
                    println!("FAIL tract {label} run: {e:#}");
                    std::process::exit(1);
                }
            }
        });
    }

    if only.is_empty() || only == "smart_turn" {
        let Some((name, plan, load)) = first_loading(
            "smart_turn",
            vec![
                ("concrete", Box::new(st_concrete)),
                ("symbolic", Box::new(st_symbolic)),
                ("dynamic", Box::new(st_dynamic)),
                ("decluttered", Box::new(st_decluttered)),
                ("typed-only", Box::new(st_typed_only)),
            ],
        ) else {
            return;
        };
        let mut state = plan.spawn().expect("spawn");
        run_smart_turn(&format!("tract[{name}]"), load, &data, |feats| {
            let x = Tensor::from_shape(&[1, N_MELS, FRAMES], feats).unwrap();
            match state.run(tvec![x.into_tvalue()]) {
                Ok(out) => out[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap()[0],
                Err(e) => {
                    println!("FAIL tract smart_turn run: {e:#}");
                    std::process::exit(1);
                }
            }
        });
    }
}
