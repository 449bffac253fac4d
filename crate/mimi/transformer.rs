//! Mimi's codec transformer (`ProjectedTransformer` with d_model = dimension, no projections):
//! the shared [`crate::nn::Transformer`] with LayerNorm, layer scale, interleaved RoPE, a plain
//! GELU MLP and an f32 ring KV cache, run on the `[T, D]` rows of one frame (T = 25 Hz steps).
//! The codec keeps channel-major `[D, T]` activations elsewhere; around its transformers the
//! convs read and write rows instead: the conv before it writes its output as `[T, D]` rows
//! (`ConvRun::ROWS_OUTPUT`), this part runs in place on that buffer, and the next conv reads the
//! rows as such (`ConvRun::ROWS_INPUT`), so no transpose is launched.

use crate::gpu::{Context, GpuBuffer, GpuError, Recorder};
use crate::nn::transformer::{self, Gating, Positional};
use crate::nn::{NormKind, Scope};

use super::config::TransformerConfig;
use super::streaming::Streaming;

/// `encoder_transformer` or `decoder_transformer`: the previous part's `[t, D]` rows, in place.
pub struct CodecTransformer {
    inner: transformer::Transformer,
    /// The previous part's output, `[t, D]` rows: the layers run on them in place.
    rows: GpuBuffer,
}

/// The shared transformer's config for a codec transformer of `t` rows per call (the config was
/// validated: LayerNorm, no gating, RoPE, causal).
pub fn nn_config(cfg: &TransformerConfig, t: u32) -> transformer::TransformerConfig {
    transformer::TransformerConfig {
        d_model: cfg.d_model,
        num_heads: cfg.num_heads,
        num_layers: cfg.num_layers,
        dim_feedforward: cfg.dim_feedforward,
        norm: NormKind::LayerNorm { eps: 1e-5 },
        gating: Gating::None,
        positional: Positional::Rope,
        max_period: cfg.max_period as f32,
        layer_scale: cfg.layer_scale.is_some(),
        // A ring of context + t − 1 slots keeps the exact window `0 ≤ pq − pk < context`
        // for every query of a call, so streaming equals whole-utterance processing (§1.6).
        context: cfg.context,
        rows: t,
        schedule: Vec::new(),
        // The reference runs Mimi in f32 throughout.
        f32_cache: true,
        // 8 heads, a 250-key window, 2 rows: each head's attention runs inside the
        // in-projection (one launch instead of two).
        qkv_attention: true,
        // 8 layers, GELU MLP of 2048: each layer in 3 launches (the MLP split by hidden units).
        mlp_split: true,
    }
}

impl CodecTransformer {
    /// Load `transformer.layers.{l}.*` of the scope `w` for a call of `t` rows (25 Hz steps)
    /// that run in place on `rows`, the previous part's output (`[t, D]` f32).
    pub fn load(
        ctx: &Context,
        w: &Scope,
        cfg: &TransformerConfig,
        t: u32,
        rows: &GpuBuffer,
    ) -> crate::Result<Self> {
        let need = t as u64 * cfg.d_model as u64 * 4;
        if rows.size() < need {
            return Err(GpuError::Launch {
                kernel: "codec transformer",
                message: format!(
                    "{}: its rows buffer '{}' has {} bytes, {t} rows of {} f32 need {need}",
                    w.prefix(),
                    rows.label(),
                    rows.size(),
                    cfg.d_model
                ),
            }
            .into());
        }
        let nn_cfg = nn_config(cfg, t);
        let inner = transformer::Transformer::load(ctx, &w.pp("transformer"), &nn_cfg)?;
        Ok(Self {
            inner,
            rows: rows.clone(),
        })
    }
}

impl Streaming for CodecTransformer {
    /// `input` = the `[t, D]` rows it was loaded with: all layers, in place; the output is
    /// those rows.
    fn record(&mut self, rec: &mut Recorder, input: &GpuBuffer) -> crate::Result<()> {
        if input.id() != self.rows.id() {
            return Err(GpuError::Launch {
                kernel: "codec transformer",
                message: format!(
                    "it runs in place on '{}', the buffer it was loaded with, not '{}'",
                    self.rows.label(),
                    input.label()
                ),
            }
            .into());
        }
        self.inner.forward(rec, &self.rows)?;
        Ok(())
    }

    /// `[t, D]` rows (time-major).
    fn output(&self) -> &GpuBuffer {
        &self.rows
    }

    fn reset(&mut self) {
        self.inner.reset();
    }
}
