//! A streaming pre-norm transformer configured by enums, shared by Mimi's codec transformers,
//! Moshi's temporal transformer and its depformer:
//!
//! ```text
//! x (+ sinusoidal positions)
//! per layer:  x += ls1 ⊙ out_proj(attention(in_proj(norm1(x))))   (RoPE on q, k; ring KV cache)
//!             x += ls2 ⊙ mlp(norm2(x))                              (GELU MLP or SiLU-gated)
//! ```
//!
//! Rows: `x` is `[t, d_model]` f32 (t = rows per call, e.g. 2 for Mimi at 25 Hz, 1 for the LM),
//! updated in place. Weight names follow the reference package under `layers.{l}` of the
//! transformer's [`Scope`].
//! With several weight sets (the depformer's weights per step), the call at position `p` uses
//! set `schedule[p]`: stacked attention weights are split into row blocks, MLPs are
//! `gating.{set}`.

use crate::gpu::{BufferUsage, Context, GpuBuffer, GpuError, Recorder, View};
use crate::kernels::attention::{AttnBuffers, AttnConfig};
use crate::kernels::elementwise;
use crate::kernels::linear::{self, LinearInput, LinearOutput};
use crate::kernels::rope::Rope;

use super::linear::Linear;
use super::norm::{Norm, NormKind};
use super::source::Scope;

mod split;
pub use split::{fits as split_fits, half_bytes as split_half_bytes};

/// The feed-forward block (reference `gating`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gating {
    /// `linear2(GELU(linear1(x)))` (reference `gating = "none"`, exact-erf GELU).
    None,
    /// `linear_out(silu(g) ⊙ v)`, `[g, v] = linear_in(x)` (reference `gating = "silu"`).
    Silu,
}

/// Position information (reference `positional_embedding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positional {
    None,
    /// Interleaved rotary embedding of q and k.
    Rope,
    /// Sinusoidal embedding added to the input (`[cos, sin]` halves).
    Sin,
}

/// One transformer's shape and options.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformerConfig {
    pub d_model: usize,
    pub num_heads: usize,
    pub num_layers: usize,
    /// The reference's `dim_feedforward`; the gated hidden size follows [`gated_hidden`].
    pub dim_feedforward: usize,
    pub norm: NormKind,
    pub gating: Gating,
    pub positional: Positional,
    pub max_period: f32,
    /// Per-channel layer scales (`layer_scale_1.scale`, `layer_scale_2.scale`).
    pub layer_scale: bool,
    /// Keys with `0 ≤ p_q − p_k < context` are visible.
    pub context: usize,
    /// Rows per call.
    pub rows: u32,
    /// Weight set used at each position (empty: one shared set).
    pub schedule: Vec<usize>,
    /// Keep the KV cache in f32 even where the device has shader-f16.
    pub f32_cache: bool,
    /// Compute each head's q, k, v, KV append and attention in one launch, one workgroup per
    /// head ([`AttnConfig::fused_qkv`]), where the layer fits it: for few heads and short
    /// windows (Mimi). Layers it does not fit, and `false`, take the separate launches.
    pub qkv_attention: bool,
    /// A layer in 3 launches where it fits: the MLP split by hidden units, its partial outputs
    /// summed by the next layer's fused in-projection (which needs `qkv_attention`'s
    /// conditions, whatever that flag says); see `nn::transformer::split`.
    pub mlp_split: bool,
}

/// Hidden size of a SiLU-gated MLP for the reference's `dim_feedforward` (`gating.py`).
pub fn gated_hidden(d_model: usize, dim_feedforward: usize) -> usize {
    if dim_feedforward == 4 * d_model {
        21 * d_model / 8
    } else {
        2 * dim_feedforward / 3
    }
}

impl TransformerConfig {
    pub fn head_dim(&self) -> usize {
        self.d_model / self.num_heads.max(1)
    }
    /// Number of weight sets.
    pub fn weight_sets(&self) -> usize {
        self.schedule.iter().max().map_or(1, |m| m + 1)
    }
    /// Hidden width of the MLP.
    pub fn hidden(&self) -> usize {
        match self.gating {
            Gating::None => self.dim_feedforward,
            Gating::Silu => gated_hidden(self.d_model, self.dim_feedforward),
        }
    }
    /// Ring slots: the exact window for every row of a call.
    pub fn kv_capacity(&self) -> u32 {
        (self.context as u32 + self.rows - 1).max(1)
    }

    /// The shape the memory estimate sizes this transformer's buffers from (tensors under
    /// `prefix`).
    pub fn shape(&self, prefix: &str) -> crate::weights::estimate::TransformerShape {
        crate::weights::estimate::TransformerShape {
            prefix: prefix.into(),
            d_model: self.d_model,
            num_heads: self.num_heads,
            num_layers: self.num_layers,
            hidden: self.hidden(),
            gated: self.gating == Gating::Silu,
            layer_norm: matches!(self.norm, NormKind::LayerNorm { .. }),
            layer_scale: self.layer_scale,
            kv_capacity: self.kv_capacity(),
            rows: self.rows,
            weight_sets: self.weight_sets(),
            rope: self.positional == Positional::Rope,
            sin_rows: (self.positional == Positional::Sin).then_some(self.schedule.len()),
            f32_cache: self.f32_cache,
            mlp_split_parts: if split::fits(self) && self.num_layers > 0 {
                (self.hidden() / linear::MS_BLOCK as usize) as u64
            } else {
                0
            },
        }
    }

    fn check(&self) -> crate::Result<()> {
        let bad = |m: String| crate::weights::WeightsError::Config(m);
        if self.num_heads == 0 || self.d_model == 0 || !self.d_model.is_multiple_of(self.num_heads)
        {
            return Err(bad(format!(
                "d_model {} must be a positive multiple of num_heads {}",
                self.d_model, self.num_heads
            ))
            .into());
        }
        if self.positional == Positional::Rope && !self.head_dim().is_multiple_of(2) {
            return Err(bad(format!(
                "RoPE needs an even head dim, got {}",
                self.head_dim()
            ))
            .into());
        }
        if self.positional == Positional::Sin && !self.d_model.is_multiple_of(2) {
            return Err(bad(format!(
                "sinusoidal positions need an even width, got {}",
                self.d_model
            ))
            .into());
        }
        if self.context == 0 || self.rows == 0 {
            return Err(bad("context and rows per call must be at least 1".into()).into());
        }
        Ok(())
    }
}

enum Mlp {
    Gelu {
        linear1: Linear,
        linear2: Linear,
    },
    Silu {
        linear_in: Linear,
        linear_out: Linear,
    },
}

impl Mlp {
    /// The input and output linears.
    fn linears(&self) -> (&Linear, &Linear) {
        match self {
            Mlp::Gelu { linear1, linear2 } => (linear1, linear2),
            Mlp::Silu {
                linear_in,
                linear_out,
            } => (linear_in, linear_out),
        }
    }
}

/// One weight set of a layer.
struct SetWeights {
    in_proj: Linear,
    out_proj: Linear,
    mlp: Mlp,
}

impl SetWeights {
    fn bytes(&self) -> u64 {
        let mlp = match &self.mlp {
            Mlp::Gelu { linear1, linear2 } => linear1.bytes() + linear2.bytes(),
            Mlp::Silu {
                linear_in,
                linear_out,
            } => linear_in.bytes() + linear_out.bytes(),
        };
        self.in_proj.bytes() + self.out_proj.bytes() + mlp
    }
}

struct Layer {
    norm1: Norm,
    norm2: Norm,
    sets: Vec<SetWeights>,
    scale1: Option<GpuBuffer>,
    scale2: Option<GpuBuffer>,
    cache: GpuBuffer,
}

/// Activations of one call (allocated at load, never per frame).
struct Scratch {
    h: GpuBuffer,
    qkv: GpuBuffer,
    attn: GpuBuffer,
    /// MLP input-projection output `[t, ff or 2H]`.
    u: GpuBuffer,
    /// MLP activation `[t, hidden]` (padded to what `linear2`/`linear_out` read).
    a: GpuBuffer,
    /// Split-key attention partials.
    split: GpuBuffer,
}

/// Sinusoidal positions: rows for positions `0 .. table_rows` precomputed at load (256-byte
/// aligned rows, so that a row is a bindable view), later positions written per call.
struct SinPositions {
    table: GpuBuffer,
    table_rows: u32,
    stride: u64,
    dynamic: GpuBuffer,
    max_period: f32,
}

/// `[cos(p·f_i) …, sin(p·f_i) …]`, `f_i = 1 / max_period^(i / (half − 1))`, in f32 as the
/// reference's `create_sin_embedding` computes it.
pub fn sin_embedding(pos: u32, dim: usize, max_period: f32) -> Vec<f32> {
    let half = dim / 2;
    let denom = (half.max(2) - 1) as f32;
    let mut out = vec![0f32; dim];
    for i in 0..half {
        let div = max_period.powf(i as f32 / denom);
        let phase = pos as f32 / div;
        out[i] = phase.cos();
        out[half + i] = phase.sin();
    }
    out
}

/// The residual write of a block: `x += out` or, with a layer scale, `x += scale ⊙ out`.
fn residual(scale: &Option<GpuBuffer>) -> LinearOutput<'_> {
    match scale {
        Some(sc) => LinearOutput::AccumulateScaled { scale: sc.view() },
        None => LinearOutput::Accumulate,
    }
}

/// The stream state of a second lane of a [`Transformer`] (classifier-free guidance).
pub struct LaneState {
    caches: Vec<GpuBuffer>,
    pos: u32,
}

impl LaneState {
    /// Start the lane's stream again.
    pub fn reset(&mut self) {
        self.pos = 0;
    }
}

/// A streaming transformer with its weights, KV caches and scratch.
pub struct Transformer {
    cfg: TransformerConfig,
    attn: AttnConfig,
    sin: Option<SinPositions>,
    layers: Vec<Layer>,
    s: Scratch,
    /// The split layer form's buffers (`None`: the shape does not fit it).
    split: Option<split::SplitState>,
    pos: u32,
}

fn fbuf(ctx: &Context, label: &str, floats: usize) -> crate::Result<GpuBuffer> {
    Ok(ctx.create_buffer(label, (floats.max(1) * 4) as u64, BufferUsage::Storage)?)
}

impl Transformer {
    /// Load the layers `layers.{l}.*` of the scope `w` (the reference's module names).
    pub fn load(ctx: &Context, w: &Scope, cfg: &TransformerConfig) -> crate::Result<Self> {
        cfg.check()?;
        let prefix = w.prefix();
        let (d, heads, dh) = (cfg.d_model, cfg.num_heads as u32, cfg.head_dim() as u32);
        let sets = cfg.weight_sets();
        let hidden = cfg.hidden();
        let mut attn = AttnConfig::new(heads, dh, cfg.kv_capacity(), cfg.context as u32);
        if cfg.f32_cache {
            attn = attn.with_f32_cache();
        }
        if cfg.positional == Positional::Rope {
            attn = attn.with_rope(&Rope::new(ctx, dh, cfg.max_period)?);
        }
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = w.pp("layers").pp(l);
            let sa = p.pp("self_attn");
            let mut set_weights = Vec::with_capacity(sets);
            for j in 0..sets {
                // Canonical names (crate::weights::names): one weight set is PyTorch's
                // `in_proj_weight`; weight set j of several is `in_projs.{j}.weight`.
                let (in_proj, out_proj) = if sets == 1 {
                    (
                        sa.linear(ctx, "in_proj_weight", 3 * d, d)?,
                        sa.pp("out_proj").linear(ctx, "weight", d, d)?,
                    )
                } else {
                    (
                        sa.pp("in_projs").pp(j).linear(ctx, "weight", 3 * d, d)?,
                        sa.pp("out_projs").pp(j).linear(ctx, "weight", d, d)?,
                    )
                };
                let g = if sets == 1 {
                    p.pp("gating")
                } else {
                    p.pp("gating").pp(j)
                };
                let mlp = match cfg.gating {
                    Gating::None => Mlp::Gelu {
                        linear1: p.pp("linear1").linear(ctx, "weight", hidden, d)?,
                        linear2: p.pp("linear2").linear(ctx, "weight", d, hidden)?,
                    },
                    Gating::Silu => Mlp::Silu {
                        linear_in: g.pp("linear_in").linear(ctx, "weight", 2 * hidden, d)?,
                        linear_out: g.pp("linear_out").linear(ctx, "weight", d, hidden)?,
                    },
                };
                set_weights.push(SetWeights {
                    in_proj,
                    out_proj,
                    mlp,
                });
            }
            let scale = |n: &str| -> crate::Result<Option<GpuBuffer>> {
                if cfg.layer_scale {
                    Ok(Some(p.pp(n).tensor(ctx, "scale", &[d], 0.1)?))
                } else {
                    Ok(None)
                }
            };
            layers.push(Layer {
                norm1: p.pp("norm1").norm(ctx, cfg.norm, d)?,
                norm2: p.pp("norm2").norm(ctx, cfg.norm, d)?,
                sets: set_weights,
                scale1: scale("layer_scale_1")?,
                scale2: scale("layer_scale_2")?,
                cache: ctx.create_buffer(
                    &format!("{} kv cache", p.prefix()),
                    attn.cache_bytes(ctx),
                    BufferUsage::Storage,
                )?,
            });
        }
        let t = cfg.rows as usize;
        // The activation feeding the MLP's second linear is as wide as that linear reads.
        let a_width = match layers.first().map(|l| &l.sets[0].mlp) {
            Some(Mlp::Gelu { linear2, .. }) => linear2.padded_in() as usize,
            Some(Mlp::Silu { linear_out, .. }) => linear_out.padded_in() as usize,
            None => hidden,
        };
        let u_width = match cfg.gating {
            Gating::None => hidden,
            Gating::Silu => 2 * hidden,
        };
        let s = Scratch {
            h: fbuf(ctx, &format!("{prefix} h"), t * d)?,
            qkv: fbuf(ctx, &format!("{prefix} qkv"), t * 3 * d)?,
            attn: fbuf(ctx, &format!("{prefix} attn"), t * d)?,
            u: fbuf(ctx, &format!("{prefix} mlp in"), t * u_width)?,
            a: fbuf(ctx, &format!("{prefix} mlp act"), t * a_width)?,
            split: ctx.create_buffer(
                &format!("{prefix} attention split"),
                attn.scratch_bytes(cfg.rows),
                BufferUsage::Storage,
            )?,
        };
        let sin = match cfg.positional {
            Positional::Sin => {
                let table_rows = cfg.schedule.len() as u32;
                let stride = ((d * 4) as u64).next_multiple_of(256);
                let mut table = vec![0u8; (stride * table_rows.max(1) as u64) as usize];
                for p in 0..table_rows {
                    let row = sin_embedding(p, d, cfg.max_period);
                    let at = (p as u64 * stride) as usize;
                    table[at..at + d * 4].copy_from_slice(bytemuck::cast_slice(&row));
                }
                Some(SinPositions {
                    table: ctx.upload(&format!("{prefix} sin table"), &table)?,
                    table_rows,
                    stride,
                    dynamic: fbuf(ctx, &format!("{prefix} sin rows"), t * d)?,
                    max_period: cfg.max_period,
                })
            }
            _ => None,
        };
        let split = if split::fits(cfg) && !layers.is_empty() {
            Some(split::SplitState::load(ctx, prefix, cfg, &layers)?)
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            attn,
            sin,
            layers,
            s,
            split,
            pos: 0,
        })
    }

    pub fn config(&self) -> &TransformerConfig {
        &self.cfg
    }

    /// Start a new stream (positions from 0; the ring's old keys are never visible again).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Positions processed since the stream started.
    pub fn position(&self) -> u32 {
        self.pos
    }

    /// A second stream state for the same weights (KV caches of every layer, position 0), for
    /// [`Transformer::swap_lane`]. Scratch buffers stay shared: lanes are recorded one after
    /// the other.
    pub fn new_lane(&self, ctx: &Context) -> crate::Result<LaneState> {
        let caches = self
            .layers
            .iter()
            .enumerate()
            .map(|(l, _)| {
                ctx.create_buffer(
                    &format!("lane kv cache {l}"),
                    self.attn.cache_bytes(ctx),
                    BufferUsage::Storage,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LaneState { caches, pos: 0 })
    }

    /// Exchange this transformer's stream state (KV caches and position) with `lane`'s: the
    /// next calls run the other stream on the same weights.
    pub fn swap_lane(&mut self, lane: &mut LaneState) {
        for (layer, cache) in self.layers.iter_mut().zip(lane.caches.iter_mut()) {
            std::mem::swap(&mut layer.cache, cache);
        }
        std::mem::swap(&mut self.pos, &mut lane.pos);
    }

    /// Bytes of weights one call reads (one weight set).
    pub fn weight_bytes_per_call(&self) -> u64 {
        self.layers.iter().map(|l| l.sets[0].bytes()).sum()
    }

    /// Weight bytes stored on the GPU (all sets).
    pub fn weight_bytes(&self) -> u64 {
        self.layers
            .iter()
            .flat_map(|l| l.sets.iter())
            .map(SetWeights::bytes)
            .sum()
    }

    fn add_positions(&mut self, rec: &mut Recorder, x: View) -> crate::Result<()> {
        let Some(sin) = &self.sin else {
            return Ok(());
        };
        let (t, d) = (self.cfg.rows, self.cfg.d_model as u32);
        let rows = if self.pos + t <= sin.table_rows && t == 1 {
            sin.table.slice(self.pos as u64 * sin.stride, d as u64 * 4)
        } else {
            let mut v = Vec::with_capacity((t * d) as usize);
            for r in 0..t {
                v.extend(sin_embedding(self.pos + r, d as usize, sin.max_period));
            }
            rec.ctx().write(&sin.dynamic, 0, bytemuck::cast_slice(&v));
            sin.dynamic.view()
        };
        elementwise::residual_add(rec, rows, None, x, t * d, d, 1)?;
        Ok(())
    }

    /// `x += ls1 ⊙ out_proj(attention(in_proj(norm1(x))))` in separate launches (with the
    /// fused KV write and the depformer's fused attention input where they apply).
    fn attention_block(
        &self,
        rec: &mut Recorder,
        x: View,
        layer: &Layer,
        w: &SetWeights,
        t: u32,
    ) -> crate::Result<()> {
        let s = &self.s;
        // x += ls1 ⊙ out_proj(attention(in_proj(norm1(x)))): norm fused into in_proj,
        // RoPE into the cache write and the query load, the residual into out_proj.
        // The KV append is fused into in_proj too where the cache layout allows.
        let kv = self
            .attn
            .fused_append(rec.ctx(), layer.cache.view(), self.pos)
            .filter(|_| w.in_proj.fusable() && !w.in_proj.has_bias());
        if let Some(kv) = kv {
            w.in_proj.forward_with(
                rec,
                x,
                s.qkv.view(),
                t,
                layer.norm1.as_linear_input(),
                LinearOutput::StoreKv(kv),
            )?;
        } else {
            if w.in_proj.fusable() {
                w.in_proj.forward_with(
                    rec,
                    x,
                    s.qkv.view(),
                    t,
                    layer.norm1.as_linear_input(),
                    LinearOutput::Store,
                )?;
            } else {
                layer.norm1.forward(rec, x, s.h.view(), t)?;
                w.in_proj.forward(rec, s.h.view(), s.qkv.view(), t)?;
            }
            self.attn
                .kv_append(rec, s.qkv.view(), layer.cache.view(), t, self.pos)?;
        }
        // Short windows (the depformer): the attention is computed inside out_proj.
        let fused_attn = self
            .attn
            .fused_input(rec.ctx(), layer.cache.view(), t, self.pos)
            .filter(|_| w.out_proj.fusable() && !w.out_proj.has_bias());
        if let Some(a) = fused_attn {
            w.out_proj.forward_with(
                rec,
                s.qkv.view(),
                x,
                t,
                LinearInput::Attention(a),
                residual(&layer.scale1),
            )?;
        } else {
            self.attn.attention_with(
                rec,
                &AttnBuffers {
                    qkv: s.qkv.view(),
                    cache: layer.cache.view(),
                    out: s.attn.view(),
                    scratch: Some(s.split.view()),
                },
                t,
                self.pos,
            )?;
            w.out_proj.forward_with(
                rec,
                s.attn.view(),
                x,
                t,
                LinearInput::Plain,
                residual(&layer.scale1),
            )?;
        }
        Ok(())
    }

    /// Run every layer on `x` = `[rows, d_model]` in place, at the next position(s).
    pub fn forward(&mut self, rec: &mut Recorder, x: &GpuBuffer) -> crate::Result<()> {
        self.forward_view(rec, x.view())
    }

    /// [`Transformer::forward`] on the rows in the view `x` (e.g. one row of a buffer holding
    /// several steps' inputs).
    pub fn forward_view(&mut self, rec: &mut Recorder, x: View) -> crate::Result<()> {
        self.forward_then(rec, x, None)
    }

    /// [`Transformer::forward_view`], then `out = head(x)` (`out` `[rows, head.out_features]`).
    /// In the split layer form the head sums the last layer's partial outputs itself where it
    /// can (one launch fewer); `x` then does not receive the transformer's output: read `out`.
    pub fn forward_view_head(
        &mut self,
        rec: &mut Recorder,
        x: View,
        head: &Linear,
        out: View,
    ) -> crate::Result<()> {
        self.forward_then(rec, x, Some((head, out)))
    }

    fn forward_then(
        &mut self,
        rec: &mut Recorder,
        x: View,
        head: Option<(&Linear, View)>,
    ) -> crate::Result<()> {
        let t = self.cfg.rows;
        let set = if self.cfg.schedule.is_empty() {
            0
        } else {
            *self
                .cfg
                .schedule
                .get(self.pos as usize)
                .ok_or_else(|| GpuError::Launch {
                    kernel: "transformer",
                    message: format!(
                        "position {} is past the {} steps that have weights",
                        self.pos,
                        self.cfg.schedule.len()
                    ),
                })?
        };
        self.add_positions(rec, x)?;
        if self.split_usable(rec.ctx(), set) {
            self.forward_split(rec, x, set, head)?;
            self.pos += t;
            return Ok(());
        }
        let s = &self.s;
        for layer in &self.layers {
            let w = &layer.sets[set];
            // Few heads and short windows (Mimi): in_proj, the KV append and the attention in
            // one launch, then out_proj (+ residual).
            let qkv_attn = self
                .attn
                .fused_qkv(rec.ctx(), layer.cache.view(), t, self.pos)
                .filter(|_| {
                    self.cfg.qkv_attention
                        && w.in_proj.fusable()
                        && !w.in_proj.has_bias()
                        && w.in_proj.weights().part_count() == 1
                });
            if let Some(a) = qkv_attn {
                linear::qkv_attention(
                    rec,
                    w.in_proj.weights(),
                    x,
                    s.attn.view(),
                    t,
                    layer.norm1.as_linear_input(),
                    &a,
                )?;
                w.out_proj.forward_with(
                    rec,
                    s.attn.view(),
                    x,
                    t,
                    LinearInput::Plain,
                    residual(&layer.scale1),
                )?;
            } else {
                self.attention_block(rec, x, layer, w, t)?;
            }
            // x += ls2 ⊙ mlp(norm2(x)): norm fused into the first linear, the activation into
            // the second (when its input is not padded), the residual into its output.
            let (first, second, gelu) = match &w.mlp {
                Mlp::Gelu { linear1, linear2 } => (linear1, linear2, true),
                Mlp::Silu {
                    linear_in,
                    linear_out,
                } => (linear_in, linear_out, false),
            };
            if first.fusable() {
                first.forward_with(
                    rec,
                    x,
                    s.u.view(),
                    t,
                    layer.norm2.as_linear_input(),
                    LinearOutput::Store,
                )?;
            } else {
                layer.norm2.forward(rec, x, s.h.view(), t)?;
                first.forward(rec, s.h.view(), s.u.view(), t)?;
            }
            let hidden = second.in_features();
            let (input, act) = match (second.fusable(), gelu) {
                (true, true) => (LinearInput::GeluErf, &s.u),
                (true, false) => (LinearInput::SiluGate, &s.u),
                (false, true) => {
                    elementwise::gelu_erf(rec, s.u.view(), s.a.view(), t * hidden)?;
                    (LinearInput::Plain, &s.a)
                }
                (false, false) => {
                    elementwise::silu_gate(rec, s.u.view(), s.a.view(), t, hidden)?;
                    (LinearInput::Plain, &s.a)
                }
            };
            second.forward_with(rec, act.view(), x, t, input, residual(&layer.scale2))?;
        }
        self.pos += t;
        if let Some((w, out)) = head {
            w.forward(rec, x, out, t)?;
        }
        Ok(())
    }
}
