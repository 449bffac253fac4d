//! The GPU memory a session will allocate, computed before loading it and without a GPU: the
//! config (Mimi's and the LM's, as [`super::Session::load`] reads it), the LM's tensor headers
//! under canonical names and the load options go into [`crate::weights::estimate::estimate`].

use super::bench::Preset;
use super::{ModelConfig, SessionOptions};
use crate::weights::estimate::{self, Facts, GpuEstimate, LinearSource, ModelShape};
use crate::weights::{Checkpoint, Container, TensorSource, WeightFormat, WeightsError};

/// The estimate of a session built from `config` (text of `config.json`, `None`: the 7B and the
/// published Mimi), with an LM whose tensors `lm` describes (`None`: the Mimi loopback), on an
/// adapter with (`f16`) or without shader-f16.
pub fn estimate(
    config: Option<&str>,
    lm: Option<LinearSource>,
    opts: &SessionOptions,
    f16: bool,
) -> crate::Result<GpuEstimate> {
    // Parsed as a load parses it (one typed config for Mimi and the LM).
    let model = ModelConfig::parse(config)?;
    let mimi_cfg = model.mimi.clone();
    mimi_cfg.validate()?;
    let (lm_shape, n_q, width) = match lm {
        Some(_) => {
            let cfg = model.lm.clone();
            cfg.validate()?;
            let mut shape = cfg.shape(opts.lm.f32_cache);
            // A second lane when guidance is on (the load's option, else the model's default).
            shape.guided = opts.cfg.unwrap_or(model.cfg_coef()) != 1.0;
            (Some(shape), cfg.user_streams(), cfg.n_q + 1)
        }
        None => {
            let n_q = opts.codebooks.unwrap_or(mimi_cfg.quantizer.n_q);
            // As `Mimi::load` checks the loopback's codebooks.
            if n_q < 2 || n_q > mimi_cfg.quantizer.n_q {
                return Err(WeightsError::Config(format!(
                    "{n_q} codebooks requested, the model has 2..={}",
                    mimi_cfg.quantizer.n_q
                ))
                .into());
            }
            (None, n_q, n_q)
        }
    };
    let shape = ModelShape {
        lm: lm_shape,
        mimi: mimi_cfg.shape(n_q),
        width: width as u64,
    };
    let facts = Facts {
        f16,
        f32_cache: opts.lm.f32_cache,
        tables: opts.lm.tables,
    };
    let src = lm.unwrap_or(LinearSource::Random(WeightFormat::F32));
    Ok(estimate::estimate(&shape, src, facts))
}

/// The LM container presented under canonical names with `config`'s depformer schedule, as
/// [`super::Session::from_sources`] presents it.
pub fn canonical_lm(config: Option<&str>, lm: Box<dyn Container>) -> crate::Result<Checkpoint> {
    let schedule = ModelConfig::parse(config)?
        .lm
        .depformer_weights_per_step_schedule;
    Ok(Checkpoint::new(lm, schedule.as_deref())?)
}

/// The estimate of a session built from opened headers: `lm` (any published format) under
/// canonical names, linears converted to `opts.weights.quant` if set.
pub fn estimate_sources(
    config: Option<&str>,
    lm: Option<Box<dyn Container>>,
    opts: &SessionOptions,
    f16: bool,
) -> crate::Result<GpuEstimate> {
    match lm {
        Some(c) => {
            let ck = canonical_lm(config, c)?;
            let src = LinearSource::Checkpoint {
                src: &ck as &dyn TensorSource,
                quant: opts.weights.quant,
            };
            estimate(config, Some(src), opts, f16)
        }
        None => estimate(config, None, opts, f16),
    }
}

/// The estimate of a model directory (its headers only are read), as
/// [`super::Session::load_dir`] would load it. A directory whose only checkpoint is an LM (no
/// Mimi beside it, which a load refuses) is estimated with its config's Mimi.
#[cfg(not(target_arch = "wasm32"))]
pub fn estimate_dir(
    dir: &std::path::Path,
    opts: &SessionOptions,
    f16: bool,
) -> crate::Result<GpuEstimate> {
    use crate::weights::{open_container, ModelFiles, WeightsError};
    let files = ModelFiles::resolve(dir)?;
    let config = match &files.config {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| WeightsError::Io {
            file: p.display().to_string(),
            message: e.to_string(),
        })?),
        None => None,
    };
    let lm = open_container(&files.lm)?;
    let loopback = files.mimi.is_none() && lm.entries().contains_key(super::load::MIMI_PROBE);
    let lm = (!loopback).then_some(lm);
    estimate_sources(config.as_deref(), lm, opts, f16)
}

impl Preset {
    /// The estimate of this benchmark preset with the LM's linears in `format`.
    pub fn estimate(&self, format: WeightFormat, f16: bool) -> crate::Result<GpuEstimate> {
        let config = self.config();
        let opts = SessionOptions {
            codebooks: Some(8),
            ..SessionOptions::default()
        };
        let lm = self.has_lm().then_some(LinearSource::Random(format));
        estimate(config.as_deref(), lm, &opts, f16)
    }
}
