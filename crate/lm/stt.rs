//! The keys of a Kyutai STT `config.json` that the LM's own config does not read: the extra heads
//! (`extra_heads_num_heads`, `extra_heads_dim`), `model_type` and `stt_config`
//! (`audio_silence_prefix_seconds`, `audio_delay_seconds`). Absent keys take the defaults of
//! Kyutai's `stt_from_file_pytorch.py` (prefix 1.0 s, delay 5.0 s) and of PyPI moshi's
//! `LMModel` (no extra heads); a key of the wrong type is an error naming it.

use serde_json::{Map, Value};

use super::extra::ExtraHeadsConfig;
use crate::weights::WeightsError;

/// The STT-specific part of a model's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SttConfig {
    /// `model_type` (`"moshi"` when absent).
    pub model_type: String,
    pub extra_heads: ExtraHeadsConfig,
    /// Seconds of silence fed before the audio.
    pub audio_silence_prefix_seconds: f64,
    /// Seconds of silence fed after the audio to flush the text (the model's text delay).
    pub audio_delay_seconds: f64,
}

fn bad(key: &str, why: impl std::fmt::Display) -> WeightsError {
    WeightsError::Config(format!("config.json: key \"{key}\" {why}"))
}

fn seconds(obj: &Map<String, Value>, key: &str, default: f64) -> Result<f64, WeightsError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .filter(|x| (0.0..=600.0).contains(x))
            .ok_or_else(|| {
                bad(
                    key,
                    format!("must be a number of seconds in [0, 600], got {v}"),
                )
            }),
    }
}

fn count(
    obj: &Map<String, Value>,
    key: &str,
    default: usize,
    max: u64,
) -> Result<usize, WeightsError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|&n| n <= max)
            .map(|n| n as usize)
            .ok_or_else(|| bad(key, format!("must be an integer in [0, {max}], got {v}"))),
    }
}

impl SttConfig {
    /// Read the keys from a `config.json` text (a text that is not a JSON object is an error).
    pub fn from_json(text: &str) -> Result<Self, WeightsError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| WeightsError::Config(format!("config.json is not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| WeightsError::Config("config.json is not a JSON object".into()))?;
        let model_type = match obj.get("model_type") {
            None | Some(Value::Null) => "moshi".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => return Err(bad("model_type", format!("must be a string, got {v}"))),
        };
        let empty = Map::new();
        let stt = match obj.get("stt_config") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(v) => return Err(bad("stt_config", format!("must be an object, got {v}"))),
        };
        let heads = count(obj, "extra_heads_num_heads", 0, 64)?;
        let dim = count(obj, "extra_heads_dim", 6, 4096)?;
        if heads > 0 && dim == 0 {
            return Err(bad(
                "extra_heads_dim",
                "must be positive when there are extra heads",
            ));
        }
        Ok(Self {
            model_type,
            extra_heads: ExtraHeadsConfig { heads, dim },
            audio_silence_prefix_seconds: seconds(stt, "audio_silence_prefix_seconds", 1.0)?,
            audio_delay_seconds: seconds(stt, "audio_delay_seconds", 5.0)?,
        })
    }

    /// Silent frames before the audio: `ceil(prefix · frame_rate)`, as Kyutai's script.
    pub fn prefix_frames(&self, frame_rate: f64) -> usize {
        (self.audio_silence_prefix_seconds * frame_rate).ceil() as usize
    }

    /// Silent frames after the audio: `ceil(delay · frame_rate)`.
    pub fn flush_frames(&self, frame_rate: f64) -> usize {
        (self.audio_delay_seconds * frame_rate).ceil() as usize
    }

    /// What Kyutai's script subtracts from a step's time for word timestamps:
    /// `int(prefix_frames / frame_rate) + audio_delay_seconds` (the integer part is Python's
    /// `int`, a truncation).
    pub fn offset_seconds(&self, frame_rate: f64) -> f64 {
        (self.prefix_frames(frame_rate) as f64 / frame_rate).trunc() + self.audio_delay_seconds
    }
}

impl Default for SttConfig {
    /// A model without the keys: `model_type` moshi, no extra heads, the script's defaults.
    fn default() -> Self {
        Self {
            model_type: "moshi".into(),
            extra_heads: ExtraHeadsConfig::default(),
            audio_silence_prefix_seconds: 1.0,
            audio_delay_seconds: 5.0,
        }
    }
}
