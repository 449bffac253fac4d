//! Mimi's codec transformer (`ProjectedTransformer` with d_model = dimension, no projections):
//! pre-norm LayerNorm layers with layer scale, interleaved RoPE, causal sliding-window attention
//! over a ring KV cache, plain GELU MLP. Runs on `[T, D]` rows, T = 25 Hz steps of one frame.

use crate::gpu::{BufferUsage, Context, GpuBuffer, Recorder};
use crate::kernels::attention::AttnConfig;
use crate::kernels::elementwise;
use crate::kernels::linear::{self, HostLinear, LinearWeights};
use crate::kernels::norm;
use crate::kernels::rope::{Rope, RopeLayout};
use crate::weights::TensorSource;

use super::config::TransformerConfig;
use super::upload;

const LN_EPS: f32 = 1e-5;

struct Layer {
    norm1: (GpuBuffer, GpuBuffer),
    norm2: (GpuBuffer, GpuBuffer),
    in_proj: LinearWeights,
    out_proj: LinearWeights,
    linear1: LinearWeights,
    linear2: LinearWeights,
    scale1: GpuBuffer,
    scale2: GpuBuffer,
    cache: GpuBuffer,
}

/// Activations of one call (static, sized for `t` rows).
struct Scratch {
    /// The `[t, D]` rows the layers run on.
    rows: GpuBuffer,
    h: GpuBuffer,
    qkv: GpuBuffer,
    attn: GpuBuffer,
    o: GpuBuffer,
    ff: GpuBuffer,
    ff_act: GpuBuffer,
}

pub struct Transformer {
    d: u32,
    ff: u32,
    t: u32,
    attn: AttnConfig,
    rope: Rope,
    layers: Vec<Layer>,
    s: Scratch,
    /// Absolute position (25 Hz steps since the stream started).
    pos: u32,
}

fn linear_f32(
    ctx: &Context,
    f: &dyn TensorSource,
    name: &str,
    rows: usize,
    k: usize,
) -> crate::Result<LinearWeights> {
    let w = f.f32(name, &[rows, k])?;
    Ok(HostLinear::from_f32(&w, rows as u32, k as u32)?.upload(ctx, name)?)
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
        let d = cfg.d_model;
        let ff = cfg.dim_feedforward;
        let heads = cfg.num_heads as u32;
        let head_dim = (d / cfg.num_heads) as u32;
        // A ring of context + t − 1 slots keeps the exact window `0 ≤ pq − pk < context` for every
        // query of a call, so streaming equals whole-utterance processing (spec §1.6).
        let attn = AttnConfig::new(
            heads,
            head_dim,
            cfg.context as u32 + t - 1,
            cfg.context as u32,
        )
        .with_f32_cache();
        let rope = Rope::new(ctx, head_dim, cfg.max_period as f32)?;
        let mut layers = Vec::new();
        for l in 0..cfg.num_layers {
            let p = format!("{prefix}.transformer.layers.{l}");
            let vec =
                |n: &str| -> crate::Result<GpuBuffer> { upload(ctx, f, &format!("{p}.{n}"), &[d]) };
            layers.push(Layer {
                norm1: (vec("norm1.weight")?, vec("norm1.bias")?),
                norm2: (vec("norm2.weight")?, vec("norm2.bias")?),
                in_proj: linear_f32(ctx, f, &format!("{p}.self_attn.in_proj_weight"), 3 * d, d)?,
                out_proj: linear_f32(ctx, f, &format!("{p}.self_attn.out_proj.weight"), d, d)?,
                linear1: linear_f32(ctx, f, &format!("{p}.linear1.weight"), ff, d)?,
                linear2: linear_f32(ctx, f, &format!("{p}.linear2.weight"), d, ff)?,
                scale1: vec("layer_scale_1.scale")?,
                scale2: vec("layer_scale_2.scale")?,
                cache: ctx.create_buffer(
                    &format!("{p} kv cache"),
                    attn.cache_bytes(ctx),
                    BufferUsage::Storage,
                )?,
            });
        }
        let buf = |label: &str, floats: usize| {
            ctx.create_buffer(label, (floats * 4) as u64, BufferUsage::Storage)
        };
        let tt = t as usize;
        let s = Scratch {
            rows: buf("tr rows", tt * d)?,
            h: buf("tr h", tt * d)?,
            qkv: buf("tr qkv", tt * 3 * d)?,
            attn: buf("tr attn", tt * d)?,
            o: buf("tr o", tt * d)?,
            ff: buf("tr ff", tt * ff)?,
            ff_act: buf("tr ff act", tt * ff)?,
        };
        Ok(Self {
            d: d as u32,
            ff: ff as u32,
            t,
            attn,
            rope,
            layers,
            s,
            pos: 0,
        })
    }

    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Run the transformer on channel-major `input` = `[D, t]` (the codec's conv layout) into
    /// `output` = `[D, t]`: transpose to rows, all layers, transpose back.
    pub fn forward_channels(
        &mut self,
        rec: &mut Recorder,
        input: &GpuBuffer,
        output: &GpuBuffer,
    ) -> crate::Result<()> {
        let rows = self.s.rows.clone();
        elementwise::transpose(rec, input.view(), rows.view(), self.d, self.t)?;
        self.forward(rec, &rows)?;
        elementwise::transpose(rec, rows.view(), output.view(), self.t, self.d)?;
        Ok(())
    }

    /// Run all layers in place on `x` = `[t, D]` rows.
    pub fn forward(&mut self, rec: &mut Recorder, x: &GpuBuffer) -> crate::Result<()> {
        let (t, d, ff) = (self.t, self.d, self.ff);
        let s = &self.s;
        for layer in &self.layers {
            norm::layer_norm(
                rec,
                x.view(),
                layer.norm1.0.view(),
                layer.norm1.1.view(),
                s.h.view(),
                t,
                d,
                LN_EPS,
            )?;
            linear::linear(rec, &layer.in_proj, s.h.view(), s.qkv.view(), t, None)?;
            self.rope.apply(
                rec,
                s.qkv.view(),
                &RopeLayout::fused_qkv(self.attn.heads, self.attn.head_dim),
                t,
                self.pos,
            )?;
            self.attn
                .kv_append(rec, s.qkv.view(), layer.cache.view(), t, self.pos)?;
            self.attn.attention(
                rec,
                s.qkv.view(),
                layer.cache.view(),
                s.attn.view(),
                None,
                t,
                self.pos,
            )?;
            linear::linear(rec, &layer.out_proj, s.attn.view(), s.o.view(), t, None)?;
            elementwise::residual_add(
                rec,
                s.o.view(),
                Some(layer.scale1.view()),
                x.view(),
                t * d,
                d,
                1,
            )?;
            norm::layer_norm(
                rec,
                x.view(),
                layer.norm2.0.view(),
                layer.norm2.1.view(),
                s.h.view(),
                t,
                d,
                LN_EPS,
            )?;
            linear::linear(rec, &layer.linear1, s.h.view(), s.ff.view(), t, None)?;
            elementwise::gelu_erf(rec, s.ff.view(), s.ff_act.view(), t * ff)?;
            linear::linear(rec, &layer.linear2, s.ff_act.view(), s.o.view(), t, None)?;
            elementwise::residual_add(
                rec,
                s.o.view(),
                Some(layer.scale2.view()),
                x.view(),
                t * d,
                d,
                1,
            )?;
        }
        self.pos += t;
        Ok(())
    }
}
