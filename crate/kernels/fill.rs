//! Deterministic pseudo-random fills of weight buffers on the GPU (`shaders/fill.wgsl`), so the
//! real-size benchmarks build a 7B model without generating or reading gigabytes on the CPU.
//!
//! Layout: the view is an array of u32 words, all of them written. Dispatch: workgroups of 256
//! invocations, one word each, grid from [`super::grid_1d`].

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Binding, GpuError, GpuResult, Kernel, Recorder, Variant, View};

const SRC: &str = include_str!("../../shaders/fill.wgsl");
/// Invocations per workgroup (injected into the WGSL as `WG`).
pub const WG: u32 = 256;

static FILL: Kernel = Kernel {
    name: "fill",
    source: SRC,
    entry: "fill",
    bindings: &[Binding::ReadWrite],
    defines: &[],
    consts: &[("WG", WG)],
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// The kernel variants this module launches (for `tests/reflect.rs`).
pub fn variants(_device: &[&str]) -> Vec<(&'static Kernel, Variant)> {
    vec![(&FILL, Variant::none())]
}

/// What the words hold (see the modes in `shaders/fill.wgsl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillMode {
    /// f32 uniform in ±scale.
    F32 = 0,
    /// Two bf16 per word, uniform in ±scale.
    Bf16Pair = 1,
    /// Random bits (quantized codes).
    Bits = 2,
    /// Two positive f16 per word in [scale/2, scale) (Q8_0 block scales).
    F16PairPositive = 3,
    /// MLX affine group word: bf16 scale in [scale/2, scale), bf16 bias ≈ −8·scale.
    AffineScaleBias = 4,
}

crate::params_struct! {
    #[derive(Clone, Copy, Pod, Zeroable, Default)]
    struct Params {
        n: u32,
        mode: u32,
        seed: u32,
        scale: f32,
    }
}

/// Fill every word of `out` according to `mode`, reproducibly from `seed`.
pub fn fill(rec: &mut Recorder, out: View, mode: FillMode, seed: u32, scale: f32) -> GpuResult<()> {
    let n = out.size / 4;
    if n > u32::MAX as u64 {
        return Err(GpuError::Launch {
            kernel: FILL.name,
            message: format!("{} bytes is too large for one fill", out.size),
        });
    }
    let p = Params {
        n: n as u32,
        mode: mode as u32,
        seed,
        scale,
    };
    let groups = super::grid_1d(
        (n as u32).div_ceil(WG),
        rec.ctx().caps().max_workgroups_per_dimension,
    );
    rec.launch(&FILL, &Variant::none(), &[out], &p, groups)
}
