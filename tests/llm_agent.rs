//! The built-in agent (`agent` section, provider `openai`) against a real OpenAI-compatible
//! server that is not ours: llama-cpp-python's server (llama.cpp) serving SmolLM2-135M-Instruct
//! on 127.0.0.1 (`scripts/llm-env.sh` installs both). Temperature 0, so answers are the same run
//! after run. The stall uses a listener of our own that accepts and never answers.
#![cfg(feature = "test-providers")]

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::llama::LlamaServer;
use common::*;
use voicebackend::provider::embedded::llm::{EmbeddedAgent, EmbeddedSettings, default_model_path};
use voicebackend::provider::llm::DEFAULT_SYSTEM_PROMPT;
use voicebackend::{Agent, Backend, SessionConfig, Tool, Turn, VbEventKind as K, VbStatus};

/// One llama.cpp server or embedded model test at a time: each uses both cores, a test's turn
/// waits for its model, and the embedded model is one per process.
static ONE_SERVER: Mutex<()> = Mutex::new(());

/// Starts a server for one test, holding [`ONE_SERVER`] while it runs.
fn llama(n_ctx: u32) -> (std::sync::MutexGuard<'static, ()>, LlamaServer) {
    let turn = ONE_SERVER.lock().unwrap_or_else(|p| p.into_inner());
    (turn, LlamaServer::start(n_ctx, &[]))
}

/// A backend on the embedded Whisper and eSpeak NG whose sessions the built-in agent answers.
fn spoken_backend(agent: &str, extra: &str) -> Backend {
    let json = format!(
        r#"{{"provider":"local","stt_provider":"whisper","tts_provider":"espeak",
            "persistence":{{"path":""}},"agent":{agent}{extra}}}"#
    );
    Backend::from_json(&json).expect("backend config")
}

fn agent_json(server: &LlamaServer, more: &str) -> String {
    format!(
        r#"{{"provider":"openai","base_url":"{}","model":"smollm2","temperature":0{more}}}"#,
        server.base_url()
    )
}

/// A session with no agent of its own: the built-in one answers.
fn session_without_agent(backend: &Backend) -> voicebackend::Session {
    let session = backend
        .create_session(SessionConfig::default(), None, None)
        .expect("a session without an agent callback is answered by the built-in agent");
    session.start().unwrap();
    session
}

#[test]
fn a_spoken_question_gets_a_spoken_answer_streamed_from_a_real_llama_cpp_server() {
    let (_turn, server) = llama(2048);
    let backend = spoken_backend(&agent_json(&server, r#","max_tokens":40"#), "");
    backend.start().unwrap();
    let session = session_without_agent(&backend);
    say_as_user(&session, "What is the capital of France?");
    let (events, audio) = play_until(&session, reply_finished());
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL).concat();
    assert!(
        heard.contains("capital of France"),
        "Whisper heard {heard:?}"
    );
    let answer = texts(&events, K::VB_EVENT_AGENT_RESPONSE).concat();
    assert!(answer.contains("Paris"), "the model answered {answer:?}");
    assert!(
        audio.iter().filter(|s| s.unsigned_abs() > 300).count() > 16000,
        "the answer was spoken ({} samples)",
        audio.len()
    );
    // Streamed: the first text reached the session before the whole answer was generated.
    let metrics = events
        .iter()
        .find(|e| e.kind == K::VB_EVENT_TURN_METRICS)
        .map(|e| e.metrics)
        .expect("turn metrics");
    assert!(metrics.agent_first_text_us > 0);
    // The second turn has the first in its context.
    say_as_user(&session, "What about Germany?");
    let (events, _) = play_until(&session, reply_finished());
    let answer = texts(&events, K::VB_EVENT_AGENT_RESPONSE).concat();
    let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL).concat();
    assert!(
        answer.contains("Berlin"),
        "heard {heard:?}, the model answered {answer:?}"
    );
    session.stop().unwrap();
    backend.stop(Duration::ZERO).unwrap();
}

#[test]
fn a_tool_call_round_trip_feeds_the_tools_result_back_to_the_model() {
    let (_turn, server) = llama(2048);
    let agent = agent_json(
        &server,
        r#","max_tokens":60,"tool_choice":"get_weather","filler":"Let me check.","filler_after_ms":100"#,
    );
    let backend = spoken_backend(&agent, "");
    let calls = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = calls.clone();
    backend
        .add_tool(Tool {
            name: "get_weather".into(),
            description: "The weather forecast for a city.".into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"]
            }),
            handler: Arc::new(move |arguments| {
                seen.lock().unwrap().push(arguments.to_owned());
                std::thread::sleep(Duration::from_millis(300)); // slow enough for the filler
                Ok(r#"{"forecast": "sunny and 21 degrees"}"#.to_owned())
            }),
        })
        .unwrap();
    backend.start().unwrap();
    let session = session_without_agent(&backend);
    say_as_user(&session, "What is the weather like in Paris today?");
    let (events, _) = play_until(&session, reply_finished());
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one call: {calls:?}");
    let arguments: serde_json::Value = serde_json::from_str(&calls[0]).unwrap();
    assert!(arguments["city"].is_string(), "{arguments}");
    let answer = texts(&events, K::VB_EVENT_AGENT_RESPONSE).concat();
    assert!(
        answer.starts_with("Let me check."),
        "the filler first: {answer:?}"
    );
    assert!(
        answer.len() > "Let me check.".len() + 5,
        "the model spoke after the tool: {answer:?}"
    );
    session.stop().unwrap();
    backend.stop(Duration::ZERO).unwrap();
}

#[test]
fn server_errors_are_events_and_the_session_goes_on() {
    let (_turn, server) = llama(512);
    // (the agent settings, the status, what the message says)
    let long_prompt = "You are a helpful assistant. ".repeat(300);
    let cases = [
        // A path the server does not serve: its own 404.
        (
            format!(
                r#"{{"provider":"openai","base_url":"{}/nowhere"}}"#,
                server.base_url()
            ),
            VbStatus::VB_ERR_PROVIDER,
            "answered HTTP 404",
        ),
        // A context longer than the server's window: it starts the stream, then gives up.
        (
            agent_json(&server, &format!(r#","system_prompt":"{long_prompt}""#)),
            VbStatus::VB_ERR_PROVIDER,
            "the answer ended before the model finished",
        ),
    ];
    for (agent, status, says) in cases {
        let backend = test_backend(&format!(r#""agent":{agent},"retry":{{"max_attempts":1}}"#));
        let session = session_without_agent(&backend);
        push_all(&session, &utterance(150.0, 800, 16000), 16000);
        let events = events_until(&session, is_error);
        let (got, message) = errors(&events).pop().unwrap();
        assert_eq!(got, status, "{message}");
        assert!(message.starts_with("agent: openai: "), "{message}");
        assert!(message.contains(says), "{message}");
        listening_after_failed_turn(&session, &events);
        session.stop().unwrap();
        backend.stop(Duration::ZERO).unwrap();
    }
}

#[test]
fn a_stalled_server_is_a_timeout_and_the_session_goes_on() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream); // read nothing, answer nothing
        }
    });
    let agent =
        format!(r#"{{"provider":"openai","base_url":"http://127.0.0.1:{port}","timeout_ms":500}}"#);
    let backend = test_backend(&format!(r#""agent":{agent},"retry":{{"max_attempts":1}}"#));
    let session = session_without_agent(&backend);
    let started = Instant::now();
    push_all(&session, &utterance(150.0, 800, 16000), 16000);
    let events = events_until(&session, is_error);
    let (status, message) = errors(&events).pop().unwrap();
    assert_eq!(status, VbStatus::VB_ERR_TIMEOUT, "{message}");
    assert!(
        message.contains("no answer from") && message.contains("within 500 ms"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    listening_after_failed_turn(&session, &events);
    session.stop().unwrap();
}

#[test]
fn barge_in_drops_the_generation_on_the_server() {
    let (_turn, server) = llama(2048);
    let agent = agent_json(
        &server,
        r#","max_tokens":600,"system_prompt":"You tell very long stories. Never stop early.""#,
    );
    let backend = test_backend(&format!(r#""agent":{agent}"#));
    let session = session_without_agent(&backend);
    talk_until_the_agent_speaks(&session);
    push_all(&session, &utterance(150.0, 800, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_INTERRUPTED);
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    // The request's connection is closed at once; llama-cpp-python's server notices between two
    // tokens and stops generating (it logs the disconnection).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("Disconnected from client") {
        assert!(
            Instant::now() < deadline,
            "the server kept generating; its log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    session.stop().unwrap();
}

#[test]
fn bad_settings_and_bad_tools_are_refused_with_the_field_named() {
    let refused = Backend::from_json(
        r#"{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts",
            "agent":{"provider":"openai","base_url":"http://127.0.0.1:1","temperature":7}}"#,
    )
    .err()
    .unwrap();
    assert_eq!(refused.status(), VbStatus::VB_ERR_INVALID_CONFIG);
    assert!(
        refused.message().starts_with("agent.temperature"),
        "{}",
        refused.message()
    );

    let backend = Backend::from_json(
        r#"{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts",
            "persistence":{"path":""},
            "agent":{"provider":"openai","base_url":"http://127.0.0.1:1","tools":["clock"]}}"#,
    )
    .unwrap();
    let tool = |name: &str| Tool {
        name: name.into(),
        description: String::new(),
        parameters: serde_json::json!({"type": "object"}),
        handler: Arc::new(|_| Ok(String::new())),
    };
    let bad_name = backend.add_tool(tool("get weather")).unwrap_err();
    assert_eq!(bad_name.status(), VbStatus::VB_ERR_INVALID_ARGUMENT);
    backend.add_tool(tool("calendar")).unwrap();
    let twice = backend.add_tool(tool("calendar")).unwrap_err();
    assert!(
        twice.message().contains("already added"),
        "{}",
        twice.message()
    );
    backend.start().unwrap();
    // The configuration names a tool the host never added: each session says so.
    let missing = backend
        .create_session(SessionConfig::default(), None, None)
        .err()
        .unwrap();
    assert_eq!(missing.status(), VbStatus::VB_ERR_INVALID_CONFIG);
    assert!(
        missing
            .message()
            .contains("agent.tools: no tool named 'clock' was added (added: calendar)"),
        "{}",
        missing.message()
    );
    // A session may not carry a key of its own (session configurations are persisted).
    let keyed = SessionConfig {
        agent: serde_json::json!({"api_key": "sk-x"}),
        ..SessionConfig::default()
    };
    let e = backend.create_session(keyed, None, None).err().unwrap();
    assert!(e.message().starts_with("agent.api_key"), "{}", e.message());
    // The embedded model does not call tools: a session on it, with the host's tools there,
    // is refused rather than left to ignore them.
    let embedded = SessionConfig {
        agent: serde_json::json!({"provider": "embedded", "base_url": null, "tools": null}),
        ..SessionConfig::default()
    };
    let e = backend.create_session(embedded, None, None).err().unwrap();
    assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG);
    assert!(
        e.message()
            .contains("the embedded model does not call tools, so the host's tools (calendar)"),
        "{}",
        e.message()
    );
    let late = backend.add_tool(tool("late")).unwrap_err();
    assert_eq!(late.status(), VbStatus::VB_ERR_INVALID_STATE);
    backend.stop(Duration::ZERO).unwrap();
}

#[test]
fn the_embedded_model_answers_a_spoken_question_offline() {
    let _one = ONE_SERVER.lock().unwrap_or_else(|p| p.into_inner());
    // SmolLM2-135M-Instruct in-process (scripts/fetch-models.sh installs it); greedy decoding.
    let backend = spoken_backend(
        r#"{"provider":"embedded","max_tokens":40}"#,
        r#","agent_timeout_ms":60000"#,
    );
    backend.start().unwrap();
    let session = session_without_agent(&backend);
    say_as_user(&session, "What is the capital of France?");
    let (events, audio) = play_until(&session, reply_finished());
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let answer = texts(&events, K::VB_EVENT_AGENT_RESPONSE).concat();
    assert!(answer.contains("Paris"), "the model answered {answer:?}");
    assert!(audio.iter().filter(|s| s.unsigned_abs() > 300).count() > 16000);
    if let Some(m) = events.iter().find(|e| e.kind == K::VB_EVENT_TURN_METRICS) {
        println!(
            "first turn (model loaded in it): transcript {} ms, first text {} ms, first audio {} ms after the speech ended",
            m.metrics.stt_final_us / 1000,
            m.metrics.agent_first_text_us / 1000,
            m.metrics.first_output_audio_us / 1000
        );
    }
    // The follow-up makes sense only with the first turn in the context: the answer is about
    // Germany's capital. (A 135M model's German is another matter: greedy decoding answers "Der
    // Führei is the capital of Germany.")
    say_as_user(&session, "What about Germany?");
    let (events, _) = play_until(&session, reply_finished());
    let answer = texts(&events, K::VB_EVENT_AGENT_RESPONSE).concat();
    assert!(
        answer.contains("capital") && answer.contains("Germany"),
        "the model answered {answer:?}"
    );
    session.stop().unwrap();
    backend.stop(Duration::ZERO).unwrap();
}

/// The embedded model's answer to `question` after `history`, greedy, at most 24 tokens.
fn embedded_answer(agent: &EmbeddedAgent, history: &[Turn], question: &str) -> String {
    let mut answer = String::new();
    agent
        .generate(history, question, &mut |piece| {
            answer.push_str(piece);
            true
        })
        .expect("the model answers");
    answer
}

fn turn(said: &str, answered: &str) -> Turn {
    Turn {
        transcript: Some(said.to_owned()),
        reply: Some(answered.to_owned()),
        interrupted: false,
    }
}

#[test]
fn a_prepared_conversation_leaves_only_the_question_to_compute() {
    // The engine calls `prepare` after each turn (while the user speaks the next one): turns the
    // model did not answer itself (a host's rules, an interrupted reply) are computed then, not
    // at the next question, and the answer is the same as when all is computed at once.
    // The model is shared in the process and counts its work: one test on it at a time.
    let _one = ONE_SERVER.lock().unwrap_or_else(|p| p.into_inner());
    let agent = EmbeddedAgent::new(EmbeddedSettings {
        model_path: default_model_path(),
        system_prompt: DEFAULT_SYSTEM_PROMPT.to_owned(),
        temperature: 0.0,
        max_tokens: 24,
        context_tokens: 2048,
        seed: 1,
    })
    .expect("scripts/fetch-models.sh installs the model");
    agent.wait_loaded().unwrap();
    assert!(
        agent.prepares(),
        "the engine calls prepare only for agents that say they do"
    );
    let history = [
        turn("What time is it?", "It is 3:04 PM."),
        turn("What is twelve plus seven?", "12 plus 7 is 19."),
    ];
    let question = "Tell me a fun fact about octopuses.";

    let before = agent.tokens_computed();
    let cold = embedded_answer(&agent, &history, question);
    let cold_cost = agent.tokens_computed() - before;

    let before = agent.tokens_computed();
    agent.prepare(&history);
    let prepare_cost = agent.tokens_computed() - before;
    let before = agent.tokens_computed();
    let warm = embedded_answer(&agent, &history, question);
    let warm_cost = agent.tokens_computed() - before;
    println!(
        "cold: {cold_cost} tokens; prepared: {prepare_cost} ahead + {warm_cost} at the question"
    );
    assert_eq!(warm, cold, "the same answer from the prepared conversation");
    assert!(prepare_cost >= 30, "the two turns were computed ahead");
    assert_eq!(
        warm_cost + prepare_cost,
        cold_cost,
        "nothing computed twice"
    );

    // After an answer of its own, preparing the conversation that holds it computes only the
    // answer's end: the cache already holds the rest.
    let mut longer = history.to_vec();
    longer.push(turn(question, &warm));
    let before = agent.tokens_computed();
    agent.prepare(&longer);
    let cost = agent.tokens_computed() - before;
    assert!(
        cost <= 3,
        "{cost} tokens computed to prepare the model's own turn"
    );

    // A reply cut short by barge-in leaves the cache (it holds more of the answer than was
    // said): the conversation saved before the question is the start, not the system prompt.
    let question = "How do I boil an egg?";
    let _ = embedded_answer(&agent, &longer, question);
    longer.push(turn(question, "Put the egg"));
    let before = agent.tokens_computed();
    agent.prepare(&longer);
    let cost = agent.tokens_computed() - before;
    assert!(
        cost <= 25,
        "{cost} tokens to prepare the cut turn: the conversation before it was computed again"
    );
}

#[test]
fn agents_on_one_model_file_share_it_and_keep_their_system_prompts() {
    // Sessions with settings of their own (an `agent` override) get agents of their own: they
    // share the model in memory, and each one's system prompt stays computed.
    let _one = ONE_SERVER.lock().unwrap_or_else(|p| p.into_inner());
    let agent = |system_prompt: &str| {
        EmbeddedAgent::new(EmbeddedSettings {
            model_path: default_model_path(),
            system_prompt: system_prompt.to_owned(),
            temperature: 0.0,
            max_tokens: 12,
            context_tokens: 2048,
            seed: 1,
        })
        .expect("scripts/fetch-models.sh installs the model")
    };
    let front_desk = agent(DEFAULT_SYSTEM_PROMPT);
    front_desk.wait_loaded().unwrap();
    let concierge = agent("You are a hotel's concierge. Answer in one short sentence.");
    let started = Instant::now();
    concierge.wait_loaded().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the second agent loaded the model again ({:?})",
        started.elapsed()
    );
    assert_eq!(
        concierge.tokens_computed(),
        front_desk.tokens_computed(),
        "one model, one count"
    );
    let question = "Where can I eat tonight?";
    let cost = |agent: &EmbeddedAgent| {
        let before = agent.tokens_computed();
        let answer = embedded_answer(agent, &[], question);
        (agent.tokens_computed() - before, answer)
    };
    let (first, _) = cost(&concierge);
    let _ = cost(&front_desk);
    let (again, answer) = cost(&concierge);
    println!("concierge: {first} tokens computed, then {again}: {answer:?}");
    assert!(
        again == first,
        "the concierge's system prompt was computed again ({first} then {again} tokens)"
    );
}

#[test]
fn embedded_settings_are_checked() {
    let cases = [
        (
            r#"{"provider":"embedded","model_path":"/nonexistent.gguf"}"#,
            "agent.model_path: no model file at /nonexistent.gguf",
        ),
        (
            r#"{"provider":"embedded","base_url":"http://127.0.0.1:1"}"#,
            "agent.base_url: not a setting of the embedded provider",
        ),
        (
            r#"{"provider":"embedded","max_tokens":0}"#,
            "agent.max_tokens",
        ),
        (
            r#"{"provider":"gemini"}"#,
            "no agent provider named 'gemini'",
        ),
    ];
    for (agent, says) in cases {
        let e = Backend::from_json(&format!(
            r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts","agent":{agent}}}"#
        ))
        .err()
        .unwrap_or_else(|| panic!("{agent} was accepted"));
        assert!(e.message().contains(says), "{agent}: {}", e.message());
    }
}
