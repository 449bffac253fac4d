//! Mimi hyper-parameters with the reference package's key names (`moshi/models/loaders.py`:
//! `_seanet_kwargs`, `_transformer_kwargs`, `_quantizer_kwargs`). Defaults are the published
//! `tokenizer-e351c8d8-checkpoint125` model; a `config.json` may override any of them under its
//! `"mimi"` key.

use serde::Deserialize;

use crate::weights::WeightsError;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct SeanetConfig {
    pub channels: usize,
    pub dimension: usize,
    pub n_filters: usize,
    pub n_residual_layers: usize,
    pub ratios: Vec<usize>,
    pub activation: String,
    pub kernel_size: usize,
    pub residual_kernel_size: usize,
    pub last_kernel_size: usize,
    pub dilation_base: usize,
    pub compress: usize,
    pub causal: bool,
    pub true_skip: bool,
    pub pad_mode: String,
    pub norm: String,
}

impl Default for SeanetConfig {
    fn default() -> Self {
        Self {
            channels: 1,
            dimension: 512,
            n_filters: 64,
            n_residual_layers: 1,
            ratios: vec![8, 6, 5, 4],
            activation: "ELU".into(),
            kernel_size: 7,
            residual_kernel_size: 3,
            last_kernel_size: 3,
            dilation_base: 2,
            compress: 2,
            causal: true,
            true_skip: true,
            pad_mode: "constant".into(),
            norm: "none".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct TransformerConfig {
    pub d_model: usize,
    pub num_heads: usize,
    pub num_layers: usize,
    pub dim_feedforward: usize,
    pub causal: bool,
    pub layer_scale: Option<f64>,
    pub context: usize,
    pub max_period: f64,
    pub gating: String,
    pub norm: String,
    pub positional_embedding: String,
    pub conv_layout: bool,
    pub input_dimension: Option<usize>,
    pub output_dimensions: Option<Vec<usize>>,
}

impl Default for TransformerConfig {
    fn default() -> Self {
        Self {
            d_model: 512,
            num_heads: 8,
            num_layers: 8,
            dim_feedforward: 2048,
            causal: true,
            layer_scale: Some(0.01),
            context: 250,
            max_period: 10000.0,
            gating: "none".into(),
            norm: "layer_norm".into(),
            positional_embedding: "rope".into(),
            conv_layout: true,
            input_dimension: Some(512),
            output_dimensions: Some(vec![512]),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct QuantizerConfig {
    /// Codebook dimension.
    pub dimension: usize,
    /// Codebooks stored in the checkpoint (semantic + acoustic).
    pub n_q: usize,
    pub bins: usize,
    pub input_dimension: usize,
    pub output_dimension: usize,
    pub n_q_semantic: usize,
}

impl Default for QuantizerConfig {
    fn default() -> Self {
        Self {
            dimension: 256,
            n_q: 32,
            bins: 2048,
            input_dimension: 512,
            output_dimension: 512,
            n_q_semantic: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct MimiConfig {
    pub sample_rate: f64,
    pub frame_rate: f64,
    pub channels: usize,
    pub seanet: SeanetConfig,
    pub transformer: TransformerConfig,
    pub quantizer: QuantizerConfig,
}

impl Default for MimiConfig {
    fn default() -> Self {
        Self {
            sample_rate: 24000.0,
            frame_rate: 12.5,
            channels: 1,
            seanet: SeanetConfig::default(),
            transformer: TransformerConfig::default(),
            quantizer: QuantizerConfig::default(),
        }
    }
}

impl MimiConfig {
    /// Parse a `config.json` text: the `"mimi"` key if present, else the defaults.
    pub fn from_json(text: &str) -> Result<Self, WeightsError> {
        let obj = crate::weights::config::config_object(text)?;
        let cfg: Self = crate::weights::config::section(&obj, "mimi")?.unwrap_or_default();
        cfg.validate()?;
        Ok(cfg)
    }

    /// SEANet hop: product of the ratios (960 for Mimi).
    pub fn hop(&self) -> usize {
        // 0 when the product overflows (a damaged config; `validate` rejects it).
        self.seanet
            .ratios
            .iter()
            .try_fold(1usize, |a, &r| a.checked_mul(r))
            .unwrap_or(0)
    }

    /// Samples per code frame (1920 for Mimi).
    pub fn frame_size(&self) -> usize {
        (self.sample_rate / self.frame_rate).round() as usize
    }

    /// Encoder steps (SEANet frame rate) per code frame (2 for Mimi).
    pub fn downsample_stride(&self) -> usize {
        self.frame_size() / self.hop()
    }

    pub fn validate(&self) -> Result<(), WeightsError> {
        let err = |m: String| Err(WeightsError::Config(m));
        let s = &self.seanet;
        let t = &self.transformer;
        let q = &self.quantizer;
        // Sizes the model divides by or allocates from: positive and far from overflow (the
        // bounds are about 100× the published model's).
        let sizes = [
            ("seanet.dimension", s.dimension, 1 << 16),
            ("seanet.n_filters", s.n_filters, 1 << 16),
            ("seanet.kernel_size", s.kernel_size, 1 << 10),
            (
                "seanet.residual_kernel_size",
                s.residual_kernel_size,
                1 << 10,
            ),
            ("seanet.last_kernel_size", s.last_kernel_size, 1 << 10),
            ("seanet.dilation_base", s.dilation_base, 1 << 4),
            ("seanet.compress", s.compress, 1 << 10),
            ("transformer.num_heads", t.num_heads, 1 << 10),
            ("transformer.num_layers", t.num_layers, 1 << 10),
            ("transformer.dim_feedforward", t.dim_feedforward, 1 << 20),
            ("transformer.context", t.context, 1 << 20),
            ("quantizer.dimension", q.dimension, 1 << 16),
            ("quantizer.n_q", q.n_q, 1 << 10),
            ("quantizer.bins", q.bins, 1 << 20),
        ];
        for (key, v, max) in sizes {
            if !(1..=max).contains(&v) {
                return err(format!("{key} = {v} is out of range 1..={max}"));
            }
        }
        if s.ratios.len() > 16 || s.ratios.iter().any(|r| !(1..=1024).contains(r)) {
            return err(format!(
                "seanet.ratios {:?} must be at most 16 values in 1..=1024",
                s.ratios
            ));
        }
        let rates_ok = |r: f64| r.is_finite() && r > 0.0 && r <= 1e6;
        if !rates_ok(self.sample_rate)
            || !rates_ok(self.frame_rate)
            || self.frame_rate > self.sample_rate
        {
            return err(format!(
                "sample_rate {} and frame_rate {} must be positive with frame_rate <= sample_rate <= 1e6",
                self.sample_rate, self.frame_rate
            ));
        }
        if !(t.max_period.is_finite() && t.max_period > 0.0) {
            return err(format!(
                "transformer.max_period {} must be positive",
                t.max_period
            ));
        }
        if self.channels != 1 || s.channels != 1 {
            return err("only mono Mimi models are supported".into());
        }
        if s.activation != "ELU" {
            return err(format!(
                "SEANet activation {} is not supported (ELU only)",
                s.activation
            ));
        }
        if !s.causal || !t.causal {
            return err("only causal (streaming) Mimi models are supported".into());
        }
        if s.n_residual_layers != 1 || !s.true_skip || s.norm != "none" {
            return err("SEANet must have n_residual_layers 1, true_skip and norm \"none\"".into());
        }
        if s.ratios.is_empty() || self.hop() == 0 || !self.frame_size().is_multiple_of(self.hop()) {
            return err(format!(
                "frame size {} is not a multiple of the SEANet hop {}",
                self.frame_size(),
                self.hop()
            ));
        }
        if t.d_model != s.dimension
            || !t.d_model.is_multiple_of(t.num_heads)
            || !(t.d_model / t.num_heads).is_multiple_of(2)
        {
            return err(format!("transformer d_model {} must equal the SEANet dimension {} and split into an even head dim", t.d_model, s.dimension));
        }
        if t.gating != "none" || t.norm != "layer_norm" || t.positional_embedding != "rope" {
            return err("Mimi transformer must use gating none, layer_norm and rope".into());
        }
        if q.input_dimension != s.dimension || q.output_dimension != s.dimension {
            return err("quantizer input/output dimension must equal the SEANet dimension".into());
        }
        if q.n_q_semantic != 1 || q.n_q < 2 {
            return err(
                "quantizer needs 1 semantic codebook and at least 1 acoustic codebook".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_published_model() {
        let c = MimiConfig::from_json("{}").unwrap();
        assert_eq!(c.hop(), 960);
        assert_eq!(c.frame_size(), 1920);
        assert_eq!(c.downsample_stride(), 2);
        let c2 = MimiConfig::from_json(r#"{"mimi": {"seanet": {"n_filters": 8}}}"#).unwrap();
        assert_eq!(c2.seanet.n_filters, 8);
        assert_eq!(c2.transformer.context, 250);
        assert!(MimiConfig::from_json("not json").is_err());
    }

    #[test]
    fn damaged_configs_are_errors_not_panics() {
        for (json, want) in [
            (
                r#"{"mimi": {"seanet": {"ratios": [4294967296, 4294967296, 4294967296]}}}"#,
                "ratios",
            ),
            (
                r#"{"mimi": {"seanet": {"dimension": 0}, "transformer": {"d_model": 0, "num_heads": 0}}}"#,
                "out of range",
            ),
            (
                r#"{"mimi": {"transformer": {"num_heads": 0}}}"#,
                "num_heads",
            ),
            (r#"{"mimi": {"seanet": {"compress": 0}}}"#, "compress"),
            (r#"{"mimi": {"frame_rate": 0}}"#, "frame_rate"),
            (r#"{"mimi": {"sample_rate": 1e300}}"#, "sample_rate"),
        ] {
            let e = MimiConfig::from_json(json).unwrap_err().to_string();
            assert!(e.contains(want), "{json}: {e}");
        }
    }
}
