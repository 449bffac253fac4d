//! Mimi, the streaming speech codec: SEANet encoder/decoder, codec transformers, learned
//! resampling and the split RVQ, on the GPU kernels.

pub mod config;
mod model;
mod transformer;

pub use config::MimiConfig;
pub use model::Mimi;

use crate::gpu::{Context, GpuBuffer};
use crate::weights::TensorSource;

/// Fetch one tensor from the source and upload it to its own GPU buffer.
pub(crate) fn upload(
    ctx: &Context,
    f: &dyn TensorSource,
    name: &str,
    shape: &[usize],
) -> crate::Result<GpuBuffer> {
    let v = f.f32(name, shape)?;
    Ok(ctx.upload(name, &v)?)
}
