//! Streaming convolution blocks (SEANet, spec §1.3–§1.5): a conv or conv-transpose layer with
//! its weights, its ping-pong streaming state and the samples per call, and the residual block
//! `x += conv1x1(ELU(conv_k(ELU(x))))`. Mimi's encoder and decoder are built from these.

use crate::gpu::{BufferUsage, Context, GpuBuffer, Recorder, View};
use crate::kernels::conv::{
    self, Conv1d, Conv1dState, ConvOpts, ConvTr1d, ConvTr1dState, ConvWeights,
};
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

/// A conv layer with its weights, its streaming state and its output buffer.
pub struct ConvLayer {
    w: GpuBuffer,
    b: Option<GpuBuffer>,
    state: Conv1dState,
    /// Input samples per call.
    t_in: u32,
}

/// `{name}.weight` of `shape`, and `{name}.bias` of `[c_out]` when the layer has one.
fn weight_and_bias(
    ctx: &Context,
    f: &dyn TensorSource,
    name: &str,
    shape: &[usize],
    bias: Option<u32>,
) -> crate::Result<(GpuBuffer, Option<GpuBuffer>)> {
    let w = upload(ctx, f, &format!("{name}.weight"), shape)?;
    let b = match bias {
        Some(c_out) => Some(upload(ctx, f, &format!("{name}.bias"), &[c_out as usize])?),
        None => None,
    };
    Ok((w, b))
}

impl ConvLayer {
    /// Start a new stream (zero or replicate padding again).
    pub fn reset(&mut self) {
        self.state.reset();
    }

    pub fn load(
        ctx: &Context,
        f: &dyn TensorSource,
        name: &str,
        conv: Conv1d,
        bias: bool,
        t_in: u32,
    ) -> crate::Result<Self> {
        let shape = [
            conv.c_out as usize,
            (conv.c_in / conv.groups) as usize,
            conv.kernel as usize,
        ];
        let (w, b) = weight_and_bias(ctx, f, name, &shape, bias.then_some(conv.c_out))?;
        Ok(Self {
            w,
            b,
            state: Conv1dState::new(ctx, name, conv)?,
            t_in,
        })
    }
    pub fn run(
        &mut self,
        rec: &mut Recorder,
        x: View,
        y: View,
        elu_input: bool,
        accumulate: bool,
    ) -> crate::Result<()> {
        let opts = ConvOpts {
            elu_input,
            accumulate,
            ..Default::default()
        };
        conv::conv1d(
            rec,
            &mut self.state,
            &ConvWeights {
                weight: self.w.view(),
                bias: self.b.as_ref().map(|b| b.view()),
            },
            x,
            y,
            self.t_in,
            opts,
        )?;
        Ok(())
    }
}

pub struct ConvTrLayer {
    w: GpuBuffer,
    b: Option<GpuBuffer>,
    state: ConvTr1dState,
    t_in: u32,
}

impl ConvTrLayer {
    /// Start a new stream (no partial sums carried over).
    pub fn reset(&mut self) {
        self.state.reset();
    }

    pub fn load(
        ctx: &Context,
        f: &dyn TensorSource,
        name: &str,
        conv: ConvTr1d,
        bias: bool,
        t_in: u32,
    ) -> crate::Result<Self> {
        let shape = [
            conv.c_in as usize,
            (conv.c_out / conv.groups) as usize,
            conv.kernel as usize,
        ];
        let (w, b) = weight_and_bias(ctx, f, name, &shape, bias.then_some(conv.c_out))?;
        Ok(Self {
            w,
            b,
            state: ConvTr1dState::new(ctx, name, conv)?,
            t_in,
        })
    }
    pub fn run(
        &mut self,
        rec: &mut Recorder,
        x: View,
        y: View,
        elu_input: bool,
    ) -> crate::Result<()> {
        let opts = ConvOpts {
            elu_input,
            ..Default::default()
        };
        conv::conv_tr1d(
            rec,
            &mut self.state,
            &ConvWeights {
                weight: self.w.view(),
                bias: self.b.as_ref().map(|b| b.view()),
            },
            x,
            y,
            self.t_in,
            opts,
        )?;
        Ok(())
    }
}

/// SEANet residual block: `x += conv1x1(ELU(conv_k(ELU(x))))`, in place on `x`.
/// A residual block's shape: `channels`, hidden `channels / compress`, the first conv's
/// `kernel`, and `frames` input samples per call.
#[derive(Debug, Clone, Copy)]
pub struct ResBlockShape {
    pub channels: u32,
    pub compress: u32,
    pub kernel: u32,
    pub frames: u32,
}

pub struct ResBlock {
    c1: ConvLayer,
    c2: ConvLayer,
    hidden: GpuBuffer,
}

impl ResBlock {
    pub fn load(
        ctx: &Context,
        f: &dyn TensorSource,
        name: &str,
        shape: ResBlockShape,
    ) -> crate::Result<Self> {
        let ResBlockShape {
            channels: c,
            compress,
            kernel: k,
            frames: t,
        } = shape;
        let hidden = c / compress;
        Ok(Self {
            c1: ConvLayer::load(
                ctx,
                f,
                &format!("{name}.block.1.conv.conv"),
                Conv1d::new(c, hidden, k),
                true,
                t,
            )?,
            c2: ConvLayer::load(
                ctx,
                f,
                &format!("{name}.block.3.conv.conv"),
                Conv1d::new(hidden, c, 1),
                true,
                t,
            )?,
            hidden: ctx.create_buffer(
                &format!("{name} hidden"),
                (hidden * t * 4) as u64,
                BufferUsage::Storage,
            )?,
        })
    }
    pub fn run(&mut self, rec: &mut Recorder, x: &GpuBuffer) -> crate::Result<()> {
        self.c1
            .run(rec, x.view(), self.hidden.view(), true, false)?;
        self.c2.run(rec, self.hidden.view(), x.view(), true, true)
    }
    pub fn reset(&mut self) {
        self.c1.state.reset();
        self.c2.state.reset();
    }
}
