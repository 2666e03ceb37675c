//! A WAV file as the command-line tool reads it (`converse --input`, `transcribe`): any rate,
//! channels and sample format, mixed down to mono (`src/bin/voicebackend/wav.rs`, compiled in
//! here as it is).
//!
//! Checks: no panic; a file that reads gives one mono sample per frame of its header's sample
//! count, at its header's rate.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/bin/voicebackend/wav.rs"]
mod wav;

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = hound::WavReader::new(Cursor::new(data)) else {
        return;
    };
    let spec = reader.spec();
    let samples = reader.len() as usize;
    let Ok(audio) = wav::decode(reader) else {
        return;
    };
    let channels = usize::from(spec.channels.max(1));
    assert_eq!(audio.samples.len(), samples.div_ceil(channels));
    assert_eq!(audio.rate, spec.sample_rate);
});
