//! The realtime path never allocates: a global allocator counts every allocation and free made
//! while a thread is inside realtime work (the realtime loop of every session thread, and the
//! audio calls, PCM and Opus), during a conversation with turns, replies, barge-in, a greeting and
//! an overrun — with every log record forwarded, so that logging inside realtime work would be
//! counted too. (This allocator sees Rust's heap only; tests/c/opus_alloc_test.c counts libopus's
//! `malloc` calls too.)
#![cfg(feature = "test-providers")]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use voicebackend::dsp::resample::StreamResampler;
use voicebackend::rt::shared::{in_realtime_section, realtime_section};
use voicebackend::{Reply, SessionConfig, VbEventKind as K, VbSessionState as S, VbStatus};

/// Allocations and frees made inside realtime sections.
static REALTIME_HEAP_OPS: AtomicUsize = AtomicUsize::new(0);

struct CountingAllocator;

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note() {
    if in_realtime_section() {
        REALTIME_HEAP_OPS.fetch_add(1, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn the_realtime_loop_and_the_audio_calls_never_touch_the_heap() {
    // Everything is logged, as with a host's log callback at its most verbose: a record made
    // inside realtime work would be formatted there, and counted.
    voicebackend::logging::forward(
        Some(Box::new(|_: &voicebackend::logging::LogRecord| {})),
        voicebackend::logging::LevelFilter::TRACE,
    )
    .unwrap();
    // One thread per session (the default), then a pool of two realtime threads serving the
    // sessions: the pool threads' passes (admitting loops, handing them back, running them) are
    // realtime sections too.
    // Then the same with the neural stages on (Silero VAD, Smart Turn): the realtime loop hands
    // frames and questions to the inference pool and reads its answers, still off the heap.
    // And with interruptions decided by words: the barge-in pauses playout, the verdict
    // flushes it. And with preemptive replies: the turn detector reports pauses.
    // Then with noise suppression (RNNoise on the realtime thread), alone and before Silero.
    for (threads, denoise, models) in [
        (0, false, ""),
        (2, false, ""),
        (0, false, NEURAL),
        (2, false, NEURAL),
        (0, false, BY_WORDS),
        (2, false, PREEMPTIVE),
        (1, true, ""),
        (2, true, NEURAL),
    ] {
        converse_with_barge_in_and_overrun(threads, denoise, models);
        assert_eq!(
            REALTIME_HEAP_OPS.load(Ordering::Relaxed),
            0,
            "heap operations inside realtime sections (audio.realtime_threads {threads}, \
             audio.noise_suppression {denoise}{models})"
        );
    }

    // The C entry points add only pointer checks, panic catching and the status record.
    c_audio_calls_stay_off_the_heap();
    assert_eq!(
        REALTIME_HEAP_OPS.load(Ordering::Relaxed),
        0,
        "heap operations in the C audio calls"
    );

    // The Opus calls decode and encode in state made at create; a lost packet, a packet that
    // does not decode and a buffer too small are reported with static messages.
    c_opus_calls_stay_off_the_heap();
    assert_eq!(
        REALTIME_HEAP_OPS.load(Ordering::Relaxed),
        0,
        "heap operations in the C Opus calls"
    );

    // The check itself works: a realtime section that allocates is caught.
    realtime_section(|| drop(std::hint::black_box(vec![0u8; 64])));
    assert_eq!(
        REALTIME_HEAP_OPS.load(Ordering::Relaxed),
        2,
        "one alloc and one free caught"
    );
    let _ = VbStatus::VB_OK;
}

/// Interruptions decided by the user's words (`interruptions.decide_by`).
const BY_WORDS: &str = r#","interruptions":{"decide_by":"words"}"#;

/// Preemptive replies (`turn.preemptive_ms`).
const PREEMPTIVE: &str = r#","turn":{"preemptive_ms":200}"#;

/// The neural VAD and end-of-turn model (configuration keys to add to a backend's); a short
/// bounded wait, so that each turn ends within its closing silence whatever the model says.
const NEURAL: &str =
    r#","vad":{"engine":"silero"},"turn":{"end_of_turn":"smart_turn","max_wait_ms":600}"#;

/// A conversation at 48 kHz in and out (resampling on both edges) with a greeting, a long reply
/// that the next turn barges in on, and an input overrun; a second session starts and stops
/// meanwhile, so that a pool admits and hands back loops while others run. `noise_suppression`:
/// `audio.noise_suppression`.
fn converse_with_barge_in_and_overrun(
    realtime_threads: u32,
    noise_suppression: bool,
    models: &str,
) {
    let backend = test_backend(&format!(
        r#""audio":{{"realtime_threads":{realtime_threads},"noise_suppression":{noise_suppression}}}{models}"#
    ));
    let agent = Arc::new(|_: &str, reply: &mut Reply| -> voicebackend::Result<()> {
        reply.write(&"a fairly long answer. ".repeat(24))?;
        reply.end()
    });
    let config = SessionConfig {
        input_sample_rate: 48000,
        output_sample_rate: 48000,
        ..SessionConfig::default()
    };
    let session = backend
        .create_session(config.clone(), Some(agent.clone()), None)
        .unwrap();
    session.start().unwrap();
    assert_realtime_threads(realtime_threads);
    session.say("Welcome.").unwrap();
    // Silero hears no speech in the synthetic buzz, and RNNoise takes it for noise: those runs
    // speak with eSpeak NG.
    let neural = models.contains("silero") || noise_suppression;
    let turn_audio = |f0: f32, text: &str| {
        if neural {
            let mut pcm = silence(200, 16000);
            pcm.extend(espeak_speech(text, "en-us"));
            pcm.extend(silence(900, 16000));
            StreamResampler::convert(&pcm, 16000, 48000)
        } else {
            utterance(f0, 700, 48000)
        }
    };
    let mut played = Vec::new();
    push_realtime(
        &session,
        &turn_audio(140.0, "What is the weather like today?"),
        48000,
        &mut played,
    );
    events_until(&session, |e| {
        e.kind == K::VB_EVENT_STATE_CHANGED && e.state == S::VB_STATE_SPEAKING
    });
    let other = backend.create_session(config, Some(agent), None).unwrap();
    other.start().unwrap();
    push_realtime(
        &session,
        &turn_audio(230.0, "Stop, I have another question."),
        48000,
        &mut played,
    );
    other.stop().unwrap();
    // The second turn's transcript (eSpeak's pitch is no tell: the neural runs count turns).
    let mut finals = 0;
    let events = events_until(&session, |e| {
        finals += usize::from(e.kind == K::VB_EVENT_TRANSCRIPT_FINAL);
        e.kind == K::VB_EVENT_TRANSCRIPT_FINAL
            && if neural {
                finals == 2
            } else {
                e.text.as_deref().unwrap_or("").contains("230")
            }
    });
    assert!(
        kinds(&events).contains(&K::VB_EVENT_INTERRUPTED),
        "the second turn barged in: {:?}",
        kinds(&events)
    );
    assert!(!played.is_empty());

    // An overrun: more than the input ring holds in one call.
    let flood = speech(140.0, 2000, 48000);
    let outcome = session.process_audio(&flood).unwrap();
    assert!(outcome.dropped > 0);
    events_until(&session, |e| e.kind == K::VB_EVENT_AUDIO_DROPPED);
    session.stop().unwrap();
    let health = backend.health();
    assert!(
        health.frames_processed > 100,
        "the realtime loop ran: {health:?}"
    );
}

/// The session loops run where the mode says: on `vb-rt-pool-*` threads with a pool, on their
/// own `vb-rt-<session>` threads without. (A new thread names itself once it runs: polled.)
fn assert_realtime_threads(pool_threads: u32) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let names: Vec<String> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|n| n.trim().to_owned())
            .collect();
        let pool = names
            .iter()
            .filter(|n| n.starts_with("vb-rt-pool-"))
            .count();
        let own = names
            .iter()
            .filter(|n| {
                n.strip_prefix("vb-rt-")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count();
        let ok = if pool_threads == 0 {
            own >= 1 && pool == 0
        } else {
            pool >= 1 && pool <= pool_threads as usize && own == 0
        };
        if ok {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "realtime_threads {pool_threads}: {names:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Drives a session through the C ABI, with the two audio calls made inside realtime sections.
fn c_audio_calls_stay_off_the_heap() {
    use voicebackend::ffi::backend::{vb_backend_create, vb_backend_free, vb_backend_start};
    use voicebackend::ffi::session::{
        VbCallbacks, VbReply, VbSession, vb_reply_end, vb_session_create, vb_session_free,
        vb_session_process_audio, vb_session_read_audio, vb_session_start,
    };
    unsafe extern "C" fn agent(
        _: *mut std::ffi::c_void,
        _: *mut VbSession,
        _: *const std::ffi::c_char,
        reply: *mut VbReply,
    ) -> VbStatus {
        // SAFETY: the reply the engine passed in, during the call.
        unsafe { vb_reply_end(reply) }
    }
    let config = c"{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\",\"tts_provider\":\"test-tone-tts\"}";
    let callbacks = VbCallbacks {
        user_data: std::ptr::null_mut(),
        on_transcript: Some(agent),
        on_event: None,
    };
    let (mut backend, mut session) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: valid strings and out-pointers; the handles are freed at the end.
    unsafe {
        assert_eq!(
            vb_backend_create(config.as_ptr(), &mut backend),
            VbStatus::VB_OK
        );
        assert_eq!(vb_backend_start(backend), VbStatus::VB_OK);
        assert_eq!(
            vb_session_create(backend, std::ptr::null(), &callbacks, &mut session),
            VbStatus::VB_OK
        );
        assert_eq!(vb_session_start(session), VbStatus::VB_OK);
    }
    let audio = utterance(150.0, 600, 16000);
    let mut out = [0i16; 320];
    for frame in audio.chunks(320) {
        let (mut accepted, mut written) = (0usize, 0usize);
        realtime_section(|| {
            // SAFETY: a live session and buffers of the given lengths.
            unsafe {
                vb_session_process_audio(session, frame.as_ptr(), frame.len(), &mut accepted);
                vb_session_read_audio(session, out.as_mut_ptr(), out.len(), &mut written);
            }
        });
        assert_eq!(accepted, frame.len());
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // SAFETY: handles from the calls above, freed once.
    unsafe {
        vb_session_free(session);
        vb_backend_free(backend);
    }
}

/// Drives an Opus session through the C ABI, with `vb_session_process_opus` (packets, lost
/// packets, garbage) and `vb_session_read_opus` (a greeting's packets, a buffer too small) made
/// inside realtime sections.
fn c_opus_calls_stay_off_the_heap() {
    use voicebackend::ffi::backend::{vb_backend_create, vb_backend_free, vb_backend_start};
    use voicebackend::ffi::session::{
        vb_session_create, vb_session_free, vb_session_say, vb_session_start,
    };
    use voicebackend::ffi::session_opus::{
        VB_OPUS_MAX_PACKET, vb_session_process_opus, vb_session_read_opus,
    };
    use voicebackend::transport::media::opus::{EncoderSettings, OpusEncoder};
    // No barge-in: the greeting plays on while the user speaks.
    let config = c"{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\",\"tts_provider\":\"test-tone-tts\",\"pipeline_type\":\"stt_tts\",\"interruptions\":{\"enabled\":false}}";
    let session_config = c"{\"input_codec\":\"opus\",\"output_codec\":\"opus\",\"input_sample_rate\":48000,\"output_sample_rate\":24000}";
    let (mut backend, mut session) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: valid strings and out-pointers; the handles are freed at the end. No agent: the
    // session's turns fail (reported as events), which the audio calls do not notice.
    unsafe {
        assert_eq!(
            vb_backend_create(config.as_ptr(), &mut backend),
            VbStatus::VB_OK
        );
        assert_eq!(vb_backend_start(backend), VbStatus::VB_OK);
        let callbacks = voicebackend::ffi::session::VbCallbacks {
            user_data: std::ptr::null_mut(),
            on_transcript: Some(agent),
            on_event: None,
        };
        assert_eq!(
            vb_session_create(backend, session_config.as_ptr(), &callbacks, &mut session),
            VbStatus::VB_OK
        );
        assert_eq!(vb_session_start(session), VbStatus::VB_OK);
        assert_eq!(
            vb_session_say(session, c"A greeting over Opus.".as_ptr()),
            VbStatus::VB_OK
        );
    }
    unsafe extern "C" fn agent(
        _: *mut std::ffi::c_void,
        _: *mut voicebackend::ffi::session::VbSession,
        _: *const std::ffi::c_char,
        reply: *mut voicebackend::ffi::session::VbReply,
    ) -> VbStatus {
        // SAFETY: the reply the engine passed in, during the call.
        unsafe { voicebackend::ffi::session::vb_reply_end(reply) }
    }
    let mut encoder = OpusEncoder::at_rate(48000, EncoderSettings::default()).unwrap();
    let audio = utterance(150.0, 600, 48000);
    let garbage = [0x03u8, 0x00];
    let mut packet = [0u8; VB_OPUS_MAX_PACKET];
    let mut out = [0u8; VB_OPUS_MAX_PACKET];
    let (mut packets_read, mut too_small) = (0, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut frames = audio.chunks(960);
    // The user's turn, then until the greeting (21 characters, 420 ms) has been read.
    while packets_read < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "{packets_read} packets read"
        );
        let frame = frames.next();
        let len = match frame {
            Some(frame) if frame.len() == 960 => encoder.encode(frame, &mut packet).unwrap(),
            _ => 0,
        };
        let mut statuses = [VbStatus::VB_OK; 4];
        let mut written = 0usize;
        realtime_section(|| {
            // SAFETY: a live session, buffers of the given lengths.
            unsafe {
                statuses[0] = vb_session_process_opus(session, packet.as_ptr(), len);
                statuses[1] = vb_session_process_opus(session, garbage.as_ptr(), garbage.len());
                statuses[2] = vb_session_read_opus(session, out.as_mut_ptr(), 1, &mut written);
                statuses[3] =
                    vb_session_read_opus(session, out.as_mut_ptr(), out.len(), &mut written);
            }
        });
        assert_eq!(statuses[0], VbStatus::VB_OK, "a packet, or a lost one");
        assert_eq!(statuses[1], VbStatus::VB_ERR_INVALID_ARGUMENT, "garbage");
        if statuses[2] == VbStatus::VB_ERR_INVALID_ARGUMENT {
            too_small += 1;
        }
        assert_eq!(statuses[3], VbStatus::VB_OK);
        if written > 0 {
            packets_read += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        too_small > 0,
        "a one-byte buffer was refused, the packet kept"
    );
    // SAFETY: handles from the calls above, freed once.
    unsafe {
        vb_session_free(session);
        vb_backend_free(backend);
    }
}
