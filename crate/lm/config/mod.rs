//! The LM's configuration with the reference package's `config.json` keys (`LMModel` kwargs,
//! spec §2.1 and §5), read with serde ([`keys`]). A missing key takes the Moshi 7B value; a key
//! of the wrong type, a feature parle does not run yet ([`LmConfig::check_supported`]) or
//! inconsistent values ([`LmConfig::validate`]) are errors that name the key.

mod keys;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use keys::{ConditionerConfig, ConditionerKind, FuserConfig, LutConditioner};

use crate::nn::transformer::{Gating, Positional, TransformerConfig};
use crate::nn::NormKind;
use crate::weights::config::from_keys;
use crate::weights::estimate::LmShape;
use crate::weights::WeightsError;

/// Moshi LM hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LmConfig {
    pub dim: usize,
    pub num_heads: usize,
    pub num_layers: usize,
    pub hidden_scale: f64,
    pub norm: String,
    pub gating: String,
    pub positional_embedding: String,
    pub max_period: f64,
    pub context: usize,
    /// Only causal (streaming) LMs run here.
    pub causal: bool,
    pub layer_scale: bool,
    /// Audio input streams (Moshi's own `dep_q` then the user's).
    pub n_q: usize,
    /// Audio codebooks generated per step by the depformer.
    pub dep_q: usize,
    /// Audio vocabulary (tables have `card + 1` rows: `card` is the initial token).
    pub card: usize,
    /// Text vocabulary (the table has `text_card + 1` rows: `text_card` is the initial token).
    pub text_card: usize,
    /// Text head outputs.
    pub text_card_out: usize,
    pub existing_text_padding_id: u32,
    pub existing_text_end_padding_id: u32,
    /// `delays[0]` text, `delays[1..]` the `n_q` audio streams.
    pub delays: Vec<usize>,
    /// Normalized embeddings (`ScaledEmbedding(norm=True)`): not supported yet.
    pub norm_emb: bool,
    /// A bias on the text head: not supported yet.
    pub bias_proj: bool,
    pub depformer_dim: usize,
    pub depformer_num_heads: usize,
    pub depformer_num_layers: usize,
    pub depformer_dim_feedforward: usize,
    pub depformer_gating: String,
    pub depformer_pos_emb: String,
    pub depformer_max_period: f64,
    pub depformer_layer_scale: bool,
    pub depformer_multi_linear: bool,
    pub depformer_weights_per_step: bool,
    pub depformer_weights_per_step_schedule: Option<Vec<usize>>,
    pub depformer_low_rank_embeddings: Option<usize>,
    /// A norm inside the depformer's input: not supported yet.
    pub depformer_norm: Option<String>,
    /// Extra heads on the temporal transformer's output (the STT models' voice-activity heads):
    /// how many, and the width of each.
    pub extra_heads_num_heads: usize,
    pub extra_heads_dim: usize,
    /// Conditioners by name (Hibiki: a `lut` of the voice-quality label).
    pub conditioners: BTreeMap<String, ConditionerConfig>,
    /// How the conditions enter the model.
    pub fuser: Option<FuserConfig>,
    /// Cross-attention to a condition in every layer.
    pub cross_attention: bool,
    /// A second text stream demultiplexed from the text tokens.
    pub demux_second_text_stream: bool,
    /// `model_type` "hibiki": PyPI moshi's `CheckpointInfo.get_moshi` makes the text
    /// embedding's row 2 (EOS) equal to row 3 (PAD), so an early EOS reads as padding.
    pub eos_reads_pad: bool,
}

impl Default for LmConfig {
    /// Moshiko / Moshika 7B (spec §2.1).
    fn default() -> Self {
        let mut delays = vec![0, 0];
        delays.extend([1; 7]);
        delays.push(0);
        delays.extend([1; 7]);
        Self {
            dim: 4096,
            num_heads: 32,
            num_layers: 32,
            hidden_scale: 4.125,
            norm: "rms_norm_f32".into(),
            gating: "silu".into(),
            positional_embedding: "rope".into(),
            max_period: 10000.0,
            context: 3000,
            causal: true,
            layer_scale: false,
            n_q: 16,
            dep_q: 8,
            card: 2048,
            text_card: 32000,
            text_card_out: 32000,
            existing_text_padding_id: 3,
            existing_text_end_padding_id: 0,
            delays,
            norm_emb: false,
            bias_proj: false,
            depformer_dim: 1024,
            depformer_num_heads: 16,
            depformer_num_layers: 6,
            depformer_dim_feedforward: 4224,
            depformer_gating: "silu".into(),
            depformer_pos_emb: "none".into(),
            depformer_max_period: 10000.0,
            depformer_layer_scale: false,
            depformer_multi_linear: true,
            depformer_weights_per_step: true,
            depformer_weights_per_step_schedule: None,
            depformer_low_rank_embeddings: None,
            depformer_norm: None,
            extra_heads_num_heads: 0,
            extra_heads_dim: 6,
            conditioners: BTreeMap::new(),
            fuser: None,
            cross_attention: false,
            demux_second_text_stream: false,
            eos_reads_pad: false,
        }
    }
}

fn bad(key: &str, why: impl std::fmt::Display) -> WeightsError {
    WeightsError::Config(format!("config.json: key \"{key}\" {why}"))
}

impl LmConfig {
    /// Parse the top-level LM keys of a model directory's `config.json` text. Keys that are
    /// absent take the Moshi 7B values.
    pub fn from_json(text: &str) -> Result<Self, WeightsError> {
        Self::from_object(&crate::weights::config::config_object(text)?)
    }

    /// Read the LM keys of `config.json`'s parsed top-level object (other keys are ignored),
    /// then check that parle runs what they describe and that they agree.
    pub fn from_object(obj: &Map<String, Value>) -> Result<Self, WeightsError> {
        let keys: keys::LmKeys = from_keys(obj, "")?;
        let cfg = keys.into_config()?;
        cfg.check_supported()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Features of the reference LM that parle does not run yet: each is an error naming its
    /// key.
    pub fn check_supported(&self) -> Result<(), WeightsError> {
        let not_yet = |key: &str| Err(bad(key, "names a feature parle does not support yet"));
        for (key, on) in [
            ("demux_second_text_stream", self.demux_second_text_stream),
            ("cross_attention", self.cross_attention),
            ("norm_emb", self.norm_emb),
            ("bias_proj", self.bias_proj),
            ("depformer_norm", self.depformer_norm.is_some()),
        ] {
            if on {
                return not_yet(key);
            }
        }
        if !self.causal {
            return Err(bad(
                "causal",
                "is false: only causal (streaming) LMs run here",
            ));
        }
        self.check_conditions()?;
        if self.extra_heads_num_heads > 0 && self.extra_heads_dim == 0 {
            return Err(bad(
                "extra_heads_dim",
                "is 0: extra heads need at least one output",
            ));
        }
        Ok(())
    }

    /// Conditioners parle runs: `lut` conditioners with a list of `possible_values` (Hibiki's),
    /// each summed into the input (`fuser.sum`). Anything else is an error naming its key.
    fn check_conditions(&self) -> Result<(), WeightsError> {
        let fuser = self.fuser.clone().unwrap_or_default();
        if !fuser.cross.is_empty() {
            return Err(bad(
                "fuser.cross",
                "asks for cross-attention, which parle does not support",
            ));
        }
        if let Some(n) = fuser.prepend.first() {
            return Err(bad(
                "fuser.prepend",
                format!("prepends the condition \"{n}\", which parle does not support"),
            ));
        }
        for (name, c) in &self.conditioners {
            let key = format!("conditioners.{name}");
            match (c.kind, &c.lut) {
                (ConditionerKind::Tensor, _) => {
                    return Err(bad(
                        &key,
                        "is a tensor conditioner, which parle does not support",
                    ))
                }
                (ConditionerKind::Lut, None) => {
                    return Err(bad(&key, "is a lut conditioner without its \"lut\" kwargs"))
                }
                (ConditionerKind::Lut, Some(lut)) => {
                    if lut.tokenizer != "noop" {
                        return Err(bad(
                            &format!("{key}.lut.tokenizer"),
                            format!("is \"{}\": only \"noop\" exists", lut.tokenizer),
                        ));
                    }
                    match &lut.possible_values {
                        Some(v) if !v.is_empty() && v.len() <= lut.n_bins => {}
                        _ => {
                            return Err(bad(
                                &format!("{key}.lut.possible_values"),
                                "must list the values (at most n_bins): parle does not run the hash tokenizer",
                            ))
                        }
                    }
                    if lut.dim == 0 || lut.dim > 1 << 16 || lut.n_bins > 1 << 16 {
                        return Err(bad(&key, "has an implausible dim or n_bins"));
                    }
                }
            }
            if !fuser.sum.contains(name) {
                return Err(bad(
                    "fuser.sum",
                    format!("does not list the conditioner \"{name}\": parle only sums conditions into the input"),
                ));
            }
        }
        if let Some(n) = fuser
            .sum
            .iter()
            .find(|n| !self.conditioners.contains_key(*n))
        {
            return Err(bad(
                "fuser.sum",
                format!("names \"{n}\", which \"conditioners\" does not define"),
            ));
        }
        Ok(())
    }

    /// Whether the input sums conditions (Hibiki's LUT conditioners).
    pub fn conditioned(&self) -> bool {
        !self.conditioners.is_empty()
    }

    /// Check the values against each other.
    pub fn validate(&self) -> Result<(), WeightsError> {
        let c = |m: String| WeightsError::Config(format!("config.json: {m}"));
        // Bounds far above every published model, so that sizes computed from them cannot
        // overflow or ask for absurd allocations.
        for (key, v, max) in [
            ("dim", self.dim, 1 << 16),
            ("depformer_dim", self.depformer_dim, 1 << 16),
            ("num_layers", self.num_layers, 1024),
            ("depformer_num_layers", self.depformer_num_layers, 1024),
            ("num_heads", self.num_heads, 4096),
            ("depformer_num_heads", self.depformer_num_heads, 4096),
            (
                "depformer_dim_feedforward",
                self.depformer_dim_feedforward,
                1 << 20,
            ),
            ("context", self.context, 1 << 20),
            ("card", self.card, 1 << 24),
            ("text_card", self.text_card, 1 << 24),
            ("text_card_out", self.text_card_out, 1 << 24),
            (
                "depformer_low_rank_embeddings",
                self.depformer_low_rank_embeddings.unwrap_or(1),
                1 << 16,
            ),
            ("extra_heads_num_heads", self.extra_heads_num_heads, 1 << 10),
            ("extra_heads_dim", self.extra_heads_dim, 1 << 16),
        ] {
            if v > max {
                return Err(c(format!(
                    "\"{key}\" {v} is implausibly large (at most {max})"
                )));
            }
        }
        if !(self.hidden_scale > 0.0 && self.hidden_scale <= 64.0) {
            return Err(c(format!(
                "\"hidden_scale\" {} must be in (0, 64]",
                self.hidden_scale
            )));
        }
        if !(self.max_period > 0.0 && self.depformer_max_period > 0.0) {
            return Err(c("\"max_period\" must be positive".into()));
        }
        if self.delays.len() != self.n_q + 1 {
            return Err(c(format!(
                "\"delays\" has {} entries, expected n_q + 1 = {}",
                self.delays.len(),
                self.n_q + 1
            )));
        }
        if self.dep_q > self.n_q {
            return Err(c(format!("dep_q {} exceeds n_q {}", self.dep_q, self.n_q)));
        }
        if self.dim == 0 || self.num_heads == 0 || !self.dim.is_multiple_of(self.num_heads) {
            return Err(c(format!(
                "dim {} must be a positive multiple of num_heads {}",
                self.dim, self.num_heads
            )));
        }
        if self.depformer_dim == 0
            || self.depformer_num_heads == 0
            || !self.depformer_dim.is_multiple_of(self.depformer_num_heads)
        {
            return Err(c(format!(
                "depformer_dim {} must be a positive multiple of depformer_num_heads {}",
                self.depformer_dim, self.depformer_num_heads
            )));
        }
        if self.card == 0 || self.text_card == 0 || self.text_card_out == 0 || self.context == 0 {
            return Err(c(
                "card, text_card, text_card_out and context must be positive".into(),
            ));
        }
        if let Some(s) = &self.depformer_weights_per_step_schedule {
            if s.len() != self.dep_q {
                return Err(c(format!(
                    "\"depformer_weights_per_step_schedule\" has {} entries, expected dep_q = {}",
                    s.len(),
                    self.dep_q
                )));
            }
        }
        if *self.delays.iter().max().unwrap_or(&0) > 64 {
            return Err(c("delays above 64 steps are not supported".into()));
        }
        for (key, v) in [("norm", &self.norm)] {
            if NormKind::from_name(v).is_none() {
                return Err(c(format!("\"{key}\" \"{v}\" is not one of layer_norm, layer_norm_f32, rms_norm, rms_norm_f32")));
            }
        }
        for (key, v) in [
            ("gating", &self.gating),
            ("depformer_gating", &self.depformer_gating),
        ] {
            if !matches!(v.as_str(), "none" | "silu") {
                return Err(c(format!(
                    "\"{key}\" \"{v}\" is not supported (none or silu)"
                )));
            }
        }
        for (key, v) in [
            ("positional_embedding", &self.positional_embedding),
            ("depformer_pos_emb", &self.depformer_pos_emb),
        ] {
            if !matches!(v.as_str(), "none" | "rope" | "sin") {
                return Err(c(format!(
                    "\"{key}\" \"{v}\" is not supported (none, rope or sin)"
                )));
            }
        }
        Ok(())
    }

    pub fn max_delay(&self) -> usize {
        self.delays.iter().copied().max().unwrap_or(0)
    }

    /// The user's audio streams (input only).
    pub fn user_streams(&self) -> usize {
        self.n_q - self.dep_q
    }

    /// Weight set of depformer step `k`.
    pub fn depformer_set(&self, k: usize) -> usize {
        match &self.depformer_weights_per_step_schedule {
            Some(s) => s[k],
            None if self.depformer_weights_per_step => k,
            None => 0,
        }
    }

    /// Number of `depformer_in` linears (`num_in` of the reference).
    pub fn depformer_in_count(&self) -> usize {
        if !self.depformer_multi_linear {
            1
        } else {
            match &self.depformer_weights_per_step_schedule {
                Some(s) => s.iter().max().map_or(1, |m| m + 1),
                None => self.dep_q,
            }
        }
    }

    fn positional(name: &str) -> Positional {
        match name {
            "rope" => Positional::Rope,
            "sin" => Positional::Sin,
            _ => Positional::None,
        }
    }

    fn gating(name: &str) -> Gating {
        if name == "silu" {
            Gating::Silu
        } else {
            Gating::None
        }
    }

    /// The shape the memory estimate sizes the LM's buffers from (`f32_cache`: the load's
    /// [`crate::lm::LmOptions::f32_cache`]).
    pub fn shape(&self, f32_cache: bool) -> LmShape {
        let norm = NormKind::from_name(&self.norm).unwrap_or(NormKind::RmsNorm { eps: 1e-8 });
        LmShape {
            dim: self.dim,
            depformer_dim: self.depformer_dim,
            n_q: self.n_q,
            dep_q: self.dep_q,
            card: self.card,
            text_card: self.text_card,
            text_card_out: self.text_card_out,
            depformer_in_count: self.depformer_in_count(),
            low_rank: self.depformer_low_rank_embeddings,
            max_delay: self.max_delay(),
            layer_norm: matches!(norm, NormKind::LayerNorm { .. }),
            extra_heads: self.extra_heads_num_heads,
            extra_heads_dim: self.extra_heads_dim,
            temporal: TransformerConfig {
                f32_cache,
                ..self.temporal()
            }
            .shape("transformer"),
            depformer: TransformerConfig {
                f32_cache,
                ..self.depformer()
            }
            .shape("depformer"),
            own_input_per_step: self.own_input_per_step(),
            conditioned: self.conditioned(),
            guided: false,
        }
    }

    /// Every depformer step has a `depformer_in` of its own (more than one step): the loader
    /// may stack them ([`crate::weights::estimate::stacks_depformer_inputs`]).
    pub fn own_input_per_step(&self) -> bool {
        self.depformer_multi_linear
            && self.dep_q > 1
            && self.depformer_in_count() == self.dep_q
            && (0..self.dep_q).all(|k| self.depformer_set(k) == k)
    }

    /// The temporal transformer (one row per call).
    pub fn temporal(&self) -> TransformerConfig {
        TransformerConfig {
            d_model: self.dim,
            num_heads: self.num_heads,
            num_layers: self.num_layers,
            dim_feedforward: (self.hidden_scale * self.dim as f64) as usize,
            norm: NormKind::from_name(&self.norm).unwrap_or(NormKind::RmsNorm { eps: 1e-8 }),
            gating: Self::gating(&self.gating),
            positional: Self::positional(&self.positional_embedding),
            max_period: self.max_period as f32,
            layer_scale: self.layer_scale,
            context: self.context,
            rows: 1,
            schedule: Vec::new(),
            f32_cache: false,
            qkv_attention: false,
            mlp_split: false,
        }
    }

    /// The depformer: `dep_q` positions per frame, weights per step as configured.
    pub fn depformer(&self) -> TransformerConfig {
        let schedule: Vec<usize> = if self.depformer_weights_per_step {
            (0..self.dep_q).map(|k| self.depformer_set(k)).collect()
        } else {
            vec![0; self.dep_q]
        };
        TransformerConfig {
            d_model: self.depformer_dim,
            num_heads: self.depformer_num_heads,
            num_layers: self.depformer_num_layers,
            dim_feedforward: self.depformer_dim_feedforward,
            norm: NormKind::from_name(&self.norm).unwrap_or(NormKind::RmsNorm { eps: 1e-8 }),
            gating: Self::gating(&self.depformer_gating),
            positional: Self::positional(&self.depformer_pos_emb),
            max_period: self.depformer_max_period as f32,
            layer_scale: self.depformer_layer_scale,
            context: self.dep_q,
            rows: 1,
            schedule,
            f32_cache: false,
            qkv_attention: false,
            // 6 layers, ≤ 8 keys, one row: each layer in 3 launches (the attention inside the
            // in-projection, the MLP split by hidden units and summed by the next layer).
            mlp_split: true,
        }
    }
}
