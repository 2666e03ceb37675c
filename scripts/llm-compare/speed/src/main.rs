//! Speed spike: load a GGUF with candle 0.11.1 (CPU) the way the engine would, then time
//! prefill (time to first token) and greedy decode of N tokens, several runs, p50.
//!
//! usage: llm-speed <llama|gemma3> <model.gguf> <tokens.json> <key> [--requant none|slow]
//!                  [--runs 5] [--gen 64]
//!
//! * `llama`  -> candle_transformers::models::quantized_llama::ModelWeights (SmolLM2)
//! * `gemma3` -> candle_transformers::models::quantized_gemma3::ModelWeights (Gemma 3)
//! * (the measured runs also used a copy of candle's quantized_gemma3.rs with RoPE tables for 4096
//!   positions instead of 131072, to measure load time and memory with that fix; not kept here)
//! * `--requant slow` re-quantizes every tensor whose type has no SIMD vec_dot kernel in
//!   candle 0.11.1 on x86_64 (Q4_1, Q5_0, Q5_1, Q8_1) to Q8_0 before building the model,
//!   like `fast_weights()` in src/provider/embedded/llm/mod.rs does for Q4_1.
//! * tokens.json maps `key` -> prompt token ids (made by make_prompts.py with the model's
//!   own tokenizer and chat template; the ids only set the prompt length).
//!
//! The model is loaded once; each run starts at index_pos 0, which makes both models drop
//! their KV cache. Decode always runs exactly `gen` steps (no stop on EOS) so runs compare.
//! Peak RSS is VmHWM from /proc/self/status at the end (one model per process).
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_gemma3, quantized_llama};
use std::collections::BTreeMap;

use std::time::Instant;

enum Model {
    Llama(quantized_llama::ModelWeights),
    Gemma(quantized_gemma3::ModelWeights),
}

impl Model {
    fn forward(&mut self, x: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        match self {
            Model::Llama(m) => m.forward(x, pos),
            Model::Gemma(m) => m.forward(x, pos),
        }
    }
}

/// Types whose vec_dot is scalar-only in candle-core 0.11.1 on x86_64.
fn no_simd(t: GgmlDType) -> bool {
    matches!(t, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q8_1)
}

fn load(arch: &str, path: &str, requant: bool) -> candle_core::Result<Model> {
    let mut file = std::fs::File::open(path)?;
    let content = gguf_file::Content::read(&mut file)?;
    // Histogram of tensor types (count, elements) so we can see what needs re-quantizing.
    let mut hist: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (name, info) in content.tensor_infos.iter() {
        let e = hist.entry(format!("{:?}", info.ggml_dtype)).or_default();
        e.0 += 1;
        e.1 += info.shape.elem_count();
        if name == "token_embd.weight" || name == "output.weight" {
            eprintln!("  {name}: {:?} {:?}", info.ggml_dtype, info.shape);
        }
    }
    for (t, (n, el)) in &hist {
        eprintln!("  dtype {t:>5}: {n:>4} tensors, {:>6.1} M elements", *el as f64 / 1e6);
    }
    let dev = Device::Cpu;
    let needs = content.tensor_infos.values().any(|t| no_simd(t.ggml_dtype));
    let build = |ct: gguf_file::Content, mut r: &mut dyn ReadSeek| -> candle_core::Result<Model> {
        // `&mut dyn ReadSeek` is itself Read + Seek and Sized, so pass a reference to it.
        Ok(match arch {
            "llama" => Model::Llama(quantized_llama::ModelWeights::from_gguf(ct, &mut r, &dev)?),
            "gemma3" => Model::Gemma(quantized_gemma3::ModelWeights::from_gguf(ct, &mut r, &dev)?),
            a => candle_core::bail!("unknown arch {a}"),
        })
    };
    if !requant || !needs {
        return build(content, &mut file);
    }
    // Same approach as the engine's fast_weights(): re-quantize, write an in-memory GGUF,
    // and build the model from it.
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let t = content.tensor(&mut file, name, &dev)?;
        let t = if no_simd(t.dtype()) {
            QTensor::quantize(&t.dequantize(&dev)?, GgmlDType::Q8_0)?
        } else {
            t
        };
        tensors.push((name.as_str(), t));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> =
        content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut mem = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut mem, &metadata, &refs)?;
    drop(tensors);
    mem.set_position(0);
    let ct = gguf_file::Content::read(&mut mem)?;
    build(ct, &mut mem)
}

trait ReadSeek: std::io::Read + std::io::Seek {}
impl<T: std::io::Read + std::io::Seek> ReadSeek for T {}

fn argmax(logits: &Tensor) -> candle_core::Result<u32> {
    logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()
}

fn vm_hwm_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Process CPU seconds (user + system, all threads) from /proc/self/stat.
fn cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = &s[s.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // fields after ")": state is index 0, so utime (14) and stime (15) are 11 and 12
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0 // USER_HZ is 100 on Linux
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: {} <llama|gemma3> <model.gguf> <tokens.json> <key> [--requant none|slow] [--runs N] [--gen N]", args[0]);
        std::process::exit(2);
    }
    let (arch, path, tok_path, key) = (&args[1], &args[2], &args[3], &args[4]);
    let mut requant = false;
    let (mut runs, mut gen) = (5usize, 64usize);
    let mut i = 5;
    while i + 1 < args.len() {
        match args[i].as_str() {
            "--requant" => requant = args[i + 1] == "slow",
            "--runs" => runs = args[i + 1].parse().unwrap(),
            "--gen" => gen = args[i + 1].parse().unwrap(),
            o => panic!("unknown option {o}"),
        }
        i += 2;
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tok_path)?).unwrap();
    let prompt: Vec<u32> = json[key.as_str()]
        .as_array()
        .expect("key not in tokens.json")
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    eprintln!(
        "{arch} {path} requant={requant} prompt_tokens={} threads={}",
        prompt.len(),
        candle_core::utils::get_num_threads()
    );

    let t0 = Instant::now();
    let mut model = load(arch, path, requant)?;
    let load_s = t0.elapsed().as_secs_f64();
    let rss_after_load = vm_hwm_kb();

    let dev = Device::Cpu;
    let (mut ttfts, mut tps, mut cpu_pt, mut cpu_pre) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut text_ids = Vec::new();
    // One warm-up run (not counted) then `runs` timed runs.
    for run in 0..=runs {
        let input = Tensor::new(prompt.as_slice(), &dev)?.unsqueeze(0)?;
        let c0 = cpu_s();
        let t = Instant::now();
        let logits = model.forward(&input, 0)?;
        let mut next = argmax(&logits)?;
        let ttft = t.elapsed().as_secs_f64();
        let c1 = cpu_s();
        let mut ids = vec![next];
        let t = Instant::now();
        for step in 0..gen {
            let input = Tensor::new(&[next], &dev)?.unsqueeze(0)?;
            let logits = model.forward(&input, prompt.len() + step)?;
            next = argmax(&logits)?;
            ids.push(next);
        }
        let dec = t.elapsed().as_secs_f64();
        let c2 = cpu_s();
        let rate = gen as f64 / dec;
        eprintln!(
            "  run {run}{}: ttft {:.1} ms, decode {gen} tok in {:.2} s = {:.1} tok/s; cpu prefill {:.2} s, cpu/token {:.0} ms",
            if run == 0 { " (warm-up)" } else { "" },
            ttft * 1e3,
            dec,
            rate,
            c1 - c0,
            (c2 - c1) / gen as f64 * 1e3
        );
        if run > 0 {
            ttfts.push(ttft);
            tps.push(rate);
            cpu_pre.push(c1 - c0);
            cpu_pt.push((c2 - c1) / gen as f64 * 1e3);
        }
        text_ids = ids;
    }
    let hwm = vm_hwm_kb();
    // One JSON line on stdout for the summary script.
    println!(
        "{}",
        serde_json::json!({
            "arch": arch, "model": path, "requant": requant, "prompt_tokens": prompt.len(),
            "gen": gen, "runs": runs, "load_s": load_s,
            "ttft_ms_p50": p50(ttfts.clone()) * 1e3, "ttft_ms_all": ttfts.iter().map(|x| x*1e3).collect::<Vec<_>>(),
            "tok_s_p50": p50(tps.clone()), "tok_s_all": tps,
            "cpu_prefill_s_p50": p50(cpu_pre.clone()), "cpu_ms_per_token_p50": p50(cpu_pt.clone()),
            "rss_after_load_mb": rss_after_load as f64 / 1024.0, "peak_rss_mb": hwm as f64 / 1024.0,
            "first_ids": &text_ids[..text_ids.len().min(24)],
            "threads": candle_core::utils::get_num_threads(),
        })
    );
    Ok(())
}
