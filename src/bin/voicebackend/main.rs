//! `voicebackend`: the command-line front end of the engine.
//!
//! ```text
//! voicebackend converse --input in.wav --output out.wav [--realtime] [--stt NAME] [--tts NAME] [--config FILE]
//! voicebackend say "text" -o out.wav [--voice VOICE] [--rate WPM]
//! voicebackend transcribe file.wav [--stt NAME] [--config FILE]
//! voicebackend agent --room NAME [--url URL] [--user IDENTITY] [--once] [--stt NAME] [--tts NAME] [--config FILE]
//! voicebackend agent --worker [--agent-name NAME] [--max-jobs N] [--url URL] [--stt NAME] [--tts NAME] [--config FILE]
//! voicebackend serve [--port N] [--stt NAME] [--tts NAME] [--config FILE]
//! voicebackend rooms list | create ROOM | delete ROOM | participants ROOM | remove ROOM IDENTITY | dispatch ROOM [--agent-name NAME] [--metadata TEXT]
//! ```

mod agent;
mod converse;
mod report;
mod room;
mod rooms;
mod serve;
mod signals;
mod wav;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use voicebackend::config::HOST_RATES;
use voicebackend::dsp::resample::StreamResampler;
use voicebackend::provider::tts::TtsRequest;
use voicebackend::provider::{ProviderRegistry, ProviderSetup};

const USAGE: &str = "\
voicebackend — a realtime voice-agent engine, offline

USAGE:
  voicebackend converse --input IN.wav --output OUT.wav [--realtime] [OPTIONS]
      Runs one conversation over IN.wav (any rate, mono or stereo), prints every turn and a
      latency table, and writes the agent's audio on the conversation timeline to OUT.wav.
  voicebackend say TEXT -o OUT.wav [--voice VOICE] [--rate WPM]
      Speaks TEXT with the TTS provider into OUT.wav.
  voicebackend transcribe FILE.wav [OPTIONS]
      Cuts FILE.wav into turns and prints each turn's transcript.
  voicebackend agent --room NAME [--url URL] [--user IDENTITY] [--once] [OPTIONS]
      Joins the LiveKit room NAME as an agent and talks with whoever
      speaks there (or only with IDENTITY); when they leave it waits for the next one (--once:
      it exits). The server and its keys come from LIVEKIT_URL (or --url), LIVEKIT_API_KEY and
      LIVEKIT_API_SECRET; --config FILE replaces the whole backend configuration.
  voicebackend agent --worker [--agent-name NAME] [--max-jobs N] [OPTIONS]
      Registers with the LiveKit server as an agent worker: the server dispatches rooms to it
      (every new room; with --agent-name only explicit dispatches to NAME), each one a
      conversation. SIGINT/SIGTERM drains: conversations under way
      finish (up to 10 minutes), no new ones come, then it exits.
  voicebackend serve [--port N] [OPTIONS]
      Serves a page at http://127.0.0.1:N/ (default 8080; 0: any free port) where a browser
      talks with the agent over WebRTC, directly (no SFU): a talk button, live
      captions, the agent's state, a microphone meter, per-turn latency. Offers go to
      POST /api/offer (Pipecat's SmallWebRTC shape); --config FILE is a `local` backend
      configuration (its own providers; provider_config.webrtc is filled in). SIGINT/SIGTERM
      drains: calls under way finish (up to a minute), then it exits.
  voicebackend rooms list | create ROOM | delete ROOM | participants ROOM
  voicebackend rooms remove ROOM IDENTITY | dispatch ROOM [--agent-name NAME] [--metadata TEXT]
      LiveKit's room service (same server and keys as `agent`): prints the answer as JSON.

OPTIONS:
  --agent model|rules  who answers (converse, serve, agent): a few exact rules (greetings, the
                    time, arithmetic) and, for the rest, the embedded SmolLM2-135M-Instruct
                    model (model, the default: offline, one model for all conversations of
                    the process) or an echo (rules)
  --stt NAME        STT provider (default: whisper)
  --tts NAME        TTS provider (default: espeak)
  --config FILE     full backend configuration JSON (overrides --stt/--tts)
  --realtime        push audio at real-time pace instead of as fast as possible

SIGINT or SIGTERM stops a conversation gracefully: no more input is taken, the reply in
flight finishes, the output is written. A second signal exits at once.
";

/// Threads of candle's pool for the embedded language model's quantized matrix products (its
/// workers spin at a barrier after each one): one, unless `CANDLE_NUM_THREADS` says otherwise.
/// Measured with `cargo bench --bench llm` on this 2-core machine while other work ran: 41.9
/// tokens a second and a first token in 253 ms with one thread, 6.3 and 816 ms with two (see
/// the README, *The built-in agent*). Whisper's float products do not use this pool.
const LLM_THREADS: &str = "1";

fn main() -> ExitCode {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: the process has one thread yet (nothing was started before this line), so no
        // other thread reads the environment while it changes.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", LLM_THREADS) };
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    signals::install();
    log_to_stderr();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("voicebackend: {message}");
            ExitCode::FAILURE
        }
    }
}

/// With `VB_LOG` (or `RUST_LOG`) set, the engine's log records that it lets through go to
/// stderr, e.g. `VB_LOG=voicebackend=debug voicebackend converse …`.
fn log_to_stderr() {
    use voicebackend::logging::{self, LevelFilter, LogRecord};
    if logging::env_directives().is_some() {
        let stderr =
            Box::new(|r: &LogRecord| eprintln!("{:>5} {}: {}", r.level, r.target, r.message));
        if let Err(e) = logging::forward(Some(stderr), LevelFilter::TRACE) {
            eprintln!("voicebackend: logging: {e}");
        }
    }
}

/// Parsed command line: positional words and `--flag [value]` pairs.
struct Args {
    positional: Vec<String>,
    flags: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(args: &[String], switches: &[&str]) -> Result<Args, String> {
        let mut positional = Vec::new();
        let mut flags = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if let Some(name) = arg
                .strip_prefix("--")
                .or_else(|| arg.strip_prefix('-').filter(|n| n.len() == 1))
            {
                if switches.contains(&name) {
                    flags.push((name.to_owned(), None));
                } else {
                    let value = iter
                        .next()
                        .ok_or_else(|| format!("--{name} needs a value"))?;
                    flags.push((name.to_owned(), Some(value.clone())));
                }
            } else {
                positional.push(arg.clone());
            }
        }
        Ok(Args { positional, flags })
    }

    fn value(&self, names: &[&str]) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| names.contains(&n.as_str()))
            .and_then(|(_, v)| v.as_deref())
    }

    fn switch(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| n == name)
    }

    fn only(&self, allowed: &[&str]) -> Result<(), String> {
        match self
            .flags
            .iter()
            .find(|(n, _)| !allowed.contains(&n.as_str()))
        {
            Some((n, _)) => Err(format!("unknown option --{n}\n\n{USAGE}")),
            None => Ok(()),
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let Some((command, rest)) = args.split_first() else {
        return Err(format!("no command given\n\n{USAGE}"));
    };
    match command.as_str() {
        "converse" => converse(&Args::parse(rest, &["realtime"])?),
        "say" => say(&Args::parse(rest, &[])?),
        "transcribe" => transcribe(&Args::parse(rest, &["realtime"])?),
        "agent" => agent(&Args::parse(rest, &["once", "worker"])?),
        "rooms" => rooms::run(&Args::parse(rest, &[])?),
        "serve" => serve(&Args::parse(rest, &[])?),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command '{other}'\n\n{USAGE}")),
    }
}

/// The `turn` section of the CLI's own configurations for conversations (`converse`, `serve`,
/// `agent` without `--config`): preemptive replies on, since the CLI's agent (rules and the
/// embedded model) may be started early and cancelled at no cost. On the demo (real time) they
/// took voice to voice from 795 to 500 ms (p50), the model's answers from silence + 514–601 ms
/// to silence + 215–327 ms (two runs). The library's default stays off: a host's agent would be
/// called twice for a turn the user goes on with.
fn cli_turn() -> serde_json::Value {
    serde_json::json!({"preemptive_ms": 200})
}

/// The backend configuration: `--config FILE`, or the local backend with `--stt`/`--tts` (and,
/// for a `conversation`, the CLI's turn settings, [`cli_turn`]).
fn backend_json(args: &Args, conversation: bool) -> Result<String, String> {
    if let Some(path) = args.value(&["config"]) {
        return std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
    }
    let stt = args.value(&["stt"]).unwrap_or("whisper");
    let tts = args.value(&["tts"]).unwrap_or("espeak");
    let mut config =
        serde_json::json!({"provider": "local", "stt_provider": stt, "tts_provider": tts});
    if conversation {
        config["turn"] = cli_turn();
    }
    Ok(config.to_string())
}

/// Reads a WAV file and converts it to the nearest rate the engine takes at its edges.
fn read_input(path: &str) -> Result<wav::Audio, String> {
    let audio = wav::read(&PathBuf::from(path))?;
    if audio.samples.is_empty() {
        return Err(format!("{path}: no audio"));
    }
    if HOST_RATES.contains(&audio.rate) {
        return Ok(audio);
    }
    Ok(wav::Audio {
        samples: StreamResampler::convert(&audio.samples, audio.rate, 16000),
        rate: 16000,
    })
}

fn converse(args: &Args) -> Result<(), String> {
    args.only(&[
        "input", "output", "realtime", "stt", "tts", "config", "agent",
    ])?;
    let input = args
        .value(&["input"])
        .ok_or("converse needs --input IN.wav")?;
    let model = cli_model(args.value(&["agent"]))?;
    let output = args
        .value(&["output"])
        .ok_or("converse needs --output OUT.wav")?;
    let audio = read_input(input)?;
    let options = converse::RunOptions {
        backend_json: backend_json(args, true)?,
        realtime: args.switch("realtime"),
        converse: true,
        model,
    };
    println!(
        "Conversation over {input} ({:.1} s at {} Hz):",
        audio.samples.len() as f64 / f64::from(audio.rate),
        audio.rate
    );
    let result = converse::run(&audio.samples, audio.rate, &options)?;
    if !result.metrics.is_empty() {
        println!("\n{}", report::latency_table(&result.metrics));
    }
    wav::write(&PathBuf::from(output), &result.timeline, audio.rate)?;
    println!("Agent audio on the conversation timeline: {output}");
    Ok(())
}

fn serve(args: &Args) -> Result<(), String> {
    args.only(&["port", "stt", "tts", "config", "agent"])?;
    let port = match args.value(&["port"]) {
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| format!("--port {port}: not a port number (0–65535)"))?,
        None => 8080,
    };
    let base = match args.value(&["config"]) {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?),
        None => None,
    };
    let json = serve::backend_json(
        base.as_deref(),
        args.value(&["stt"]).unwrap_or("whisper"),
        args.value(&["tts"]).unwrap_or("espeak"),
        port,
    )?;
    let agent = cli_agent(args)?;
    serve::run(&json, std::time::Duration::from_secs(60), agent)
}

fn agent(args: &Args) -> Result<(), String> {
    if args.switch("worker") {
        args.only(&[
            "worker",
            "agent-name",
            "max-jobs",
            "url",
            "stt",
            "tts",
            "config",
            "agent",
        ])?;
        let mut worker = serde_json::Map::new();
        if let Some(name) = args.value(&["agent-name"]) {
            worker.insert("agent_name".into(), name.into());
        }
        if let Some(max) = args.value(&["max-jobs"]) {
            let max: u32 = max
                .parse()
                .map_err(|_| format!("--max-jobs {max}: not a number"))?;
            worker.insert("max_jobs".into(), max.into());
        }
        let json = livekit_backend_json(args, Some(worker.into()))?;
        return room::run_worker(&json, std::time::Duration::from_secs(600), cli_agent(args)?);
    }
    args.only(&[
        "room", "url", "user", "once", "stt", "tts", "config", "agent",
    ])?;
    let room = args
        .value(&["room"])
        .ok_or("agent needs --room NAME (or --worker)")?;
    room::run(&room::RoomOptions {
        backend_json: livekit_backend_json(args, None)?,
        room: room.to_owned(),
        user: args.value(&["user"]).unwrap_or_default().to_owned(),
        once: args.switch("once"),
        agent: cli_agent(args)?,
    })
}

/// The `livekit` backend configuration: `--config FILE`, or `--url` (else `LIVEKIT_URL`) with
/// `--stt`/`--tts` and, for a worker, its `worker` section.
fn livekit_backend_json(args: &Args, worker: Option<serde_json::Value>) -> Result<String, String> {
    if let Some(path) = args.value(&["config"]) {
        return std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
    }
    let mut provider_config = serde_json::Map::new();
    if let Some(url) = args.value(&["url"]) {
        provider_config.insert("url".into(), url.into());
    }
    if let Some(worker) = worker {
        provider_config.insert("worker".into(), worker);
    }
    Ok(serde_json::json!({
        "provider": "livekit",
        "provider_config": provider_config,
        "stt_provider": args.value(&["stt"]).unwrap_or("whisper"),
        "tts_provider": args.value(&["tts"]).unwrap_or("espeak"),
        "turn": cli_turn(),
    })
    .to_string())
}

fn transcribe(args: &Args) -> Result<(), String> {
    args.only(&["realtime", "stt", "tts", "config"])?;
    let [file] = args.positional.as_slice() else {
        return Err(format!("transcribe needs exactly one WAV file\n\n{USAGE}"));
    };
    let audio = read_input(file)?;
    let options = converse::RunOptions {
        backend_json: backend_json(args, false)?,
        realtime: args.switch("realtime"),
        converse: false,
        model: None,
    };
    let result = converse::run(&audio.samples, audio.rate, &options)?;
    if result.transcripts.is_empty() {
        println!("(no speech found)");
    }
    Ok(())
}

/// The agent of `converse`, `serve` and `agent`: the rules and what `--agent` chooses for the
/// rest.
fn cli_agent(args: &Args) -> Result<Arc<dyn voicebackend::Agent>, String> {
    let model = cli_model(args.value(&["agent"]))?;
    Ok(Arc::new(agent::RuleAgent::new(model)))
}

/// `--agent`: `model` (the default) answers with the rules and the embedded language model,
/// `rules` with the rules and an echo. Without the model file, `model` falls back to the rules
/// and says so.
fn cli_model(choice: Option<&str>) -> Result<Option<Arc<dyn voicebackend::Agent>>, String> {
    use voicebackend::provider::embedded::llm::default_model_path;
    match choice.unwrap_or("model") {
        "rules" => Ok(None),
        "model" if !default_model_path().is_file() => {
            println!(
                "Answering with: rules and an echo ({} is not installed: scripts/fetch-models.sh)",
                default_model_path().display()
            );
            Ok(None)
        }
        "model" => {
            let model = voicebackend::provider::llm::create_agent(
                &serde_json::json!({"provider": "embedded"}),
                &[],
                Default::default(),
            )
            .map_err(|e| e.to_string())?;
            println!(
                "Answering with: rules for greetings, the time and arithmetic; SmolLM2-135M-Instruct (embedded, offline) for the rest"
            );
            Ok(Some(model))
        }
        other => Err(format!("--agent {other}: use model or rules")),
    }
}

fn say(args: &Args) -> Result<(), String> {
    args.only(&["o", "output", "voice", "rate", "tts"])?;
    let [text] = args.positional.as_slice() else {
        return Err(format!("say needs exactly one TEXT argument\n\n{USAGE}"));
    };
    let output = args.value(&["o", "output"]).ok_or("say needs -o OUT.wav")?;
    let mut config = serde_json::Map::new();
    if let Some(voice) = args.value(&["voice"]) {
        config.insert("voice".into(), voice.into());
    }
    if let Some(rate) = args.value(&["rate"]) {
        let wpm: u64 = rate
            .parse()
            .map_err(|_| format!("--rate {rate}: not a number of words per minute"))?;
        config.insert("rate_wpm".into(), wpm.into());
    }
    let name = args.value(&["tts"]).unwrap_or("espeak");
    let tts = ProviderRegistry::global()
        .create_tts(name, &ProviderSetup::new(&config.into()))
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let (text_tx, text_rx) = tokio::sync::mpsc::unbounded_channel();
    let (audio_tx, mut audio_rx) = tokio::sync::mpsc::channel(64);
    let _ = text_tx.send(text.clone());
    drop(text_tx);
    let synthesis = tts.synthesize(TtsRequest {
        text: text_rx,
        audio: audio_tx,
    });
    let samples = runtime.block_on(async move {
        let collect = async {
            let mut samples = Vec::new();
            while let Some(chunk) = audio_rx.recv().await {
                samples.extend(chunk);
            }
            samples
        };
        let (result, samples) = tokio::join!(synthesis, collect);
        result.map(|()| samples)
    });
    let samples = samples.map_err(|e| e.to_string())?;
    wav::write(&PathBuf::from(output), &samples, tts.sample_rate())?;
    println!(
        "{output}: {:.2} s at {} Hz",
        samples.len() as f64 / f64::from(tts.sample_rate()),
        tts.sample_rate()
    );
    Ok(())
}
