//! The one interface every part of Mimi has: it owns its weights, its state between calls and
//! its output buffer (all allocated at load), records one frame's call reading its input, and
//! starts a new stream on reset.

use crate::gpu::{GpuBuffer, Recorder};

/// A streaming part of the codec (SEANet encoder or decoder, a codec transformer, a resampling
/// conv, a half of the split RVQ).
pub trait Streaming {
    /// Record one frame's call: read `input` (the previous part's [`Streaming::output`]) and
    /// write [`Streaming::output`].
    fn record(&mut self, rec: &mut Recorder, input: &GpuBuffer) -> crate::Result<()>;

    /// The buffer each call writes.
    fn output(&self) -> &GpuBuffer;

    /// Start a new stream: every conv state, partial sum and KV cache as at load.
    fn reset(&mut self);
}
