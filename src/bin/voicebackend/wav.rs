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
            // hound reads integer samples of 1 to 32 bits; the header may claim anything.
            if !(1..=32).contains(&spec.bits_per_sample) {
                return Err(hound::Error::Unsupported);
            }
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

#[cfg(test)]
mod tests {
    use super::decode;

    /// A PCM WAV file whose header claims `bits` bits per sample, with `data` as its samples.
    fn wav(bits: u16, data: &[u8]) -> Vec<u8> {
        let block = bits.div_ceil(8);
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(4 + 24 + 8 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes()); // PCM
        out.extend_from_slice(&1u16.to_le_bytes()); // mono
        out.extend_from_slice(&16_000u32.to_le_bytes());
        out.extend_from_slice(&(16_000 * u32::from(block)).to_le_bytes());
        out.extend_from_slice(&block.to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    fn read(bytes: &[u8]) -> Result<Vec<i16>, String> {
        let reader =
            hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
        decode(reader).map(|a| a.samples).map_err(|e| e.to_string())
    }

    #[test]
    fn sixteen_bit_samples_read_as_they_are() {
        let data: Vec<u8> = [0i16, 1000, -32768]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert_eq!(read(&wav(16, &data)).unwrap(), [0, 1000, -32768]);
    }

    #[test]
    fn a_header_claiming_samples_wider_than_32_bits_is_an_error_not_a_crash() {
        // Found by the `wav_reader` fuzz target: 272-bit samples made the reader shift by 271.
        let refused = read(&wav(272, &[0; 68])).unwrap_err();
        assert!(!refused.is_empty());
    }
}
