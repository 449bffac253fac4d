//! Launchers for the WGSL kernels in `shaders/`, one module per kernel family, each with a plain
//! Rust CPU reference (`reference` submodule) used by the tests.
//!
//! Every launcher states its buffer layouts and dispatch geometry. Its `Kernel` statics carry the
//! contract with the WGSL (binding list, defines, injected geometry constants, workgroup size,
//! `Params` layout) and its `variants` function lists every variant it compiles; `tests/reflect.rs`
//! checks all of them against the WGSL with naga.

use crate::gpu::{Kernel, Variant};

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod embed;
pub mod fill;
pub mod linear;
pub mod norm;
pub mod rope;
pub mod rvq;
pub mod sampling;
pub mod softmax;

/// Split a 1-D count of workgroups into a 2-D grid that respects the per-dimension limit.
/// Kernels recover the linear group index as `wid.y * nwg.x + wid.x` and bounds-check it.
pub fn grid_1d(groups: u32, max_per_dim: u32) -> [u32; 3] {
    if groups <= max_per_dim {
        [groups, 1, 1]
    } else {
        let y = groups.div_ceil(max_per_dim);
        [groups.div_ceil(y), y, 1]
    }
}

/// Every kernel variant the launchers compile on a device with `device_defines` (the context's
/// `F16`, `SUBGROUPS`, `WEB`), for `tests/reflect.rs`.
pub fn variants(device_defines: &[&str]) -> Vec<(&'static Kernel, Variant)> {
    let d = device_defines;
    [
        attention::variants(d),
        conv::variants(d),
        elementwise::variants(d),
        embed::variants(d),
        fill::variants(d),
        linear::variants(d),
        norm::variants(d),
        rope::variants(d),
        rvq::variants(d),
        sampling::variants(d),
        softmax::variants(d),
    ]
    .concat()
}
