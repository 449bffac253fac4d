//! The learned resampling between SEANet's 25 Hz and the codes' 12.5 Hz, each a
//! streaming part: `downsample` (a strided conv with replicate padding) after the encoder
//! transformer, `upsample` (a depthwise conv-transpose) before the decoder transformer.

use crate::gpu::{BufferUsage, Context, GpuBuffer, Recorder};
use crate::kernels::conv::{Conv1d, ConvTr1d, PadMode};
use crate::nn::conv::{Bias, ConvLayer, ConvRun, ConvTrLayer};
use crate::nn::Scope;

use super::streaming::Streaming;

fn fbuf(ctx: &Context, label: &str, floats: u32) -> crate::Result<GpuBuffer> {
    Ok(ctx.create_buffer(label, floats as u64 * 4, BufferUsage::Storage)?)
}

/// The encoder transformer's `[steps, d]` rows → the frame's latent `[d, 1]`.
pub struct Downsample {
    conv: ConvLayer,
    out: GpuBuffer,
}

impl Downsample {
    /// Load `conv.conv.conv` of the scope `w` (the reference's `downsample`): `steps` inputs a
    /// call, kernel `2·steps`, stride `steps`, no bias.
    pub fn load(ctx: &Context, w: &Scope, d: u32, steps: u32) -> crate::Result<Self> {
        let conv = Conv1d::new(d, d, 2 * steps)
            .stride(steps)
            .pad_mode(PadMode::Replicate);
        let scope = w.pp("conv").pp("conv").pp("conv");
        Ok(Self {
            conv: ConvLayer::load(ctx, &scope, conv, Bias::Without, steps)?,
            out: fbuf(ctx, "latent", d)?,
        })
    }
}

impl Streaming for Downsample {
    fn record(&mut self, rec: &mut Recorder, input: &GpuBuffer) -> crate::Result<()> {
        self.conv
            .run(rec, input.view(), self.out.view(), ConvRun::ROWS_INPUT)
    }

    fn output(&self) -> &GpuBuffer {
        &self.out
    }

    fn reset(&mut self) {
        self.conv.reset();
    }
}

/// The frame's quantized latent `[d, 1]` → `[steps, d]` rows (stored time-major for the decoder
/// transformer, `ConvRun::ROWS_OUTPUT`).
pub struct Upsample {
    convtr: ConvTrLayer,
    out: GpuBuffer,
}

impl Upsample {
    /// Load `convtr.convtr.convtr` of the scope `w` (the reference's `upsample`): one input a
    /// call, kernel `2·steps`, stride `steps`, one group per channel, no bias.
    pub fn load(ctx: &Context, w: &Scope, d: u32, steps: u32) -> crate::Result<Self> {
        let conv = ConvTr1d::new(d, d, 2 * steps, steps).groups(d);
        let scope = w.pp("convtr").pp("convtr").pp("convtr");
        Ok(Self {
            convtr: ConvTrLayer::load(ctx, &scope, conv, Bias::Without, 1)?,
            out: fbuf(ctx, "dec up rows", d * steps)?,
        })
    }
}

impl Streaming for Upsample {
    fn record(&mut self, rec: &mut Recorder, input: &GpuBuffer) -> crate::Result<()> {
        self.convtr
            .run(rec, input.view(), self.out.view(), ConvRun::ROWS_OUTPUT)
    }

    fn output(&self) -> &GpuBuffer {
        &self.out
    }

    fn reset(&mut self) {
        self.convtr.reset();
    }
}
