//! Mimi's codec transformer (`ProjectedTransformer` with d_model = dimension, no projections):
//! the shared [`crate::nn::Transformer`] with LayerNorm, layer scale, interleaved RoPE, a plain
//! GELU MLP and an f32 ring KV cache, run on the `[T, D]` rows of one frame (T = 25 Hz steps).
//! The codec keeps channel-major `[D, T]` activations: this part transposes its input into rows;
//! its output stays `[T, D]` rows, which the next conv reads as such (`ConvRun::ROWS_INPUT`).

use crate::gpu::{BufferUsage, Context, GpuBuffer, Recorder};
use crate::kernels::elementwise;
use crate::nn::transformer::{self, Gating, Positional};
use crate::nn::{NormKind, Scope};

use super::config::TransformerConfig;
use super::streaming::Streaming;

/// `encoder_transformer` or `decoder_transformer`: `[D, t]` in, `[t, D]` rows out.
pub struct CodecTransformer {
    inner: transformer::Transformer,
    d: u32,
    t: u32,
    /// The `[t, D]` rows the layers run on, and the output.
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
    /// Load `transformer.layers.{l}.*` of the scope `w` for a call of `t` rows (25 Hz steps).
    pub fn load(ctx: &Context, w: &Scope, cfg: &TransformerConfig, t: u32) -> crate::Result<Self> {
        let nn_cfg = nn_config(cfg, t);
        let inner = transformer::Transformer::load(ctx, &w.pp("transformer"), &nn_cfg)?;
        let bytes = (t as usize * cfg.d_model * 4) as u64;
        let buffer = |what: &str| {
            ctx.create_buffer(
                &format!("{} {what}", w.prefix()),
                bytes,
                BufferUsage::Storage,
            )
        };
        Ok(Self {
            inner,
            d: cfg.d_model as u32,
            t,
            rows: buffer("rows")?,
        })
    }
}

impl Streaming for CodecTransformer {
    /// Channel-major `input` = `[D, t]` (the codec's conv layout): transpose to rows, all layers,
    /// in place; the output is those `[t, D]` rows.
    fn record(&mut self, rec: &mut Recorder, input: &GpuBuffer) -> crate::Result<()> {
        elementwise::transpose(rec, input.view(), self.rows.view(), self.d, self.t)?;
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
