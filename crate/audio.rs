//! WAV input and output for the CLI: any common WAV (8/16/24/32-bit integer or 32-bit float,
//! any channel count and sample rate) becomes 24 kHz mono f32; output is 24 kHz mono.

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

/// Decode a WAV file to mono f32 at `target_rate`.
pub fn read_wav_mono(path: &Path, target_rate: u32) -> Result<Vec<f32>, AudioError> {
    let file = path.display().to_string();
    let mut reader = hound::WavReader::open(path).map_err(|e| AudioError::NotWav {
        file: file.clone(),
        why: e.to_string(),
    })?;
    let spec = reader.spec();
    let ch = spec.channels as usize;
    if ch == 0 || spec.sample_rate == 0 {
        return Err(AudioError::Bad {
            file,
            why: "zero channels or zero sample rate".into(),
        });
    }
    let bad = |e: hound::Error| AudioError::Bad {
        file: file.clone(),
        why: format!("corrupt or truncated sample data ({e})"),
    };
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(bad)?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(bad)?
        }
    };
    let mono: Vec<f32> = interleaved
        .chunks(ch)
        .map(|c| c.iter().sum::<f32>() / ch as f32)
        .collect();
    resample(&mono, spec.sample_rate, target_rate).map_err(|why| AudioError::Bad { file, why })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resample_keeps_a_sine() {
        let from = 22050;
        let x: Vec<f32> = (0..22050)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / from as f32).sin())
            .collect();
        let y = resample(&x, from, 24000).unwrap();
        assert_eq!(y.len(), 24000);
        // Compare with the analytic sine away from the edges.
        let mut err = 0f32;
        for (i, &v) in y.iter().enumerate().skip(2000).take(20000) {
            let t = i as f32 / 24000.0;
            err = err.max((v - (2.0 * std::f32::consts::PI * 440.0 * t).sin()).abs());
        }
        assert!(err < 1e-2, "max error {err}");
    }

    #[test]
    fn rejects_non_wav() {
        let p = std::env::temp_dir().join("parle-not-a-wav.wav");
        std::fs::write(&p, b"this is not audio").unwrap();
        let e = read_wav_mono(&p, 24000).unwrap_err();
        assert!(e.to_string().contains("not a WAV"), "{e}");
    }
}
