//! A transformer layer in 3 launches: the MLP split by hidden units ([`linear::mlp_split`],
//! partial outputs `[H / S, t, d]`), its partials summed by the next layer's fused
//! in-projection ([`linear::qkv_attention_res`], which forms `x_l = x_{l−1} + ls2 ⊙ Σ_j part[j]`
//! and stores it), and after the last layer one [`elementwise::residual_sum`]. Per call `3·L + 1`
//! launches instead of `4·L`. A head after the transformer (the depformer's) can take the
//! `residual_sum`'s place: [`linear::linear_res`] sums the partials as it loads them.
//!
//! The residual stream lives in a ping-pong pair inside one buffer (layer `l` writes half
//! `l % 2`, reads half `(l − 1) % 2`), so that the fused launch never reads what it writes. The
//! norm1 weight, its bias (zeros for RMSNorm) and the previous layer's `ls2` (ones without layer
//! scales) are packed per layer at load (`[3, d]`).

use crate::gpu::{BufferUsage, Context, GpuBuffer, GpuError, Recorder, View};
use crate::kernels::elementwise;
use crate::kernels::linear::{
    self, LinearInput, MlpAct, ResidualIn, MS_BLOCK, MS_MAX_ROWS, QA_RES_MAX, RL_MAX_ROWS,
};

use super::{residual, Layer, Linear, Mlp, NormKind, Transformer, TransformerConfig};

/// The buffers of the split form (allocated at load when the shape fits, [`fits`]).
pub(super) struct SplitState {
    stream: GpuBuffer,
    /// Bytes per half of `stream` (256-aligned: each half is a bindable view).
    half: u64,
    parts: GpuBuffer,
    blocks: u32,
    packed: Vec<GpuBuffer>,
    /// `[3, d]`: zeros, zeros and the last layer's `ls2` (ones without): what a head reading the
    /// last layer's partials ([`linear::linear_res`]) takes.
    packed_out: GpuBuffer,
}

/// Whether a transformer of this shape gets the split form's buffers: `mlp_split` set, the
/// hidden size a multiple of [`MS_BLOCK`], at most [`MS_MAX_ROWS`] rows and `rows · d_model ≤`
/// [`QA_RES_MAX`]. (Whether each call can use it also depends on the weights and the attention:
/// [`Transformer::split_usable`].)
pub fn fits(cfg: &TransformerConfig) -> bool {
    let (d, h, t) = (cfg.d_model, cfg.hidden(), cfg.rows as usize);
    cfg.mlp_split
        && h > 0
        && h.is_multiple_of(MS_BLOCK as usize)
        && t <= MS_MAX_ROWS as usize
        && t * d <= QA_RES_MAX as usize
        && d.is_multiple_of(4)
}

/// Bytes of the stream pair's halves (256-aligned).
pub fn half_bytes(rows: u32, d_model: usize) -> u64 {
    (rows as u64 * d_model as u64 * 4).next_multiple_of(256)
}

impl SplitState {
    pub(super) fn load(
        ctx: &Context,
        prefix: &str,
        cfg: &TransformerConfig,
        layers: &[Layer],
    ) -> crate::Result<Self> {
        let (d, t) = (cfg.d_model, cfg.rows);
        let half = half_bytes(t, d);
        let blocks = (cfg.hidden() / MS_BLOCK as usize) as u32;
        let stream = ctx.create_buffer(
            &format!("{prefix} residual pair"),
            2 * half,
            BufferUsage::Storage,
        )?;
        let parts = ctx.create_buffer(
            &format!("{prefix} mlp partials"),
            blocks as u64 * t as u64 * d as u64 * 4,
            BufferUsage::Storage,
        )?;
        let row = d as u64 * 4;
        let mut packed = Vec::with_capacity(layers.len());
        let mut rec = Recorder::new(ctx, "pack norms");
        for (l, layer) in layers.iter().enumerate() {
            let buf = ctx.create_buffer(
                &format!("{prefix} layer {l} packed norm"),
                3 * row,
                BufferUsage::Storage,
            )?;
            let (w, b) = layer.norm1.buffers();
            rec.copy(w.view(), buf.slice(0, row));
            match b {
                Some(b) => rec.copy(b.view(), buf.slice(row, row)),
                None => ctx.write(&buf, row, bytemuck::cast_slice(&vec![0f32; d])),
            }
            match l.checked_sub(1).and_then(|p| layers[p].scale2.as_ref()) {
                Some(s) => rec.copy(s.view(), buf.slice(2 * row, row)),
                None => ctx.write(&buf, 2 * row, bytemuck::cast_slice(&vec![1f32; d])),
            }
            packed.push(buf);
        }
        let packed_out = ctx.create_buffer(
            &format!("{prefix} packed output scale"),
            3 * row,
            BufferUsage::Storage,
        )?;
        ctx.write(&packed_out, 0, bytemuck::cast_slice(&vec![0f32; 2 * d]));
        match layers.last().and_then(|l| l.scale2.as_ref()) {
            Some(s) => rec.copy(s.view(), packed_out.slice(2 * row, row)),
            None => ctx.write(&packed_out, 2 * row, bytemuck::cast_slice(&vec![1f32; d])),
        }
        rec.submit()?;
        Ok(Self {
            stream,
            half,
            parts,
            blocks,
            packed,
            packed_out,
        })
    }
}

impl Transformer {
    /// Whether every layer of weight set `set` takes the split form at this call: single-part
    /// fusable in-projections without bias, the fused qkv attention for this geometry, and MLP
    /// weights in one format and one part each, without bias.
    pub(super) fn split_usable(&self, ctx: &Context, set: usize) -> bool {
        let t = self.cfg.rows;
        self.split.is_some()
            && self.layers.iter().all(|layer| {
                let w = &layer.sets[set];
                let (first, second) = w.mlp.linears();
                let one = |l: &super::Linear| {
                    l.fusable() && !l.has_bias() && l.weights().part_count() == 1
                };
                one(&w.in_proj)
                    && one(first)
                    && one(second)
                    && first.weights().format() == second.weights().format()
                    && self
                        .attn
                        .fused_qkv(ctx, layer.cache.view(), t, self.pos)
                        .is_some()
            })
    }

    /// Every layer on `x` in `3·L + 1` launches (see the module doc), then with `head` = `(W,
    /// out)`: `out = W · x_L`, by a [`linear::linear_res`] that sums the last layer's partials
    /// itself where `W` fits it (`3·L + 1` launches with the head; `x` is not written then), else
    /// after the `residual_sum`.
    pub(super) fn forward_split(
        &self,
        rec: &mut Recorder,
        x: View,
        set: usize,
        head: Option<(&Linear, View)>,
    ) -> crate::Result<()> {
        let sp = self.split.as_ref().expect("split_usable");
        let (t, d) = (self.cfg.rows, self.cfg.d_model as u32);
        let bytes = t as u64 * d as u64 * 4;
        let half = |l: usize| sp.stream.slice((l % 2) as u64 * sp.half, bytes);
        let half_floats = (sp.half / 4) as u32;
        let (layer_norm, eps) = match self.cfg.norm {
            NormKind::LayerNorm { eps } => (true, eps),
            NormKind::RmsNorm { eps } => (false, eps),
        };
        let attn_out = self.s.attn.view();
        rec.copy(x, half(0));
        for (l, layer) in self.layers.iter().enumerate() {
            let w = &layer.sets[set];
            let a = self
                .attn
                .fused_qkv(rec.ctx(), layer.cache.view(), t, self.pos)
                .ok_or_else(|| GpuError::Launch {
                    kernel: "transformer",
                    message: "the split layer form needs the fused qkv attention".into(),
                })?;
            if l == 0 {
                linear::qkv_attention(
                    rec,
                    w.in_proj.weights(),
                    half(0),
                    attn_out,
                    t,
                    layer.norm1.as_linear_input(),
                    &a,
                )?;
            } else {
                let res = ResidualIn {
                    stream: sp.stream.view(),
                    read: ((l - 1) % 2) as u32 * half_floats,
                    write: (l % 2) as u32 * half_floats,
                    parts: sp.parts.view(),
                    count: sp.blocks,
                    packed: sp.packed[l].view(),
                    layer_norm,
                    eps,
                };
                linear::qkv_attention_res(rec, w.in_proj.weights(), &res, attn_out, t, &a)?;
            }
            w.out_proj.forward_with(
                rec,
                attn_out,
                half(l),
                t,
                LinearInput::Plain,
                residual(&layer.scale1),
            )?;
            let (first, second) = w.mlp.linears();
            let act = match w.mlp {
                Mlp::Gelu { .. } => MlpAct::Gelu,
                Mlp::Silu { .. } => MlpAct::SiluGate,
            };
            linear::mlp_split(
                rec,
                first.weights(),
                second.weights(),
                half(l),
                sp.parts.view(),
                t,
                layer.norm2.as_linear_input(),
                act,
            )?;
        }
        let last = self.layers.len() - 1;
        if let Some((w, out)) = head.filter(|(w, _)| head_fits(w, t)) {
            let res = ResidualIn {
                stream: sp.stream.view(),
                read: (last % 2) as u32 * half_floats,
                write: ((last + 1) % 2) as u32 * half_floats,
                parts: sp.parts.view(),
                count: sp.blocks,
                packed: sp.packed_out.view(),
                layer_norm,
                eps,
            };
            linear::linear_res(rec, w.weights(), &res, out, t)?;
            return Ok(());
        }
        rec.copy(half(last), x);
        elementwise::residual_sum(
            rec,
            sp.parts.view(),
            sp.blocks,
            self.layers[last].scale2.as_ref().map(|s| s.view()),
            x,
            t * d,
            d,
        )?;
        if let Some((w, out)) = head {
            w.forward(rec, x, out, t)?;
        }
        Ok(())
    }
}

/// Whether a head `w` on `t` rows can read the last layer's partials itself
/// ([`linear::linear_res`]: one weight part, unpadded K, no bias).
fn head_fits(w: &Linear, t: u32) -> bool {
    w.fusable() && !w.has_bias() && w.weights().part_count() == 1 && t <= RL_MAX_ROWS
}
