//! `config.json`'s LM keys as PyPI `moshi` passes them to `LMModel` (`get_moshi_lm`), read with
//! serde derive. Every key is optional: an absent or null key takes the Moshi 7B value, or the
//! value the reference derives from other keys (`text_card_out` from `text_card`,
//! `depformer_gating` from `gating`, …).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::LmConfig;
use crate::weights::WeightsError;

/// `depformer_dim_feedforward`: one width, or one per depformer step.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum FeedForward {
    One(usize),
    PerStep(Vec<usize>),
}

/// A key that is given, even as null (`Some(None)`), as opposed to absent (`None`).
fn given<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// The raw keys, before defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LmKeys {
    dim: Option<usize>,
    num_heads: Option<usize>,
    num_layers: Option<usize>,
    hidden_scale: Option<f64>,
    norm: Option<String>,
    gating: Option<String>,
    positional_embedding: Option<String>,
    max_period: Option<f64>,
    context: Option<usize>,
    causal: Option<bool>,
    /// The init value of the layer scale; only its presence matters here.
    layer_scale: Option<f64>,
    n_q: Option<usize>,
    dep_q: Option<usize>,
    card: Option<usize>,
    text_card: Option<usize>,
    text_card_out: Option<usize>,
    existing_text_padding_id: Option<u32>,
    existing_text_end_padding_id: Option<u32>,
    delays: Option<Vec<usize>>,
    norm_emb: Option<bool>,
    bias_proj: Option<bool>,
    depformer_dim: Option<usize>,
    depformer_num_heads: Option<usize>,
    depformer_num_layers: Option<usize>,
    depformer_dim_feedforward: Option<FeedForward>,
    depformer_gating: Option<String>,
    depformer_pos_emb: Option<String>,
    depformer_max_period: Option<f64>,
    /// Absent: `layer_scale`'s; null: none.
    #[serde(deserialize_with = "given")]
    depformer_layer_scale: Option<Option<f64>>,
    depformer_multi_linear: Option<bool>,
    depformer_weights_per_step: Option<bool>,
    depformer_weights_per_step_schedule: Option<Vec<usize>>,
    depformer_low_rank_embeddings: Option<usize>,
    depformer_norm: Option<String>,
    extra_heads_num_heads: Option<usize>,
    extra_heads_dim: Option<usize>,
    conditioners: Option<BTreeMap<String, ConditionerConfig>>,
    fuser: Option<FuserConfig>,
    cross_attention: Option<bool>,
    demux_second_text_stream: Option<bool>,
    /// The older name of `demux_second_text_stream`.
    demux_second_stream: Option<bool>,
    /// Only "hibiki" changes the LM (see [`LmConfig::eos_reads_pad`]).
    model_type: Option<String>,
}

/// One entry of `conditioners` (`moshi/models/loaders.py`: `get_conditioner`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionerConfig {
    #[serde(rename = "type")]
    pub kind: ConditionerKind,
    /// The kwargs of a `lut` conditioner.
    #[serde(default)]
    pub lut: Option<LutConditioner>,
    /// The kwargs of a `tensor` conditioner (kept as given).
    #[serde(default)]
    pub tensor: Option<serde_json::Value>,
}

/// What a conditioner reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConditionerKind {
    /// A lookup table of named values (Hibiki's style conditioning).
    Lut,
    /// A tensor given at run time.
    Tensor,
}

/// A `lut` conditioner's kwargs (`LUTConditioner`); others are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LutConditioner {
    pub n_bins: usize,
    pub dim: usize,
    pub tokenizer: String,
    #[serde(default)]
    pub possible_values: Option<Vec<String>>,
}

/// `fuser` (`ConditionFuser`): which conditions are summed into the input, attended to or
/// prepended.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FuserConfig {
    pub sum: Vec<String>,
    pub cross: Vec<String>,
    pub prepend: Vec<String>,
    pub cross_attention_pos_emb: bool,
    pub cross_attention_pos_emb_scale: Option<f64>,
}

impl LmKeys {
    /// Resolve the defaults. `n_q` is bounded first: the default delays are allocated from it.
    pub(super) fn into_config(self) -> Result<LmConfig, WeightsError> {
        let d = LmConfig::default();
        let bad = |key: &str, why: String| {
            WeightsError::Config(format!("config.json: key \"{key}\" {why}"))
        };
        let n_q = self.n_q.unwrap_or(d.n_q);
        if n_q > 1024 {
            return Err(bad(
                "n_q",
                format!("{n_q} audio streams is implausible (Moshi has 16)"),
            ));
        }
        let default_delays = if n_q == d.n_q {
            d.delays.clone()
        } else {
            vec![0; n_q + 1]
        };
        for (key, list) in [
            ("delays", &self.delays),
            (
                "depformer_weights_per_step_schedule",
                &self.depformer_weights_per_step_schedule,
            ),
        ] {
            if let Some(v) = list.iter().flatten().find(|&&v| v > 1 << 20) {
                return Err(bad(
                    key,
                    format!("must list small non-negative integers, got {v}"),
                ));
            }
        }
        let hidden_scale = self.hidden_scale.unwrap_or(d.hidden_scale);
        let depformer_dim = self.depformer_dim.unwrap_or(d.depformer_dim);
        let depformer_dim_feedforward = match self.depformer_dim_feedforward {
            Some(FeedForward::One(n)) => n,
            Some(FeedForward::PerStep(a)) => match a.first() {
                Some(&first) if a.iter().all(|&v| v == first) => first,
                _ => {
                    return Err(bad(
                        "depformer_dim_feedforward",
                        "lists different widths per step, which parle does not support yet".into(),
                    ))
                }
            },
            None if self.depformer_dim.is_some() || self.hidden_scale.is_some() => {
                (hidden_scale * depformer_dim as f64) as usize
            }
            None => d.depformer_dim_feedforward,
        };
        let text_card = self.text_card.unwrap_or(d.text_card);
        let gating = self.gating.unwrap_or(d.gating);
        let max_period = self.max_period.unwrap_or(d.max_period);
        let layer_scale = self.layer_scale.is_some();
        for (key, v) in [
            ("hidden_scale", self.hidden_scale),
            ("max_period", self.max_period),
            ("depformer_max_period", self.depformer_max_period),
        ] {
            if v.is_some_and(|x| !x.is_finite()) {
                return Err(bad(key, "must be a finite number".into()));
            }
        }
        Ok(LmConfig {
            dim: self.dim.unwrap_or(d.dim),
            num_heads: self.num_heads.unwrap_or(d.num_heads),
            num_layers: self.num_layers.unwrap_or(d.num_layers),
            hidden_scale,
            norm: self.norm.unwrap_or(d.norm),
            depformer_gating: self.depformer_gating.unwrap_or_else(|| gating.clone()),
            gating,
            positional_embedding: self.positional_embedding.unwrap_or(d.positional_embedding),
            max_period,
            context: self.context.unwrap_or(d.context),
            causal: self.causal.unwrap_or(d.causal),
            layer_scale,
            n_q,
            dep_q: self.dep_q.unwrap_or(d.dep_q),
            card: self.card.unwrap_or(d.card),
            text_card,
            text_card_out: self.text_card_out.unwrap_or(text_card),
            existing_text_padding_id: self
                .existing_text_padding_id
                .unwrap_or(d.existing_text_padding_id),
            existing_text_end_padding_id: self
                .existing_text_end_padding_id
                .unwrap_or(d.existing_text_end_padding_id),
            delays: self.delays.unwrap_or(default_delays),
            norm_emb: self.norm_emb.unwrap_or(false),
            bias_proj: self.bias_proj.unwrap_or(false),
            depformer_dim,
            depformer_num_heads: self.depformer_num_heads.unwrap_or(d.depformer_num_heads),
            depformer_num_layers: self.depformer_num_layers.unwrap_or(d.depformer_num_layers),
            depformer_dim_feedforward,
            depformer_pos_emb: self.depformer_pos_emb.unwrap_or(d.depformer_pos_emb),
            depformer_max_period: self.depformer_max_period.unwrap_or(max_period),
            depformer_layer_scale: match self.depformer_layer_scale {
                Some(v) => v.is_some(),
                None => layer_scale,
            },
            depformer_multi_linear: self
                .depformer_multi_linear
                .unwrap_or(d.depformer_multi_linear),
            depformer_weights_per_step: self
                .depformer_weights_per_step
                .unwrap_or(d.depformer_weights_per_step),
            depformer_weights_per_step_schedule: self.depformer_weights_per_step_schedule,
            depformer_low_rank_embeddings: self.depformer_low_rank_embeddings,
            depformer_norm: self.depformer_norm,
            extra_heads_num_heads: self.extra_heads_num_heads.unwrap_or(0),
            extra_heads_dim: self.extra_heads_dim.unwrap_or(d.extra_heads_dim),
            conditioners: self.conditioners.unwrap_or_default(),
            fuser: self.fuser,
            cross_attention: self.cross_attention.unwrap_or(false),
            demux_second_text_stream: self
                .demux_second_text_stream
                .or(self.demux_second_stream)
                .unwrap_or(false),
            eos_reads_pad: self.model_type.as_deref() == Some("hibiki"),
        })
    }
}
