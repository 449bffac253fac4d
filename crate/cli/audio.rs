//! WAV input and output for the CLI: any common WAV (8/16/24/32-bit integer or 32-bit float,
//! any channel count and sample rate) becomes 24 kHz mono f32; output is 24 kHz mono. Its tests
//! are in `tests/cli.rs`, which compiles this file in (as `tests/mutation.rs` does to fuzz it).

use std::path::Path;

use rubato::{FftFixedIn, Resampler};

/// Errors naming the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{file}: not a WAV file we can read ({why}). Convert it to WAV first, e.g. `sox in.mp3 out.wav`.")]
    NotWav { file: String, why: String },
    #[error("{file}: {why}")]
    Bad { file: String, why: String },
    #[error("{file}: cannot write ({why})")]
    Write { file: String, why: String },
}

/// Sample rates accepted in a WAV header. Outside this range the header is almost surely damaged,
/// and resampling from it would need absurd FFT sizes (rubato's grow with the rates' ratio).
pub const WAV_RATES: std::ops::RangeInclusive<u32> = 1000..=768_000;

/// Decode a WAV file to mono f32 at `target_rate`.
pub fn read_wav_mono(path: &Path, target_rate: u32) -> Result<Vec<f32>, AudioError> {
    let file = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| AudioError::NotWav {
        file: file.clone(),
        why: e.to_string(),
    })?;
    let (mono, rate) = decode_wav_mono(&file, std::io::BufReader::new(f))?;
    resample(&mono, rate, target_rate).map_err(|why| AudioError::Bad { file, why })
}

/// Decode a WAV stream to mono f32 at its own sample rate: `(samples, rate)`. `name` prefixes
/// every error.
///
/// Memory: the samples are collected as they are read (never pre-allocated from the header's
/// data length, which may lie), so a damaged header cannot cause a large allocation: at most
/// the decoded samples, 4 bytes per input sample (8-bit input: 4× its size), twice over while
/// mixing to mono.
pub fn decode_wav_mono<R: std::io::Read>(
    name: &str,
    reader: R,
) -> Result<(Vec<f32>, u32), AudioError> {
    let file = name.to_string();
    let reader = hound::WavReader::new(reader).map_err(|e| AudioError::NotWav {
        file: file.clone(),
        why: e.to_string(),
    })?;
    let spec = reader.spec();
    let ch = spec.channels as usize;
    if ch == 0 || !WAV_RATES.contains(&spec.sample_rate) {
        return Err(AudioError::Bad {
            file,
            why: format!(
                "{} channels at {} Hz: the header is damaged (rates from {} to {} Hz are read)",
                ch,
                spec.sample_rate,
                WAV_RATES.start(),
                WAV_RATES.end()
            ),
        });
    }
    let bits = spec.bits_per_sample;
    let bad = |e: hound::Error| AudioError::Bad {
        file: file.clone(),
        why: format!("corrupt or truncated sample data ({e})"),
    };
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(bad)?,
        hound::SampleFormat::Int => {
            if !(1..=32).contains(&bits) {
                return Err(AudioError::Bad {
                    file,
                    why: format!("{bits}-bit integer samples"),
                });
            }
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(bad)?
        }
    };
    let mono: Vec<f32> = interleaved
        .chunks(ch)
        .map(|c| c.iter().sum::<f32>() / ch as f32)
        .collect();
    Ok((mono, spec.sample_rate))
}

/// Resample mono audio with rubato's FFT resampler, compensating its delay so the output is
/// time-aligned with the input and has `round(len · to / from)` samples.
pub fn resample(x: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    if from == to {
        return Ok(x.to_vec());
    }
    let chunk = 1024;
    let mut rs = FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 2, 1)
        .map_err(|e| e.to_string())?;
    let want = (x.len() as u64 * to as u64).div_ceil(from as u64) as usize;
    let delay = rs.output_delay();
    let mut out = Vec::with_capacity(want + delay + chunk * 2);
    let mut pos = 0;
    while out.len() < want + delay {
        let need = rs.input_frames_next();
        let block: Vec<f32> = (pos..pos + need)
            .map(|i| x.get(i).copied().unwrap_or(0.0))
            .collect();
        pos += need;
        let y = rs.process(&[block], None).map_err(|e| e.to_string())?;
        out.extend_from_slice(&y[0]);
    }
    Ok(out[delay..delay + want].to_vec())
}

/// Write mono f32 samples as a 32-bit float WAV.
pub fn write_wav_mono(path: &Path, samples: &[f32], rate: u32) -> Result<(), AudioError> {
    let file = path.display().to_string();
    let w = |e: hound::Error| AudioError::Write {
        file: file.clone(),
        why: e.to_string(),
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(w)?;
    for &s in samples {
        writer.write_sample(s).map_err(w)?;
    }
    writer.finalize().map_err(w)
}
