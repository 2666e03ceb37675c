//! The `pipecat` backend against a real Pipecat bot: pipecat-ai 1.14.0 running
//! `tests/pipecat/bot.py` (Silero VAD, faster-whisper, a rule-based responder, eSpeak NG) on
//! 127.0.0.1, one bot per test, killed when the test ends. The user's side is eSpeak NG speech
//! pushed at real-time pace through the Rust API, as a host with a microphone would.
//!
//! Needs the venv of `scripts/setup.sh` (`scripts/python-env.sh`). Bot tests run one at a time:
//! each bot runs Whisper, and two cores are enough for one.

mod common;

use std::sync::Mutex;

use common::pipecat::{PipecatBot, bot_reply, free_port};
use common::{
    back_to_listening, espeak_speech, events_until, kinds, play_until, push_realtime,
    readable_over_the_next_50_ms, reply_finished, silence, texts,
};
use voicebackend::{Backend, Event, Session, SessionConfig, VbEventKind, VbSessionState, VbStatus};

use VbEventKind::*;
use VbSessionState::*;

/// The host's rate: the bot speaks at 16 kHz, so its audio is resampled on the way.
const HOST_RATE: u32 = 48000;

static ONE_BOT_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_bot_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_BOT_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A started `pipecat` backend for the bot at `url`; `extra` is merged into its JSON.
fn pipecat_backend(url: &str, extra: &str) -> Backend {
    let json =
        format!(r#"{{"provider":"pipecat","provider_config":{{"pipecat_url":"{url}"}}{extra}}}"#);
    let backend = Backend::from_json(&json).expect("backend config");
    backend.start().expect("start");
    backend
}

/// A started session with no agent: the bot answers.
fn session_without_agent(backend: &Backend) -> Session {
    let config = SessionConfig {
        input_sample_rate: HOST_RATE,
        output_sample_rate: HOST_RATE,
        ..SessionConfig::default()
    };
    let session = backend
        .create_session(config, None, None)
        .expect("a session needs no agent on the pipecat backend");
    session.start().expect("start");
    session
}

/// `text` spoken by eSpeak NG at the host rate, after half a second of silence.
fn spoken(text: &str) -> Vec<i16> {
    let mut pcm = silence(500, HOST_RATE);
    pcm.extend(to_host_rate(&espeak_speech(text, "en-us")));
    pcm
}

/// `text` spoken, then the silence that ends the turn.
fn utterance(text: &str) -> Vec<i16> {
    let mut pcm = spoken(text);
    pcm.extend(silence(1000, HOST_RATE));
    pcm
}

fn to_host_rate(pcm_16k: &[i16]) -> Vec<i16> {
    voicebackend::dsp::resample::StreamResampler::convert(pcm_16k, 16000, HOST_RATE)
}

/// Samples between the first and the last one louder than a whisper.
fn voiced_span(pcm: &[i16]) -> usize {
    let loud = |s: &i16| s.unsigned_abs() > 300;
    match (pcm.iter().position(loud), pcm.iter().rposition(loud)) {
        (Some(first), Some(last)) => last - first + 1,
        _ => 0,
    }
}

/// Kinds of `events`, with the new state of each state change.
fn sequence(events: &[Event]) -> Vec<(VbEventKind, Option<VbSessionState>)> {
    events
        .iter()
        .map(|e| {
            (
                e.kind,
                (e.kind == VB_EVENT_STATE_CHANGED).then_some(e.state),
            )
        })
        .collect()
}

fn the_text(events: &[Event], kind: VbEventKind) -> String {
    let all = texts(events, kind);
    assert_eq!(
        all.len(),
        1,
        "one {kind:?} expected in {:#?}",
        kinds(events)
    );
    all[0].clone()
}

#[test]
fn a_spoken_question_gets_the_bots_spoken_answer_with_the_events_of_a_local_turn() {
    let _serial = one_bot_at_a_time();
    let bot = PipecatBot::start();
    let backend = pipecat_backend(&bot.url(), "");
    let session = session_without_agent(&backend);
    bot.wait_for_client();

    let mut audio = Vec::new();
    push_realtime(
        &session,
        &utterance("What is the weather like in Paris today?"),
        HOST_RATE,
        &mut audio,
    );
    let (events, played) = play_until(&session, reply_finished());
    audio.extend(played);

    assert_eq!(
        sequence(&events),
        vec![
            (VB_EVENT_STATE_CHANGED, Some(VB_STATE_LISTENING)),
            (VB_EVENT_SPEECH_STARTED, None),
            (VB_EVENT_STATE_CHANGED, Some(VB_STATE_PROCESSING)),
            (VB_EVENT_SPEECH_STOPPED, None),
            (VB_EVENT_TRANSCRIPT_FINAL, None),
            (VB_EVENT_AGENT_RESPONSE, None),
            (VB_EVENT_STATE_CHANGED, Some(VB_STATE_SPEAKING)),
            (VB_EVENT_TURN_METRICS, None),
            (VB_EVENT_STATE_CHANGED, Some(VB_STATE_LISTENING)),
        ],
        "{events:#?}"
    );
    let transcript = the_text(&events, VB_EVENT_TRANSCRIPT_FINAL);
    assert!(
        transcript.to_lowercase().contains("weather"),
        "the bot heard: {transcript:?}"
    );
    let reply = the_text(&events, VB_EVENT_AGENT_RESPONSE);
    assert_eq!(reply, bot_reply(&transcript));
    let metrics = events
        .iter()
        .find(|e| e.kind == VB_EVENT_TURN_METRICS)
        .unwrap()
        .metrics;
    assert!(
        metrics.stt_final_us <= metrics.first_output_audio_us,
        "{metrics:?}"
    );
    assert!(metrics.first_output_audio_us > 0, "{metrics:?}");

    // The reply audio is eSpeak NG's rendition of the reply text (at the host rate): its voiced
    // span matches the same text spoken here to within a tenth.
    let expected = voiced_span(&to_host_rate(&espeak_speech(&reply, "en-us")));
    let got = voiced_span(&audio);
    assert!(
        got.abs_diff(expected) * 10 <= expected,
        "reply audio spans {got} samples, eSpeak NG speaks the reply in {expected}"
    );
}

/// Asks `question` and waits until the reply has played: the events, with the reply's text
/// checked to be the bot's answer to the transcript, given once.
fn ask(session: &Session, question: &str, heard: &str) -> Vec<Event> {
    let mut audio = Vec::new();
    push_realtime(session, &utterance(question), HOST_RATE, &mut audio);
    let (events, played) = play_until(session, reply_finished());
    audio.extend(played);
    let transcript = the_text(&events, VB_EVENT_TRANSCRIPT_FINAL);
    assert!(
        transcript.to_lowercase().contains(heard),
        "the bot heard: {transcript:?}"
    );
    assert_eq!(
        the_text(&events, VB_EVENT_AGENT_RESPONSE),
        bot_reply(&transcript)
    );
    assert!(voiced_span(&audio) > 0, "the reply has no audio");
    events
}

/// The bot has no LLM: it answers with a TTSSpeakFrame, and its words reach the client only as
/// `bot-output` (announced, then completed), `tts-raw-text` and `bot-tts-text`.
#[test]
fn a_bot_without_an_llm_gives_the_words_it_speaks_once_when_it_has_spoken_them() {
    let _serial = one_bot_at_a_time();
    let bot = PipecatBot::start_with(&["--answer", "speak", "--raw-text"]);
    let backend = pipecat_backend(&bot.url(), "");
    let session = session_without_agent(&backend);
    bot.wait_for_client();

    let events = ask(
        &session,
        "What is the weather like in Paris today?",
        "weather",
    );
    // The text comes with the speech: the host has it once the bot has finished speaking
    // (after the turn's metrics, which come as the reply starts to play).
    assert_eq!(
        sequence(&events),
        vec![
            (VB_EVENT_STATE_CHANGED, Some(VB_STATE_LISTENING)),
            (VB_EVENT_SPEECH_STARTED, None),
            (VB_EVENT_STATE_CHANGED, Some(VB_STATE_PROCESSING)),
            (VB_EVENT_SPEECH_STOPPED, None),
            (VB_EVENT_TRANSCRIPT_FINAL, None),
            (VB_EVENT_STATE_CHANGED, Some(VB_STATE_SPEAKING)),
            (VB_EVENT_TURN_METRICS, None),
            (VB_EVENT_AGENT_RESPONSE, None),
            (VB_EVENT_STATE_CHANGED, Some(VB_STATE_LISTENING)),
        ],
        "{events:#?}"
    );
    // The next reply is read afresh.
    let events = ask(&session, "And what about tomorrow?", "tomorrow");
    assert!(!kinds(&events).contains(&VB_EVENT_ERROR), "{events:#?}");
}

/// The bot streams LLM text and sends every message that carries its words: `llm-raw-text`,
/// `bot-llm-text`, `bot-transcription`, `bot-output`, `tts-raw-text`, `bot-tts-text`.
#[test]
fn a_bot_that_sends_every_kind_of_reply_text_gives_its_llm_text_once_before_it_speaks() {
    let _serial = one_bot_at_a_time();
    let bot = PipecatBot::start_with(&["--answer", "llm", "--raw-text"]);
    let backend = pipecat_backend(&bot.url(), "");
    let session = session_without_agent(&backend);
    bot.wait_for_client();

    let events = ask(
        &session,
        "No I do not think so thank you very much",
        "think",
    );
    // The LLM's text is whole at bot-llm-stopped: the host has it before the bot speaks.
    assert_eq!(
        sequence(&events),
        vec![
            (VB_EVENT_STATE_CHANGED, Some(VB_STATE_LISTENING)),
            (VB_EVENT_SPEECH_STARTED, None),
            (VB_EVENT_STATE_CHANGED, Some(VB_STATE_PROCESSING)),
            (VB_EVENT_SPEECH_STOPPED, None),
            (VB_EVENT_TRANSCRIPT_FINAL, None),
            (VB_EVENT_AGENT_RESPONSE, None),
            (VB_EVENT_STATE_CHANGED, Some(VB_STATE_SPEAKING)),
            (VB_EVENT_TURN_METRICS, None),
            (VB_EVENT_STATE_CHANGED, Some(VB_STATE_LISTENING)),
        ],
        "{events:#?}"
    );
}

#[test]
fn user_speech_while_the_bot_speaks_interrupts_it_and_the_bot_answers_the_new_turn() {
    let _serial = one_bot_at_a_time();
    let bot = PipecatBot::start();
    let backend = pipecat_backend(&bot.url(), "");
    let session = session_without_agent(&backend);
    bot.wait_for_client();

    let mut first_reply_audio = Vec::new();
    push_realtime(
        &session,
        &utterance(
            "Please tell me a long story about the sea and the mountains and the rivers of the north.",
        ),
        HOST_RATE,
        &mut first_reply_audio,
    );
    let (events, played) = play_until(&session, |e| {
        e.kind == VB_EVENT_STATE_CHANGED && e.state == VB_STATE_SPEAKING
    });
    first_reply_audio.extend(played);
    let first_reply = the_text(&events, VB_EVENT_AGENT_RESPONSE);

    // The user talks over the bot.
    push_realtime(
        &session,
        &spoken("Wait what time is it right now"),
        HOST_RATE,
        &mut first_reply_audio,
    );
    let events = events_until(&session, |e| e.kind == VB_EVENT_INTERRUPTED);
    assert!(
        !kinds(&events).contains(&VB_EVENT_ERROR),
        "{:#?}",
        kinds(&events)
    );
    assert_eq!(
        readable_over_the_next_50_ms(&session),
        0,
        "the first reply's audio must stop at once"
    );
    let whole_first_reply = voiced_span(&to_host_rate(&espeak_speech(&first_reply, "en-us")));
    assert!(
        voiced_span(&first_reply_audio) < whole_first_reply * 3 / 4,
        "the first reply was played nearly whole: {} of {whole_first_reply} samples",
        voiced_span(&first_reply_audio)
    );

    // The turn that interrupted is answered.
    let mut audio = Vec::new();
    push_realtime(&session, &silence(1000, HOST_RATE), HOST_RATE, &mut audio);
    let (events, played) = play_until(&session, reply_finished());
    audio.extend(played);
    let transcript = the_text(&events, VB_EVENT_TRANSCRIPT_FINAL);
    assert!(
        transcript.to_lowercase().contains("time"),
        "the bot heard: {transcript:?}"
    );
    assert_eq!(
        the_text(&events, VB_EVENT_AGENT_RESPONSE),
        bot_reply(&transcript)
    );
    assert!(voiced_span(&audio) > 0, "the second reply has no audio");
}

#[test]
fn an_unreachable_bot_is_a_connection_failure_event_and_the_session_stays_usable() {
    let port = free_port();
    let backend = pipecat_backend(
        &format!("ws://127.0.0.1:{port}/ws"),
        r#","retry":{"max_attempts":3,"initial_backoff_ms":10,"max_backoff_ms":20}"#,
    );
    let session = session_without_agent(&backend);
    let events = events_until(&session, |e| e.kind == VB_EVENT_ERROR);
    let error = events.last().unwrap();
    assert_eq!(error.error, VbStatus::VB_ERR_CONNECTION_FAILED);
    let text = error.text.as_deref().unwrap_or_default();
    assert!(
        text.starts_with(&format!(
            "s2s pipecat: cannot connect to ws://127.0.0.1:{port}/ws"
        )),
        "{text}"
    );
    assert!(text.ends_with("(after 3 attempts)"), "{text}");
    events_until(&session, |e| {
        e.kind == VB_EVENT_STATE_CHANGED && e.state == VB_STATE_ERROR
    });
    assert_eq!(session.state(), VB_STATE_ERROR);
    session
        .process_audio(&silence(20, HOST_RATE))
        .expect("audio is still taken");
    session.stop().expect("stop");
}

#[test]
fn a_bot_that_dies_mid_reply_is_reported_and_the_session_reconnects_to_its_successor() {
    let _serial = one_bot_at_a_time();
    let bot = PipecatBot::start();
    let port = bot.port();
    let backend = pipecat_backend(
        &bot.url(),
        r#","retry":{"max_attempts":20,"initial_backoff_ms":200,"max_backoff_ms":3000}"#,
    );
    let session = session_without_agent(&backend);
    bot.wait_for_client();

    let mut audio = Vec::new();
    push_realtime(
        &session,
        &utterance("Please read me the whole of the news from this morning."),
        HOST_RATE,
        &mut audio,
    );
    play_until(&session, |e| {
        e.kind == VB_EVENT_STATE_CHANGED && e.state == VB_STATE_SPEAKING
    });
    bot.kill();

    let (events, _) = play_until(&session, |e| e.kind == VB_EVENT_ERROR);
    let error = events.last().unwrap();
    assert_eq!(error.error, VbStatus::VB_ERR_CONNECTION_FAILED);
    let text = error.text.as_deref().unwrap_or_default();
    assert!(
        text.starts_with(&format!(
            "s2s pipecat: lost the connection to ws://127.0.0.1:{port}"
        )),
        "{text}"
    );
    // The reply ends with what had arrived; the session listens again.
    play_until(&session, back_to_listening);

    let successor = PipecatBot::start_on(port);
    successor.wait_for_client();
    let mut audio = Vec::new();
    push_realtime(
        &session,
        &utterance("Are you back again?"),
        HOST_RATE,
        &mut audio,
    );
    let (events, _) = play_until(&session, reply_finished());
    let transcript = the_text(&events, VB_EVENT_TRANSCRIPT_FINAL);
    assert!(
        transcript.to_lowercase().contains("back"),
        "the new bot heard: {transcript:?}"
    );
    assert_eq!(
        the_text(&events, VB_EVENT_AGENT_RESPONSE),
        bot_reply(&transcript)
    );
}

/// A real Pipecat bot never sends a broken frame, so a small WebSocket peer on 127.0.0.1 plays
/// a faulty bot here: it checks the client's `client-ready`, sends bytes that are no Pipecat
/// frame, then a valid RTVI transcript.
#[test]
fn a_frame_that_does_not_decode_is_a_provider_error_and_the_session_goes_on() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use voicebackend::provider::network::pipecat::frames::{self, Kind};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let faulty_bot = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            let Some(Ok(Message::Binary(first))) = ws.next().await else {
                panic!("the client's first message is not a binary frame")
            };
            let Ok(Kind::Message(hello)) = frames::decode(&first) else {
                panic!("the client's first frame is not a MessageFrame")
            };
            ws.send(Message::Binary(vec![0xff, 0xff, 0xff].into()))
                .await
                .unwrap();
            let transcript = r#"{"label": "rtvi-ai", "type": "user-input", "data": {"text": " Hello there. ", "input_type": "transcription", "timestamp": "t", "final": true}}"#;
            ws.send(Message::Binary(
                frames::encode_message(transcript.to_owned()).into(),
            ))
            .await
            .unwrap();
            while let Some(Ok(_)) = ws.next().await {}
            hello.data
        })
    });

    let backend = pipecat_backend(&format!("ws://127.0.0.1:{port}"), "");
    let session = session_without_agent(&backend);
    let events = events_until(&session, |e| e.kind == VB_EVENT_TRANSCRIPT_FINAL);
    let errors: Vec<&Event> = events.iter().filter(|e| e.kind == VB_EVENT_ERROR).collect();
    assert_eq!(errors.len(), 1, "{events:#?}");
    assert_eq!(errors[0].error, VbStatus::VB_ERR_PROVIDER);
    let text = errors[0].text.as_deref().unwrap_or_default();
    assert!(
        text.starts_with("s2s pipecat: a 3-byte message from the bot is not a Pipecat frame"),
        "{text}"
    );
    assert_eq!(the_text(&events, VB_EVENT_TRANSCRIPT_FINAL), "Hello there.");
    assert_eq!(session.state(), VB_STATE_LISTENING);
    session.stop().unwrap();

    let hello: serde_json::Value = serde_json::from_str(&faulty_bot.join().unwrap()).unwrap();
    assert_eq!(hello["label"], "rtvi-ai");
    assert_eq!(hello["type"], "client-ready");
    assert_eq!(hello["data"]["version"], "2.2.0");
}

#[test]
fn a_bot_that_refuses_the_session_is_an_error_once_the_retries_are_spent() {
    let _serial = one_bot_at_a_time();
    let bot = PipecatBot::start();
    let backend = pipecat_backend(
        &bot.url(),
        r#","retry":{"max_attempts":3,"initial_backoff_ms":10,"max_backoff_ms":40}"#,
    );
    let first = session_without_agent(&backend);
    bot.wait_for_client();
    // SingleClientWebsocketServerTransport serves one client: it closes the second at once.
    let second = session_without_agent(&backend);
    let events = events_until(&second, |e| {
        e.kind == VB_EVENT_STATE_CHANGED && e.state == VB_STATE_ERROR
    });
    let errors: Vec<&Event> = events.iter().filter(|e| e.kind == VB_EVENT_ERROR).collect();
    assert_eq!(
        errors.len(),
        3,
        "two losses and the final error: {events:#?}"
    );
    assert!(
        errors
            .iter()
            .all(|e| e.error == VbStatus::VB_ERR_CONNECTION_FAILED)
    );
    let last = errors[2].text.as_deref().unwrap_or_default();
    assert!(
        last.contains("the bot closed the connection (1013 Server already has a connected client)"),
        "{last}"
    );
    assert!(
        last.ends_with("(3 connections in a row ended before the bot sent anything)"),
        "{last}"
    );
    assert_eq!(first.state(), VB_STATE_LISTENING);
}

#[test]
fn speech_before_the_bot_is_reachable_waits_for_the_first_connection() {
    let _serial = one_bot_at_a_time();
    let port = free_port();
    let backend = pipecat_backend(
        &format!("ws://127.0.0.1:{port}"),
        r#","retry":{"max_attempts":20,"initial_backoff_ms":200,"max_backoff_ms":3000}"#,
    );
    let session = session_without_agent(&backend);
    common::push_all(&session, &utterance("Good morning to you."), HOST_RATE);
    let bot = PipecatBot::start_on(port);
    bot.wait_for_client();
    let (events, _) = play_until(&session, reply_finished());
    let transcript = the_text(&events, VB_EVENT_TRANSCRIPT_FINAL);
    assert!(
        transcript.to_lowercase().contains("morning"),
        "the bot heard: {transcript:?}"
    );
    assert_eq!(
        the_text(&events, VB_EVENT_AGENT_RESPONSE),
        bot_reply(&transcript)
    );
    assert!(!kinds(&events).contains(&VB_EVENT_ERROR), "{events:#?}");
}
