//! The options the page passes across the wasm boundary (JSON text), deserialized with serde:
//! an unknown option or a value of the wrong type is an `input` error naming the option and what
//! is accepted (serde's `unknown field `x`, expected one of …` / `invalid type: …, expected …`).

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use wasm_bindgen::JsValue;

use super::error::error;
use crate::session::{quant_format, SamplingSettings};
use crate::weights::config::deserialize_keys;
use crate::weights::WeightFormat;
use crate::ErrorCode;

/// `engineLoad`'s options.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct LoadOptions {
    pub force_f32: bool,
    pub no_subgroups: bool,
    /// Mimi codebooks in the loopback (default: all of the model's).
    pub codebooks: Option<usize>,
    /// Over the model's sampling defaults.
    pub sampling: Option<SamplingSettings>,
    /// Convert the LM's bf16/f32 linear weights at load: `q4`, `q8`, `q8_0`, `bf16` or `f32`
    /// (`parle run --quant`); absent or null keeps the checkpoint's format.
    pub quant: Option<String>,
    /// Classifier-free guidance coefficient (default: the model's `lm_gen_config.cfg_coef`).
    pub cfg: Option<f32>,
}

/// The weight format a `quant` option names (`None`: keep the checkpoint's); an unknown name is an
/// `input` error naming the option and the accepted names.
pub(super) fn quant_option(
    quant: Option<&str>,
    what: &str,
) -> Result<Option<WeightFormat>, JsValue> {
    match quant {
        None => Ok(None),
        Some(q) => quant_format(q).map(Some).ok_or_else(|| {
            error(
                ErrorCode::Input,
                &format!("{what}: option \"quant\": {q:?} is not a weight format: expected q4, q8, q8_0, bf16 or f32"),
            )
        }),
    }
}

/// `engineConfigure`'s options: the sampling settings, and `codebooks` (the worker reloads the
/// loopback for it; accepted here so that one object serves both).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ConfigureOptions {
    pub codebooks: Option<usize>,
    pub greedy: Option<bool>,
    pub seed: Option<u32>,
    pub text_temperature: Option<f32>,
    pub text_top_k: Option<u32>,
    pub audio_temperature: Option<f32>,
    pub audio_top_k: Option<u32>,
    /// Classifier-free guidance coefficient; switching guidance on or off needs a reset first.
    pub cfg: Option<f32>,
}

impl ConfigureOptions {
    pub fn sampling(&self) -> SamplingSettings {
        SamplingSettings {
            greedy: self.greedy,
            seed: self.seed,
            text_temperature: self.text_temperature,
            text_top_k: self.text_top_k,
            audio_temperature: self.audio_temperature,
            audio_top_k: self.audio_top_k,
        }
    }
}

fn default_preset() -> String {
    "mimi".into()
}
fn default_frames() -> usize {
    20
}
fn default_quant() -> String {
    "q4".into()
}
fn yes() -> bool {
    true
}

/// `engineBench`'s options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct BenchOptions {
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(default = "default_frames")]
    pub frames: usize,
    #[serde(default = "default_quant")]
    pub quant: String,
    /// `custom`: a `config.json` text.
    #[serde(default)]
    pub config: Option<String>,
    /// `custom`: with the LM.
    #[serde(default = "yes")]
    pub lm: bool,
    #[serde(default)]
    pub force_f32: bool,
    #[serde(default)]
    pub no_subgroups: bool,
    /// Then profile frames (per group and kernel; GPU times where the adapter has
    /// `timestamp-query`).
    #[serde(default)]
    pub profile: bool,
}

/// Parse `text` (a JSON object, or null for no options) into `T`; `what` names the call.
pub(super) fn parse<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, JsValue> {
    let obj = match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        Ok(Value::Null) => Map::new(),
        Ok(v) => {
            return Err(error(
                ErrorCode::Input,
                &format!("{what}: the options must be an object, got {v}"),
            ))
        }
        Err(e) => {
            return Err(error(
                ErrorCode::Input,
                &format!("{what}: the options are not JSON: {e}"),
            ))
        }
    };
    deserialize_keys(&obj, "").map_err(|e| {
        let m = match e.key {
            Some(k) => format!("{what}: option \"{k}\": {}", e.message),
            None => format!("{what}: {}", e.message),
        };
        error(ErrorCode::Input, &m)
    })
}
