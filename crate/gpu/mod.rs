//! GPU runtime: device acquisition and capabilities, buffers with views, WGSL kernel
//! assembly with per-backend preludes, cached pipelines and bind groups, a frame recorder that
//! puts many dispatches into one command encoder and one submit, and readback.

mod buffer;
mod context;
mod error;
mod kernel;
mod params;
pub mod profile;
mod readback;
mod recorder;
mod wgsl;

pub use buffer::{BufferUsage, GpuBuffer, View};
pub use context::{Capabilities, Context, Options};
pub use error::GpuError;
pub use kernel::{Binding, Kernel, Pipeline, Variant};
pub use params::{ParamsField, ParamsLayout};
pub use profile::{FrameLog, FrameProfile, Profiler};
pub use readback::{FrameReadback, SlotRead};
pub use recorder::{Recorder, MAX_PARAM_BYTES, PARAM_SLOT_BYTES};
pub use wgsl::{assemble, prelude, preprocess};

/// Result type of the GPU layer.
pub type GpuResult<T> = Result<T, GpuError>;

/// Number of workgroups needed to cover `n` items with groups of `group` items.
pub const fn div_ceil(n: u32, group: u32) -> u32 {
    n.div_ceil(group)
}
