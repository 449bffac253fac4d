//! SEANet, Mimi's convolutional encoder and decoder (spec §1.3–§1.5), each a streaming part:
//! the encoder turns one frame of samples into `[steps, dimension]` rows at 25 Hz (the rows the
//! encoder transformer runs on), the decoder the decoder transformer's `[steps, dimension]` rows
//! back into one frame of samples. Weight names are the reference's
//! `model.{i}` (a `StreamingConv1d` is `model.{i}.conv.conv`, a transposed one
//! `model.{i}.convtr.convtr`, a residual block `model.{i}.block.{1,3}.conv.conv`).

use crate::gpu::{BufferUsage, Context, GpuBuffer, Recorder};
use crate::kernels::conv::{Conv1d, ConvTr1d};
use crate::nn::conv::{Bias, ConvLayer, ConvRun, ConvTrLayer, ResBlock, ResBlockShape};
use crate::nn::Scope;

use super::config::SeanetConfig;
use super::streaming::Streaming;

fn fbuf(ctx: &Context, label: &str, floats: u32) -> crate::Result<GpuBuffer> {
    Ok(ctx.create_buffer(label, floats as u64 * 4, BufferUsage::Storage)?)
}

/// The conv of the `StreamingConv1d` `model.{i}` of the scope `w`.
fn conv_at<'a>(w: &Scope<'a>, i: usize) -> Scope<'a> {
    w.pp("model").pp(i).pp("conv").pp("conv")
}

/// The residual block's shape at `channels` and `frames` samples per call.
fn res_shape(s: &SeanetConfig, channels: u32, frames: u32) -> ResBlockShape {
    ResBlockShape {
        channels,
        compress: s.compress as u32,
        kernel: s.residual_kernel_size as u32,
        frames,
    }
}

/// Encoder stage: ResBlock at `c` channels, then ELU + strided conv to `2c`.
struct EncStage {
    res: ResBlock,
    down: ConvLayer,
    out: GpuBuffer,
}

/// SEANet encoder: one frame of samples → `[steps, dimension]` rows (its last conv stores
/// time-major, `ConvRun::ELU_ROWS_OUTPUT`).
pub struct SeanetEncoder {
    first: ConvLayer,
    first_out: GpuBuffer,
    stages: Vec<EncStage>,
    last: ConvLayer,
    out: GpuBuffer,
    steps: u32,
}

impl SeanetEncoder {
    /// Load `model.*` of the scope `w` (the reference's `encoder`) for `frame` samples a call.
    pub fn load(ctx: &Context, w: &Scope, s: &SeanetConfig, frame: u32) -> crate::Result<Self> {
        let nf = s.n_filters as u32;
        let first = ConvLayer::load(
            ctx,
            &conv_at(w, 0),
            Conv1d::new(1, nf, s.kernel_size as u32),
            Bias::With,
            frame,
        )?;
        let first_out = fbuf(ctx, "enc in out", nf * frame)?;
        let mut stages = Vec::new();
        let (mut c, mut t) = (nf, frame);
        for (i, &r) in s.ratios.iter().rev().enumerate() {
            let r = r as u32;
            let res = ResBlock::load(ctx, &w.pp("model").pp(1 + 3 * i), res_shape(s, c, t))?;
            let down = ConvLayer::load(
                ctx,
                &conv_at(w, 3 + 3 * i),
                Conv1d::new(c, 2 * c, 2 * r).stride(r),
                Bias::With,
                t,
            )?;
            let out = fbuf(ctx, "enc stage out", 2 * c * (t / r))?;
            stages.push(EncStage { res, down, out });
            c *= 2;
            t /= r;
        }
        let d = s.dimension as u32;
        let last = ConvLayer::load(
            ctx,
            &conv_at(w, 3 * s.ratios.len() + 2),
            Conv1d::new(c, d, s.last_kernel_size as u32),
            Bias::With,
            t,
        )?;
        Ok(Self {
            first,
            first_out,
            stages,
            last,
            out: fbuf(ctx, "enc seanet rows", d * t)?,
            steps: t,
        })
    }

    /// Output steps per call (frame / the product of the ratios).
    pub fn steps(&self) -> u32 {
        self.steps
    }
}

impl Streaming for SeanetEncoder {
    /// `input`: one frame of samples.
    fn record(&mut self, rec: &mut Recorder, input: &GpuBuffer) -> crate::Result<()> {
        self.first
            .run(rec, input.view(), self.first_out.view(), ConvRun::PLAIN)?;
        let mut x = &self.first_out;
        for s in &mut self.stages {
            s.res.run(rec, x)?;
            s.down
                .run(rec, x.view(), s.out.view(), ConvRun::ELU_INPUT)?;
            x = &s.out;
        }
        self.last
            .run(rec, x.view(), self.out.view(), ConvRun::ELU_ROWS_OUTPUT)
    }

    /// `[steps, dimension]` rows.
    fn output(&self) -> &GpuBuffer {
        &self.out
    }

    fn reset(&mut self) {
        self.first.reset();
        for s in &mut self.stages {
            s.res.reset();
            s.down.reset();
        }
        self.last.reset();
    }
}

/// Decoder stage: ELU + transposed conv `c → c/2`, then ResBlock.
struct DecStage {
    up: ConvTrLayer,
    res: ResBlock,
    out: GpuBuffer,
}

/// SEANet decoder: the decoder transformer's `[steps, dimension]` rows → one frame of samples.
pub struct SeanetDecoder {
    first: ConvLayer,
    first_out: GpuBuffer,
    stages: Vec<DecStage>,
    last: ConvLayer,
    out: GpuBuffer,
}

impl SeanetDecoder {
    /// Load `model.*` of the scope `w` (the reference's `decoder`) for `steps` inputs a call.
    pub fn load(ctx: &Context, w: &Scope, s: &SeanetConfig, steps: u32) -> crate::Result<Self> {
        let n = s.ratios.len();
        let (mut c, mut t) = ((s.n_filters as u32) << n, steps);
        let first = ConvLayer::load(
            ctx,
            &conv_at(w, 0),
            Conv1d::new(s.dimension as u32, c, s.kernel_size as u32),
            Bias::With,
            t,
        )?;
        let first_out = fbuf(ctx, "dec in out", c * t)?;
        let mut stages = Vec::new();
        for (i, &r) in s.ratios.iter().enumerate() {
            let r = r as u32;
            let up = ConvTrLayer::load(
                ctx,
                &w.pp("model").pp(2 + 3 * i).pp("convtr").pp("convtr"),
                ConvTr1d::new(c, c / 2, 2 * r, r),
                Bias::With,
                t,
            )?;
            c /= 2;
            t *= r;
            let res = ResBlock::load(ctx, &w.pp("model").pp(3 + 3 * i), res_shape(s, c, t))?;
            let out = fbuf(ctx, "dec stage out", c * t)?;
            stages.push(DecStage { up, res, out });
        }
        let last = ConvLayer::load(
            ctx,
            &conv_at(w, 3 * n + 2),
            Conv1d::new(c, 1, s.last_kernel_size as u32),
            Bias::With,
            t,
        )?;
        Ok(Self {
            first,
            first_out,
            stages,
            last,
            out: fbuf(ctx, "pcm out", t)?,
        })
    }
}

impl Streaming for SeanetDecoder {
    /// `input`: the decoder transformer's `[steps, dimension]` rows; output: one frame of
    /// samples.
    fn record(&mut self, rec: &mut Recorder, input: &GpuBuffer) -> crate::Result<()> {
        self.first.run(
            rec,
            input.view(),
            self.first_out.view(),
            ConvRun::ROWS_INPUT,
        )?;
        let mut x = &self.first_out;
        for s in &mut self.stages {
            s.up.run(rec, x.view(), s.out.view(), ConvRun::ELU_INPUT)?;
            s.res.run(rec, &s.out)?;
            x = &s.out;
        }
        self.last
            .run(rec, x.view(), self.out.view(), ConvRun::ELU_INPUT)
    }

    fn output(&self) -> &GpuBuffer {
        &self.out
    }

    fn reset(&mut self) {
        self.first.reset();
        for s in &mut self.stages {
            s.up.reset();
            s.res.reset();
        }
        self.last.reset();
    }
}
