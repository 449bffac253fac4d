//! Mimi's codec transformer (`ProjectedTransformer` with d_model = dimension, no projections):
//! the shared [`crate::nn::Transformer`] with LayerNorm, layer scale, interleaved RoPE, a plain
//! GELU MLP and an f32 ring KV cache, run on the `[T, D]` rows of one frame (T = 25 Hz steps).
//! The codec keeps channel-major `[D, T]` activations, so this wrapper transposes in and out.

use crate::gpu::{BufferUsage, Context, GpuBuffer, Recorder};
use crate::kernels::elementwise;
use crate::nn::transformer::{self, Gating, Positional};
use crate::nn::{NormKind, Weights};
use crate::weights::TensorSource;

use super::config::TransformerConfig;

pub struct Transformer {
    inner: transformer::Transformer,
    d: u32,
    t: u32,
    /// The `[t, D]` rows the layers run on.
    rows: GpuBuffer,
}

impl Transformer {
    /// Load `{prefix}.transformer.layers.{l}.*` for a call size of `t` rows per step.
    pub fn load(
        ctx: &Context,
        f: &dyn TensorSource,
        prefix: &str,
        cfg: &TransformerConfig,
        t: u32,
    ) -> crate::Result<Self> {
        // The config was validated: LayerNorm, no gating, RoPE, causal.
        let nn_cfg = transformer::TransformerConfig {
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
        };
        let inner = transformer::Transformer::load(
            ctx,
            &Weights::checkpoint(f),
            &format!("{prefix}.transformer"),
            &nn_cfg,
        )?;
        let rows = ctx.create_buffer(
            &format!("{prefix} rows"),
            (t as usize * cfg.d_model * 4) as u64,
            BufferUsage::Storage,
        )?;
        Ok(Self {
            inner,
            d: cfg.d_model as u32,
            t,
            rows,
        })
    }

    pub fn reset(&mut self) {
        self.inner.reset();
    }

    /// Run the transformer on channel-major `input` = `[D, t]` (the codec's conv layout) into
    /// `output` = `[D, t]`: transpose to rows, all layers, transpose back.
    pub fn forward_channels(
        &mut self,
        rec: &mut Recorder,
        input: &GpuBuffer,
        output: &GpuBuffer,
    ) -> crate::Result<()> {
        elementwise::transpose(rec, input.view(), self.rows.view(), self.d, self.t)?;
        self.inner.forward(rec, &self.rows)?;
        elementwise::transpose(rec, self.rows.view(), output.view(), self.t, self.d)?;
        Ok(())
    }
}
