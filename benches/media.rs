//! Per-frame cost of the media edge of WebRTC transports (LiveKit), one 20 ms frame at a time
//! (criterion, release build):
//!
//! - `media/receive_48k`: what the transport does for each frame of the user's audio: one RTP
//!   packet into the jitter buffer, one frame out (Opus decode included) and into a session's
//!   input ring (the realtime thread's resampling to 16 kHz is `stage/resample_48k_to_16k` in
//!   `benches/realtime.rs`);
//! - `media/receive_48k_with_loss`: the same with every 10th packet missing (FEC or concealment);
//! - `media/encode_48k/complexity_N`: Opus encoding of one frame of the agent's voice at
//!   complexity 0, 5 (the default) and 10.
//!
//! Run: `cargo bench --bench media -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

use voicebackend::transport::media::jitter::JitterBuffer;
use voicebackend::transport::media::opus::{EncoderSettings, FRAME_20MS, MAX_PACKET, OpusEncoder};

/// Speech-like audio: a 140 Hz buzz with a formant-like second partial, 48 kHz.
fn voice(frames: usize) -> Vec<i16> {
    (0..frames * FRAME_20MS)
        .map(|i| {
            let t = i as f32 / 48_000.0;
            let s = (t * 140.0 * std::f32::consts::TAU).sin() * 0.5
                + (t * 700.0 * std::f32::consts::TAU).sin() * 0.2;
            (s * 12_000.0) as i16
        })
        .collect()
}

/// `frames` packets of voice at complexity 5, as a LiveKit user's microphone would send.
fn packets(frames: usize) -> Vec<Vec<u8>> {
    let mut encoder = OpusEncoder::new(EncoderSettings::default()).unwrap();
    voice(frames)
        .chunks(FRAME_20MS)
        .map(|frame| {
            let mut out = [0u8; MAX_PACKET];
            let n = encoder.encode(frame, &mut out).unwrap();
            out[..n].to_vec()
        })
        .collect()
}

fn bench_receive(c: &mut Criterion) {
    let mut group = c.benchmark_group("media");
    let packets = packets(500);
    for (name, lose_every) in [("receive_48k", 0), ("receive_48k_with_loss", 10)] {
        let mut jitter = JitterBuffer::new().unwrap();
        let (mut input, mut drain) = rtrb::RingBuffer::<i16>::new(48_000);
        let mut frame = [0i16; FRAME_20MS];
        let mut n: u64 = 0;
        let start = Instant::now();
        group.bench_function(name, |b| {
            b.iter(|| {
                // Packets every 20 ms on the RTP clock and on the arrival clock: no jitter.
                let (seq, ts) = (n as u16, (n as u32).wrapping_mul(FRAME_20MS as u32));
                let arrival = start + Duration::from_millis(20 * n);
                if lose_every == 0 || n % lose_every != 0 {
                    jitter.push(
                        seq,
                        ts,
                        black_box(&packets[n as usize % packets.len()]),
                        arrival,
                    );
                }
                n += 1;
                jitter.pull(&mut frame).unwrap();
                if let Ok(chunk) = input.write_chunk_uninit(FRAME_20MS) {
                    chunk.fill_from_iter(frame.iter().copied());
                }
                // The realtime thread's side, outside what the transport pays for.
                if let Ok(chunk) = drain.read_chunk(drain.slots()) {
                    chunk.commit_all();
                }
            })
        });
        let stats = jitter.stats();
        assert_eq!((stats.late, stats.skipped), (0, 0), "{name}: {stats:?}");
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("media/encode_48k");
    let audio = voice(500);
    for complexity in [0u8, 5, 10] {
        let mut encoder = OpusEncoder::new(EncoderSettings {
            complexity,
            ..EncoderSettings::default()
        })
        .unwrap();
        let mut k = 0;
        let mut packet = [0u8; MAX_PACKET];
        group.bench_with_input(
            BenchmarkId::new("complexity", complexity),
            &complexity,
            |b, _| {
                b.iter(|| {
                    let frame = &audio[(k % 500) * FRAME_20MS..(k % 500 + 1) * FRAME_20MS];
                    k += 1;
                    black_box(encoder.encode(black_box(frame), &mut packet).unwrap())
                })
            },
        );
    }
    group.finish();
}

criterion_group!(media, bench_receive, bench_encode);
criterion_main!(media);
