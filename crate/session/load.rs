//! Building a session from a model's pieces, whatever they were read from: files natively
//! ([`Session::load_dir`]), bytes or streams in the browser — both through
//! [`Session::from_sources`].

use super::{ModelConfig, ModelParts, Session, SessionOptions};
use crate::nn::Weights;
use crate::text::Tokenizer;
use crate::weights::{Checkpoint, Container, TensorSource};

/// A tensor every Mimi checkpoint has (the first SEANet conv).
#[cfg(not(target_arch = "wasm32"))]
const MIMI_PROBE: &str = "encoder.model.0.conv.conv.weight";

/// The opened files of a model.
pub struct ModelSources {
    /// The model's config, parsed once ([`ModelConfig::parse`]).
    pub config: ModelConfig,
    /// The codec's weights.
    pub mimi: Box<dyn TensorSource>,
    /// The LM checkpoint in any published naming (`None`: the Mimi loopback).
    pub lm: Option<Box<dyn Container>>,
    /// The SentencePiece model (used with an LM).
    pub tokenizer: Option<Tokenizer>,
}

impl Session {
    /// Build a session from opened model files: the LM is presented under canonical names (its
    /// depformer schedule from `config.json`), then [`Session::load`].
    pub fn from_sources(
        ctx: &crate::gpu::Context,
        src: ModelSources,
        opts: &SessionOptions,
    ) -> crate::Result<Self> {
        // Mimi, the LM and the checkpoint's name map read the one parsed config.
        let mut config = src.config;
        config.codec_only = src.lm.is_none();
        let schedule = config.lm.depformer_weights_per_step_schedule.clone();
        let lm = match src.lm {
            Some(c) => Some(Checkpoint::new(c, schedule.as_deref())?),
            None => None,
        };
        let parts = ModelParts {
            config: None,
            mimi: src.mimi.as_ref(),
            lm: lm.as_ref().map(|f| Weights::checkpoint(f)),
            tokenizer: lm.as_ref().and(src.tokenizer),
        };
        Self::load_config(ctx, &config, parts, opts)
    }

    /// Open a model directory (resolved by [`crate::weights::ModelFiles`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(
        ctx: &crate::gpu::Context,
        dir: &std::path::Path,
        opts: &SessionOptions,
    ) -> crate::Result<Self> {
        use crate::weights::{open_container, ModelFiles, SafetensorsFile, WeightsError};
        let files = ModelFiles::resolve(dir)?;
        let in_file = |e: WeightsError| match (e, &files.config) {
            (WeightsError::Config(m), Some(p)) => WeightsError::ConfigFile {
                file: p.display().to_string(),
                message: m.trim_start_matches("config.json: ").to_string(),
            },
            (e, _) => e,
        };
        let config = match &files.config_json {
            Some(obj) => ModelConfig::from_object(obj).map_err(in_file)?,
            None => ModelConfig::default(),
        };
        // Without Mimi weights beside it, the checkpoint must be Mimi itself: the codec
        // loopback (a Mimi-only directory keeps them in `model.safetensors`).
        let (lm, mimi_path) = match &files.mimi {
            Some(m) => (Some(open_container(&files.lm)?), m.clone()),
            None => (None, files.lm.clone()),
        };
        let mimi = SafetensorsFile::open(&mimi_path)?;
        if lm.is_none() && !mimi.header.tensors.contains_key(MIMI_PROBE) {
            return Err(WeightsError::NoMimi {
                dir: dir.display().to_string(),
                looked_for: format!(
                    "{} or config.json's \"mimi_name\", and {} is not a Mimi checkpoint",
                    crate::weights::resolve::MIMI_FILE_NAMES.join(", "),
                    mimi_path.display()
                ),
            }
            .into());
        }
        let tokenizer = match (&lm, &files.tokenizer) {
            (Some(_), Some(p)) => Some(Tokenizer::open(p)?),
            _ => None,
        };
        let src = ModelSources {
            config,
            mimi: Box::new(mimi),
            lm,
            tokenizer,
        };
        Self::from_sources(ctx, src, opts)
    }
}
