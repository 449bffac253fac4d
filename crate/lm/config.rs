//! The LM's configuration with the reference package's `config.json` keys (`LMModel` kwargs,
//! spec §2.1 and §5). A missing key takes the Moshi 7B value; a key of the wrong type, an
//! unsupported feature or inconsistent values are errors that name the key.

use serde_json::{Map, Value};

use crate::nn::transformer::{Gating, Positional, TransformerConfig};
use crate::nn::NormKind;
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
            layer_scale: false,
            n_q: 16,
            dep_q: 8,
            card: 2048,
            text_card: 32000,
            text_card_out: 32000,
            existing_text_padding_id: 3,
            existing_text_end_padding_id: 0,
            delays,
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
        }
    }
}

fn bad(key: &str, why: impl std::fmt::Display) -> WeightsError {
    WeightsError::Config(format!("config.json: key \"{key}\" {why}"))
}

struct Keys<'a>(&'a Map<String, Value>);

impl Keys<'_> {
    fn usize(&self, key: &str, default: usize) -> Result<usize, WeightsError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|&n| n <= u32::MAX as u64)
                .map(|n| n as usize)
                .ok_or_else(|| bad(key, format!("must be a non-negative integer, got {v}"))),
        }
    }
    fn f64(&self, key: &str, default: f64) -> Result<f64, WeightsError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(key, format!("must be a number, got {v}"))),
        }
    }
    fn bool(&self, key: &str, default: bool) -> Result<bool, WeightsError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| bad(key, format!("must be true or false, got {v}"))),
        }
    }
    fn string(&self, key: &str, default: &str) -> Result<String, WeightsError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default.into()),
            Some(v) => v
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(key, format!("must be a string, got {v}"))),
        }
    }
    fn list(&self, key: &str) -> Result<Option<Vec<usize>>, WeightsError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_u64()
                        .filter(|&n| n <= 1 << 20)
                        .map(|n| n as usize)
                        .ok_or_else(|| {
                            bad(
                                key,
                                format!("must list small non-negative integers, got {v}"),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(bad(key, format!("must be a list, got {v}"))),
        }
    }
    /// `layer_scale` is a number (the init value) or null; only its presence matters here.
    fn present(&self, key: &str, default: bool) -> bool {
        match self.0.get(key) {
            None => default,
            Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(_) => true,
        }
    }
}

impl LmConfig {
    /// Parse the top-level LM keys of a model directory's `config.json` text. Keys that are
    /// absent take the Moshi 7B values.
    pub fn from_json(text: &str) -> Result<Self, WeightsError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| WeightsError::Config(format!("config.json is not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| WeightsError::Config("config.json is not a JSON object".into()))?;
        Self::from_keys(obj)
    }

    fn from_keys(obj: &Map<String, Value>) -> Result<Self, WeightsError> {
        let k = Keys(obj);
        let d = Self::default();
        for unsupported in [
            "demux_second_text_stream",
            "cross_attention",
            "conditioners",
            "fuser",
        ] {
            if k.present(unsupported, false) {
                return Err(bad(
                    unsupported,
                    "names a feature parle does not support yet",
                ));
            }
        }
        if k.present("depformer_norm", false) {
            return Err(bad(
                "depformer_norm",
                "names a feature parle does not support yet",
            ));
        }
        let dim = k.usize("dim", d.dim)?;
        let hidden_scale = k.f64("hidden_scale", d.hidden_scale)?;
        let depformer_dim = k.usize("depformer_dim", d.depformer_dim)?;
        let text_card = k.usize("text_card", d.text_card)?;
        let n_q = k.usize("n_q", d.n_q)?;
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
        let dep_ff_default =
            if obj.contains_key("depformer_dim") || obj.contains_key("hidden_scale") {
                (hidden_scale * depformer_dim as f64) as usize
            } else {
                d.depformer_dim_feedforward
            };
        let depformer_dim_feedforward = match obj.get("depformer_dim_feedforward") {
            Some(Value::Array(a)) => {
                let first = a.first().and_then(Value::as_u64);
                if first.is_none() || a.iter().any(|v| v.as_u64() != first) {
                    return Err(bad(
                        "depformer_dim_feedforward",
                        "lists different widths per step, which parle does not support yet",
                    ));
                }
                first.unwrap_or_default() as usize
            }
            _ => k.usize("depformer_dim_feedforward", dep_ff_default)?,
        };
        let gating = k.string("gating", &d.gating)?;
        let cfg = Self {
            dim,
            num_heads: k.usize("num_heads", d.num_heads)?,
            num_layers: k.usize("num_layers", d.num_layers)?,
            hidden_scale,
            norm: k.string("norm", &d.norm)?,
            positional_embedding: k.string("positional_embedding", &d.positional_embedding)?,
            max_period: k.f64("max_period", d.max_period)?,
            context: k.usize("context", d.context)?,
            layer_scale: k.present("layer_scale", d.layer_scale),
            n_q,
            dep_q: k.usize("dep_q", d.dep_q)?,
            card: k.usize("card", d.card)?,
            text_card,
            text_card_out: k.usize("text_card_out", text_card)?,
            existing_text_padding_id: k.usize("existing_text_padding_id", 3)? as u32,
            existing_text_end_padding_id: k.usize("existing_text_end_padding_id", 0)? as u32,
            delays: k.list("delays")?.unwrap_or(default_delays),
            depformer_dim,
            depformer_num_heads: k.usize("depformer_num_heads", d.depformer_num_heads)?,
            depformer_num_layers: k.usize("depformer_num_layers", d.depformer_num_layers)?,
            depformer_dim_feedforward,
            depformer_gating: k.string("depformer_gating", &gating)?,
            gating,
            depformer_pos_emb: k.string("depformer_pos_emb", &d.depformer_pos_emb)?,
            depformer_max_period: k
                .f64("depformer_max_period", k.f64("max_period", d.max_period)?)?,
            depformer_layer_scale: k
                .present("depformer_layer_scale", k.present("layer_scale", false)),
            depformer_multi_linear: k.bool("depformer_multi_linear", d.depformer_multi_linear)?,
            depformer_weights_per_step: k
                .bool("depformer_weights_per_step", d.depformer_weights_per_step)?,
            depformer_weights_per_step_schedule: k.list("depformer_weights_per_step_schedule")?,
            depformer_low_rank_embeddings: match obj.get("depformer_low_rank_embeddings") {
                None | Some(Value::Null) => None,
                Some(_) => Some(k.usize("depformer_low_rank_embeddings", 0)?),
            },
        };
        cfg.validate()?;
        Ok(cfg)
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
        }
    }
}
