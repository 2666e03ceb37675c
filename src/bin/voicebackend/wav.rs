//! WAV files in and out: any rate, mono or stereo, integer or float samples in; 16-bit mono out.

use std::path::Path;

/// Mono 16-bit audio and its rate.
pub struct Audio {
    /// Samples, stereo mixed down to mono.
    pub samples: Vec<i16>,
    /// Sample rate in Hz.
    pub rate: u32,
}

/// Reads `path`, mixing channels down to mono.
pub fn read(path: &Path) -> Result<Audio, String> {
    let reader = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    decode(reader).map_err(|e| format!("{}: {e}", path.display()))
}

/// The samples of an opened WAV file, channels mixed down to mono (what [`read`] does after
/// opening; the fuzz target `wav_reader` feeds it files from memory).
pub fn decode<R: std::io::Read>(mut reader: hound::WavReader<R>) -> Result<Audio, hound::Error> {
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
        }
    }?;
    let samples = interleaved
        .chunks(channels)
        .map(|frame| {
            let mono = frame.iter().sum::<f32>() / frame.len() as f32;
            (mono * 32768.0).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    Ok(Audio {
        samples,
        rate: spec.sample_rate,
    })
}

/// Writes mono 16-bit PCM.
pub fn write(path: &Path, samples: &[i16], rate: u32) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer =
        hound::WavWriter::create(path, spec).map_err(|e| format!("{}: {e}", path.display()))?;
    for &s in samples {
        writer
            .write_sample(s)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    writer
        .finalize()
        .map_err(|e| format!("{}: {e}", path.display()))
}
