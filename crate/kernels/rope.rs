//! Interleaved rotary position embedding (`shaders/rope.wgsl`), in place on q and k.
//!
//! Layout: `x` is row-major `[rows, row_stride]` f32; row `t` is absolute position `pos0 + t` and
//! holds q at `[q_offset, q_offset + H·Dh)` and k at `[k_offset, k_offset + H·Dh)`, head `h` at
//! columns `[h·Dh, (h+1)·Dh)` of each — e.g. the fused qkv output of `in_proj`
//! ([`RopeLayout::fused_qkv`]). Pair `i` of a head (elements `2i`, `2i+1`) rotates by
//! `θ = f32(pos) · f_i`, `f_i = exp(f32(i) · f32(−2·ln(max_period)/Dh))` computed in f32 on the CPU
//! exactly as PyTorch does (`moshi/modules/rope.py`), uploaded once by [`Rope::new`];
//! `out[2i] = x[2i]cosθ − x[2i+1]sinθ`, `out[2i+1] = x[2i]sinθ + x[2i+1]cosθ`.
//! Dispatch: workgroups of 256 invocations, one pair each; `ceil(parts·H·Dh/2 / 256)` workgroups
//! per row, all rows in one grid ([`super::grid_1d`]).

use bytemuck::{Pod, Zeroable};

use crate::gpu::{
    Binding, Context, GpuBuffer, GpuError, GpuResult, Kernel, Recorder, Variant, View,
};

const SRC: &str = include_str!("../../shaders/rope.wgsl");
/// Pairs per workgroup (injected into the WGSL as `WG`).
pub const WG: u32 = 256;

/// The largest head dimension the kernel handles.
pub const MAX_HEAD_DIM: u32 = 1024;

static ROPE: Kernel = Kernel {
    name: "rope",
    source: SRC,
    entry: "entry",
    bindings: &[Binding::Read, Binding::ReadWrite],
    defines: &[],
    consts: &[("WG", WG)],
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// The kernel variants this module launches (for `tests/reflect.rs`).
pub fn variants(_device: &[&str]) -> Vec<(&'static Kernel, Variant)> {
    vec![(&ROPE, Variant::none())]
}

crate::params_struct! {
    #[derive(Clone, Copy, Pod, Zeroable, Default)]
    struct Params {
        rows: u32,
        heads: u32,
        half: u32,
        row_stride: u32,
        q_offset: u32,
        k_offset: u32,
        parts: u32,
        pos0: u32,
        groups_per_row: u32,
        _pad: [u32; 3],
    }
}

/// Where q and k sit in each row of the buffer RoPE rotates (all counts in f32 elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RopeLayout {
    pub heads: u32,
    pub row_stride: u32,
    pub q_offset: u32,
    /// `None` rotates q only.
    pub k_offset: Option<u32>,
}

impl RopeLayout {
    /// The fused `in_proj` output: row = `[q (H·Dh), k (H·Dh), v (H·Dh)]`.
    pub fn fused_qkv(heads: u32, head_dim: u32) -> Self {
        Self {
            heads,
            row_stride: 3 * heads * head_dim,
            q_offset: 0,
            k_offset: Some(heads * head_dim),
        }
    }
}

/// The inverse frequencies `f_i = max_period^(−2i/Dh)`, `i < Dh/2`, computed in f32 as PyTorch
/// does: `exp(f32(i) · f32(−ln(max_period)·2/Dh))`.
pub fn freqs(head_dim: u32, max_period: f32) -> Vec<f32> {
    let c = (-(max_period as f64).ln() * 2.0 / head_dim as f64) as f32;
    (0..head_dim / 2).map(|i| (i as f32 * c).exp()).collect()
}

/// RoPE for one head dimension and max period: owns the uploaded frequency table (a shared
/// handle: cloning is cheap). [`crate::kernels::attention::AttnConfig::with_rope`] fuses it into
/// the attention kernels instead of [`Rope::apply`].
#[derive(Clone, Debug)]
pub struct Rope {
    freqs: GpuBuffer,
    head_dim: u32,
    max_period: f32,
}

impl Rope {
    /// Upload the frequency table (`head_dim` even, at most [`MAX_HEAD_DIM`]).
    pub fn new(ctx: &Context, head_dim: u32, max_period: f32) -> GpuResult<Self> {
        let period_ok = max_period.is_finite() && max_period > 0.0;
        if head_dim == 0 || !head_dim.is_multiple_of(2) || head_dim > MAX_HEAD_DIM || !period_ok {
            return Err(GpuError::Launch {
                kernel: ROPE.name,
                message: format!(
                    "head_dim {head_dim} must be even and in 2..={MAX_HEAD_DIM}, max_period {max_period} positive"
                ),
            });
        }
        let freqs = ctx.upload("rope freqs", &freqs(head_dim, max_period))?;
        Ok(Self {
            freqs,
            head_dim,
            max_period,
        })
    }

    pub fn head_dim(&self) -> u32 {
        self.head_dim
    }

    pub fn max_period(&self) -> f32 {
        self.max_period
    }

    /// The `[head_dim / 2]` f32 inverse frequencies ([`freqs`]) on the GPU.
    pub fn freqs(&self) -> View<'_> {
        self.freqs.view()
    }

    /// Rotate q (and k) of `rows` rows of `x` in place, row `t` at absolute position `pos0 + t`.
    pub fn apply(
        &self,
        rec: &mut Recorder,
        x: View,
        layout: &RopeLayout,
        rows: u32,
        pos0: u32,
    ) -> GpuResult<()> {
        let bad = |message: String| GpuError::Launch {
            kernel: ROPE.name,
            message,
        };
        let hd = layout.heads as u64 * self.head_dim as u64;
        let parts: u32 = if layout.k_offset.is_some() { 2 } else { 1 };
        for off in [Some(layout.q_offset), layout.k_offset]
            .into_iter()
            .flatten()
        {
            if off as u64 + hd > layout.row_stride as u64 {
                return Err(bad(format!(
                    "q/k at offset {off} with {} heads of {} exceeds the row stride {}",
                    layout.heads, self.head_dim, layout.row_stride
                )));
            }
        }
        if let Some(k) = layout.k_offset {
            let (q, k) = (layout.q_offset as u64, k as u64);
            if q < k + hd && k < q + hd {
                return Err(bad(format!(
                    "q at {q} and k at {k} overlap ({hd} elements each)"
                )));
            }
        }
        if rows > 0 {
            let need =
                ((rows as u64 - 1) * layout.row_stride as u64 + layout.row_stride as u64) * 4;
            if x.size < need {
                return Err(bad(format!(
                    "x has {} bytes, needs {need} for {rows} rows of stride {}",
                    x.size, layout.row_stride
                )));
            }
        }
        if (pos0 as u64 + rows as u64) > (1 << 24) {
            return Err(bad(format!(
                "position {} is beyond f32's exact integers",
                pos0 as u64 + rows as u64
            )));
        }
        let pairs = parts as u64 * hd / 2;
        let groups_per_row = pairs.div_ceil(WG as u64);
        let total = groups_per_row * rows as u64;
        if total > u32::MAX as u64 || layout.heads == 0 {
            return Err(bad(format!("{rows} rows of {pairs} pairs is out of range")));
        }
        let p = Params {
            rows,
            heads: layout.heads,
            half: self.head_dim / 2,
            row_stride: layout.row_stride,
            q_offset: layout.q_offset,
            k_offset: layout.k_offset.unwrap_or(0),
            parts,
            pos0,
            groups_per_row: groups_per_row as u32,
            _pad: [0; 3],
        };
        let groups = super::grid_1d(total as u32, rec.ctx().caps().max_workgroups_per_dimension);
        rec.launch(&ROPE, &Variant::none(), &[self.freqs.view(), x], &p, groups)
    }
}

/// Plain Rust reference for the tests: θ in f32 as the model computes it, cos/sin in f64.
pub mod reference {
    use super::RopeLayout;

    /// Rotate q (and k) of every row of `x` in place.
    pub fn rope(
        x: &mut [f32],
        layout: &RopeLayout,
        head_dim: usize,
        max_period: f32,
        rows: usize,
        pos0: usize,
    ) {
        let f = super::freqs(head_dim as u32, max_period);
        let stride = layout.row_stride as usize;
        for t in 0..rows {
            let pos = (pos0 + t) as f32;
            for off in [Some(layout.q_offset), layout.k_offset]
                .into_iter()
                .flatten()
            {
                for h in 0..layout.heads as usize {
                    let base = t * stride + off as usize + h * head_dim;
                    for (i, &fi) in f.iter().enumerate() {
                        let theta = (pos * fi) as f64;
                        let (s, c) = theta.sin_cos();
                        let (x0, x1) = (x[base + 2 * i] as f64, x[base + 2 * i + 1] as f64);
                        x[base + 2 * i] = (x0 * c - x1 * s) as f32;
                        x[base + 2 * i + 1] = (x0 * s + x1 * c) as f32;
                    }
                }
            }
        }
    }
}
