//! Launchers for the WGSL kernels in `shaders/`, one module per kernel family, each with a plain
//! Rust CPU reference (`reference` submodule) used by the tests.
//!
//! Every launcher states its buffer layouts and dispatch geometry, and checks at compile time
//! (with [`crate::gpu::wgsl_contains`]) that the WGSL declares the same workgroup size.

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

/// `#[repr(C)]` parameter blocks are uploaded as raw bytes; this asserts a block fits a slot.
#[macro_export]
macro_rules! assert_params_fit {
    ($t:ty) => {
        const _: () = assert!(std::mem::size_of::<$t>() as u64 <= $crate::gpu::PARAM_SLOT_BYTES);
    };
}
