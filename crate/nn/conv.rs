//! Streaming convolution blocks (SEANet, spec §1.3–§1.5): a conv or conv-transpose layer with
//! its weights, its ping-pong streaming state and the samples per call, and the residual block
//! `x += conv1x1(ELU(conv_k(ELU(x))))`. Mimi's encoder and decoder are built from these.
//!
//! Layers load from the [`Scope`] that holds their `weight` (and `bias`): the caller scopes into
//! the reference's module names (`….conv.conv` for a `StreamingConv1d`).

use crate::gpu::{BufferUsage, Context, GpuBuffer, GpuError, Recorder, View};
use crate::kernels::conv::{
    self, Conv1d, Conv1dState, ConvOpts, ConvTr1d, ConvTr1dState, ConvWeights,
};

use super::source::Scope;

/// How a layer reads its input and writes its output in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConvRun {
    /// Read `ELU(x)` instead of `x` (SEANet's convs that follow an activation).
    pub elu_input: bool,
    /// `y += conv(x)` instead of `y = conv(x)` (conv only; the conv-transpose refuses it).
    pub accumulate: bool,
    /// `x` is time-major `[t, channels]`, a transformer's rows (conv only).
    pub input_rows: bool,
    /// `y` is written time-major, `[t, channels]`: the rows the next codec transformer runs on.
    pub output_rows: bool,
}

impl ConvRun {
    /// `y = conv(x)`.
    pub const PLAIN: Self = Self {
        elu_input: false,
        accumulate: false,
        input_rows: false,
        output_rows: false,
    };
    /// `y = conv(ELU(x))`.
    pub const ELU_INPUT: Self = Self {
        elu_input: true,
        accumulate: false,
        input_rows: false,
        output_rows: false,
    };
    /// `y += conv(x)`.
    pub const ACCUMULATE: Self = Self {
        elu_input: false,
        accumulate: true,
        input_rows: false,
        output_rows: false,
    };
    /// `y += conv(ELU(x))` (the residual block's last conv).
    pub const ELU_ACCUMULATE: Self = Self {
        elu_input: true,
        accumulate: true,
        input_rows: false,
        output_rows: false,
    };

    /// `y = conv(x)` with `x` given as `[t, channels]` rows.
    pub const ROWS_INPUT: Self = Self {
        elu_input: false,
        accumulate: false,
        input_rows: true,
        output_rows: false,
    };

    /// `y = conv(x)` written as `[t, channels]` rows.
    pub const ROWS_OUTPUT: Self = Self {
        output_rows: true,
        ..Self::PLAIN
    };
    /// `y = conv(ELU(x))` written as `[t, channels]` rows (SEANet's last encoder conv).
    pub const ELU_ROWS_OUTPUT: Self = Self {
        output_rows: true,
        ..Self::ELU_INPUT
    };

    fn opts(self) -> ConvOpts {
        ConvOpts {
            elu_input: self.elu_input,
            accumulate: self.accumulate,
            input_rows: self.input_rows,
            output_rows: self.output_rows,
            ..Default::default()
        }
    }
}

/// Whether a layer has a bias (`{scope}.bias` of `[c_out]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bias {
    With,
    Without,
}

/// A layer's parameters on the GPU.
struct Params {
    w: GpuBuffer,
    b: Option<GpuBuffer>,
}

impl Params {
    /// `weight` of `shape`, and `bias` of `[c_out]` when the layer has one.
    fn load(
        ctx: &Context,
        w: &Scope,
        shape: &[usize],
        bias: Bias,
        c_out: u32,
    ) -> crate::Result<Self> {
        // The weight first: a checkpoint that disagrees with the config is named by its weight.
        let weight = w.tensor(ctx, "weight", shape, 0.0)?;
        let b = match bias {
            Bias::With => Some(w.tensor(ctx, "bias", &[c_out as usize], 0.0)?),
            Bias::Without => None,
        };
        Ok(Self { w: weight, b })
    }

    fn views(&self) -> ConvWeights<'_> {
        ConvWeights {
            weight: self.w.view(),
            bias: self.b.as_ref().map(|b| b.view()),
        }
    }
}

/// How [`ConvLayer::load_joined`] joins its parts' weights into one conv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// Output channels stacked: part `i` computes the outputs `[i·C_out/n, (i+1)·C_out/n)` of
    /// the one input (weights `[W_0; W_1; …]`).
    Outputs,
    /// Input channels concatenated: one conv of the stacked inputs `[x_0; x_1; …]` computes
    /// `Σ_i conv_i(x_i)` (each weight row `[W_0[co] | W_1[co] | …]`).
    Inputs,
}

/// A conv layer with its weights, its streaming state and its input samples per call.
pub struct ConvLayer {
    params: Params,
    state: Conv1dState,
    /// Input samples per call.
    t_in: u32,
}

impl ConvLayer {
    /// Load `weight` `[c_out, c_in / groups, kernel]` (and `bias`) of the scope `w`.
    pub fn load(
        ctx: &Context,
        w: &Scope,
        conv: Conv1d,
        bias: Bias,
        t_in: u32,
    ) -> crate::Result<Self> {
        let shape = [
            conv.c_out as usize,
            (conv.c_in / conv.groups) as usize,
            conv.kernel as usize,
        ];
        Ok(Self {
            params: Params::load(ctx, w, &shape, bias, conv.c_out)?,
            state: Conv1dState::new(ctx, w.prefix(), conv)?,
            t_in,
        })
    }

    /// One conv (no bias, no groups) whose weight joins the `weight`s of the scopes `parts`, as
    /// `join` says, at load: `conv` is the joined shape, so one launch does the parts' work
    /// (Mimi's quantizer projections). The joined weight has the parts' bytes.
    pub fn load_joined(
        ctx: &Context,
        parts: &[Scope],
        conv: Conv1d,
        join: Join,
        t_in: u32,
    ) -> crate::Result<Self> {
        let n = parts.len() as u32;
        let (c_out, c_in, k) = (conv.c_out, conv.c_in, conv.kernel);
        let split = match join {
            Join::Outputs => c_out,
            Join::Inputs => c_in,
        };
        if n == 0 || conv.groups != 1 || !split.is_multiple_of(n) {
            return Err(GpuError::Launch {
                kernel: "conv layer",
                message: format!(
                    "cannot join {n} weights into {conv:?} by {join:?}: needs one group and channels divisible by {n}"
                ),
            }
            .into());
        }
        let (po, pi) = match join {
            Join::Outputs => (c_out / n, c_in),
            Join::Inputs => (c_out, c_in / n),
        };
        let shape = [po as usize, pi as usize, k as usize];
        let weights = parts
            .iter()
            .map(|w| w.values("weight", &shape, 0.0))
            .collect::<crate::Result<Vec<_>>>()?;
        let joined: Vec<f32> = match join {
            Join::Outputs => weights.concat(),
            Join::Inputs => {
                let row = (pi * k) as usize;
                (0..c_out as usize)
                    .flat_map(|co| weights.iter().flat_map(move |w| &w[co * row..][..row]))
                    .copied()
                    .collect()
            }
        };
        let names: Vec<&str> = parts.iter().map(|w| w.prefix()).collect();
        let label = names.join(" + ");
        Ok(Self {
            params: Params {
                w: ctx.upload(&format!("{label} weight"), &joined)?,
                b: None,
            },
            state: Conv1dState::new(ctx, &label, conv)?,
            t_in,
        })
    }

    /// Start a new stream (zero or replicate padding again).
    pub fn reset(&mut self) {
        self.state.reset();
    }

    /// Record one call: `t_in` samples of `x` into `y`, as `how` says.
    pub fn run(&mut self, rec: &mut Recorder, x: View, y: View, how: ConvRun) -> crate::Result<()> {
        let weights = self.params.views();
        conv::conv1d(rec, &mut self.state, &weights, x, y, self.t_in, how.opts())?;
        Ok(())
    }
}

/// A conv-transpose layer with its weights, its partial sums and its input samples per call.
pub struct ConvTrLayer {
    params: Params,
    state: ConvTr1dState,
    t_in: u32,
}

impl ConvTrLayer {
    /// Load `weight` `[c_in, c_out / groups, kernel]` (and `bias`) of the scope `w`.
    pub fn load(
        ctx: &Context,
        w: &Scope,
        conv: ConvTr1d,
        bias: Bias,
        t_in: u32,
    ) -> crate::Result<Self> {
        let shape = [
            conv.c_in as usize,
            (conv.c_out / conv.groups) as usize,
            conv.kernel as usize,
        ];
        Ok(Self {
            params: Params::load(ctx, w, &shape, bias, conv.c_out)?,
            state: ConvTr1dState::new(ctx, w.prefix(), conv)?,
            t_in,
        })
    }

    /// Start a new stream (no partial sums carried over).
    pub fn reset(&mut self) {
        self.state.reset();
    }

    /// Record one call: `t_in` samples of `x` into `y`, as `how` says.
    pub fn run(&mut self, rec: &mut Recorder, x: View, y: View, how: ConvRun) -> crate::Result<()> {
        let weights = self.params.views();
        conv::conv_tr1d(rec, &mut self.state, &weights, x, y, self.t_in, how.opts())?;
        Ok(())
    }
}

/// A residual block's shape: `channels`, hidden `channels / compress`, the first conv's
/// `kernel`, and `frames` input samples per call.
#[derive(Debug, Clone, Copy)]
pub struct ResBlockShape {
    pub channels: u32,
    pub compress: u32,
    pub kernel: u32,
    pub frames: u32,
}

/// SEANet residual block: `x += conv1x1(ELU(conv_k(ELU(x))))`, in place on `x`.
pub struct ResBlock {
    c1: ConvLayer,
    c2: ConvLayer,
    hidden: GpuBuffer,
}

impl ResBlock {
    /// Load `block.1` and `block.3` (each a `StreamingConv1d`: `….conv.conv`) of the scope `w`.
    pub fn load(ctx: &Context, w: &Scope, shape: ResBlockShape) -> crate::Result<Self> {
        let ResBlockShape {
            channels: c,
            compress,
            kernel: k,
            frames: t,
        } = shape;
        let hidden = c / compress;
        let conv = |i: u32| w.pp("block").pp(i).pp("conv").pp("conv");
        Ok(Self {
            c1: ConvLayer::load(ctx, &conv(1), Conv1d::new(c, hidden, k), Bias::With, t)?,
            c2: ConvLayer::load(ctx, &conv(3), Conv1d::new(hidden, c, 1), Bias::With, t)?,
            hidden: ctx.create_buffer(
                &format!("{} hidden", w.prefix()),
                (hidden * t * 4) as u64,
                BufferUsage::Storage,
            )?,
        })
    }

    /// Record one call on `x` in place.
    pub fn run(&mut self, rec: &mut Recorder, x: &GpuBuffer) -> crate::Result<()> {
        let h = self.hidden.view();
        self.c1.run(rec, x.view(), h, ConvRun::ELU_INPUT)?;
        self.c2.run(rec, h, x.view(), ConvRun::ELU_ACCUMULATE)
    }

    pub fn reset(&mut self) {
        self.c1.reset();
        self.c2.reset();
    }
}
