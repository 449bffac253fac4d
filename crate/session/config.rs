//! The one typed `config.json` of a model directory: parsed once ([`ModelConfig::from_json`]),
//! then read by Mimi (`mimi` section), the LM (the top-level `LMModel` keys), the directory
//! resolver (the file names) and the front ends (kind, what the model hears and says, its
//! sampling defaults). The keys are those PyPI `moshi` reads (`moshi/models/loaders.py`:
//! `CheckpointInfo`, `get_moshi_lm`); a feature parle does not run yet is an error naming its key.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::Sampling;
use crate::lm::LmConfig;
use crate::mimi::MimiConfig;
use crate::weights::config::{config_object, from_keys, section};
use crate::weights::{ConfigFiles, WeightsError};

/// `model_type`: the intended use of the LM (`CheckpointInfo.model_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    /// Full-duplex speech-to-speech (Moshiko, Moshika).
    #[default]
    Moshi,
    /// Streaming speech-to-text (kyutai/stt-*).
    Stt,
    /// Streaming speech translation (kyutai/hibiki-*).
    Hibiki,
}

/// What a model directory runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Moshi,
    Stt,
    Hibiki,
    /// Mimi alone: the codec loopback.
    Mimi,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Moshi => "moshi",
            ModelKind::Stt => "stt",
            ModelKind::Hibiki => "hibiki",
            ModelKind::Mimi => "mimi",
        }
    }
}

/// What the model hears and says per 80 ms frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelIo {
    /// Audio codebooks it reads (the user's speech).
    pub input_codebooks: usize,
    /// Audio codebooks it generates (its own speech).
    pub output_codebooks: usize,
    /// Whether it writes a text stream.
    pub text: bool,
}

impl std::fmt::Display for ModelIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "hears {} audio codebooks, says {} audio codebooks{}",
            self.input_codebooks,
            self.output_codebooks,
            if self.text { " and text" } else { ", no text" }
        )
    }
}

/// `stt_config`: how a speech-to-text model is fed (`CheckpointInfo.stt_config`). Absent keys
/// take the defaults of Kyutai's `stt_from_file_pytorch.py` (1 s of prefix, 5 s of delay).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SttConfig {
    /// Silence fed before the audio, in seconds.
    pub audio_silence_prefix_seconds: f64,
    /// How far the text lags the audio, in seconds (silence fed after the audio to flush it).
    pub audio_delay_seconds: f64,
}

impl Default for SttConfig {
    fn default() -> Self {
        Self {
            audio_silence_prefix_seconds: 1.0,
            audio_delay_seconds: 5.0,
        }
    }
}

/// `lm_gen_config`: the model's own generation defaults (`LMGen` kwargs).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    pub use_sampling: Option<bool>,
    /// Audio temperature.
    pub temp: Option<f32>,
    pub temp_text: Option<f32>,
    /// Audio top-k.
    pub top_k: Option<u32>,
    pub top_k_text: Option<u32>,
    /// Classifier-free guidance coefficient (1: none); needs conditioners.
    pub cfg_coef: Option<f32>,
    pub cfg_is_no_text: Option<bool>,
    pub cfg_is_masked_until: Option<Vec<usize>>,
    pub check: Option<bool>,
    pub support_out_of_sync: Option<bool>,
}

/// Keys `CheckpointInfo` pops besides the file names.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FamilyKeys {
    model_type: Option<ModelType>,
    lora: Option<bool>,
    lora_name: Option<String>,
    mimi_config_name: Option<String>,
}

/// A model's whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The LM (top-level keys).
    pub lm: LmConfig,
    /// The codec (`"mimi"`; absent: the published Mimi).
    pub mimi: MimiConfig,
    /// The files the config names.
    pub files: ConfigFiles,
    pub model_type: ModelType,
    pub stt: Option<SttConfig>,
    pub generation: GenerationConfig,
    /// Whether a `config.json` was given (absent: Moshi 7B, spec §2.1).
    pub from_file: bool,
    /// The directory holds Mimi alone (set by the loader, not by `config.json`).
    pub codec_only: bool,
}

impl Default for ModelConfig {
    /// No `config.json`: Moshi 7B with the published Mimi.
    fn default() -> Self {
        Self {
            lm: LmConfig::default(),
            mimi: MimiConfig::default(),
            files: ConfigFiles::default(),
            model_type: ModelType::Moshi,
            stt: None,
            generation: GenerationConfig::default(),
            from_file: false,
            codec_only: false,
        }
    }
}

fn not_yet(key: &str, what: &str) -> WeightsError {
    WeightsError::Config(format!(
        "config.json: key \"{key}\" {what}, which parle does not support yet"
    ))
}

impl ModelConfig {
    /// `config.json`'s text, or `None` for a directory without one.
    pub fn parse(text: Option<&str>) -> Result<Self, WeightsError> {
        match text {
            Some(t) => Self::from_json(t),
            None => Ok(Self::default()),
        }
    }

    /// Parse `config.json` once and read every section from it.
    pub fn from_json(text: &str) -> Result<Self, WeightsError> {
        Self::from_object(&config_object(text)?)
    }

    pub fn from_object(obj: &Map<String, Value>) -> Result<Self, WeightsError> {
        let family: FamilyKeys = from_keys(obj, "")?;
        if family.lora == Some(true) || family.lora_name.is_some() {
            let key = if family.lora_name.is_some() {
                "lora_name"
            } else {
                "lora"
            };
            return Err(not_yet(key, "asks for LoRA weights"));
        }
        if family.mimi_config_name.is_some() {
            return Err(not_yet(
                "mimi_config_name",
                "names a separate Mimi config file (put it under \"mimi\" instead)",
            ));
        }
        match obj.get("tts_config") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) if m.is_empty() => {}
            Some(_) => return Err(not_yet("tts_config", "describes a text-to-speech model")),
        }
        let mimi = match section::<MimiConfig>(obj, "mimi")? {
            Some(m) => {
                m.validate()?;
                m
            }
            None => MimiConfig::default(),
        };
        let generation: GenerationConfig = section(obj, "lm_gen_config")?.unwrap_or_default();
        let lm = LmConfig::from_object(obj)?;
        if let Some(c) = generation.cfg_coef {
            if !(c.is_finite() && c > 0.0 && c <= 100.0) {
                return Err(WeightsError::Config(format!(
                    "config.json: key \"lm_gen_config.cfg_coef\" is {c}: a number in (0, 100]"
                )));
            }
            if c != 1.0 && !lm.conditioned() {
                return Err(WeightsError::Config(format!(
                    "config.json: key \"lm_gen_config.cfg_coef\" is {c}: classifier-free guidance needs conditioners (\"conditioners\", \"fuser\"), which this model has none of"
                )));
            }
        }
        if generation.cfg_is_no_text == Some(true) {
            return Err(not_yet(
                "lm_gen_config.cfg_is_no_text",
                "asks for guidance on audio only",
            ));
        }
        if generation.cfg_is_masked_until.is_some() {
            return Err(not_yet(
                "lm_gen_config.cfg_is_masked_until",
                "asks for masked guidance",
            ));
        }
        for (key, v) in [
            ("lm_gen_config.temp", generation.temp),
            ("lm_gen_config.temp_text", generation.temp_text),
        ] {
            if v.is_some_and(|t| !(t.is_finite() && t >= 0.0)) {
                return Err(WeightsError::Config(format!(
                    "config.json: key \"{key}\" must be a number ≥ 0"
                )));
            }
        }
        let stt: Option<SttConfig> = section(obj, "stt_config")?;
        if let Some(st) = &stt {
            for (key, v) in [
                (
                    "stt_config.audio_silence_prefix_seconds",
                    st.audio_silence_prefix_seconds,
                ),
                ("stt_config.audio_delay_seconds", st.audio_delay_seconds),
            ] {
                if !(0.0..=600.0).contains(&v) {
                    return Err(WeightsError::Config(format!(
                        "config.json: key \"{key}\" is {v}: seconds in [0, 600]"
                    )));
                }
            }
        }
        Ok(Self {
            lm,
            mimi,
            files: ConfigFiles::from_object(obj)?,
            model_type: family.model_type.unwrap_or_default(),
            stt,
            generation,
            from_file: true,
            codec_only: false,
        })
    }

    /// What the directory runs.
    pub fn kind(&self) -> ModelKind {
        if self.codec_only {
            return ModelKind::Mimi;
        }
        match self.model_type {
            ModelType::Moshi => ModelKind::Moshi,
            ModelType::Stt => ModelKind::Stt,
            ModelType::Hibiki => ModelKind::Hibiki,
        }
    }

    /// What the model hears and says per frame (Mimi alone: its codebooks in and out).
    pub fn io(&self) -> ModelIo {
        if self.codec_only {
            let n = self.mimi.quantizer.n_q;
            return ModelIo {
                input_codebooks: n,
                output_codebooks: n,
                text: false,
            };
        }
        ModelIo {
            input_codebooks: self.lm.n_q - self.lm.dep_q,
            output_codebooks: self.lm.dep_q,
            text: true,
        }
    }

    /// The classifier-free guidance coefficient this model asks for (`lm_gen_config.cfg_coef`,
    /// default 1: none). `parle translate --cfg` and the JS `cfg` option override it.
    pub fn cfg_coef(&self) -> f32 {
        self.generation.cfg_coef.unwrap_or(1.0)
    }

    /// The sampling this model asks for: [`Sampling::default`] (PyTorch `LMGen`'s defaults),
    /// overridden by `lm_gen_config`. Front ends start from this and apply the user's settings.
    pub fn sampling(&self) -> Sampling {
        let g = &self.generation;
        let d = Sampling::default();
        let mut s = Sampling {
            text_temperature: g.temp_text.unwrap_or(d.text_temperature),
            text_top_k: g.top_k_text.unwrap_or(d.text_top_k).max(1),
            audio_temperature: g.temp.unwrap_or(d.audio_temperature),
            audio_top_k: g.top_k.unwrap_or(d.audio_top_k).max(1),
            seed: d.seed,
        };
        if g.use_sampling == Some(false) {
            s.text_temperature = 0.0;
            s.audio_temperature = 0.0;
        }
        s
    }
}

#[cfg(test)]
mod tests;
