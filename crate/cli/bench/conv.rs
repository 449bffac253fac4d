//! Streaming Conv1d / ConvTranspose1d at Mimi's real shapes, per 80 ms frame (1920 samples at
//! 24 kHz: the SEANet runs at 24 kHz → 25 Hz, the resampling convs at 25 ↔ 12.5 Hz).
//! Bytes = weights + bias + input + output (+ state) of one call.

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::Result;
use parle::gpu::{Context, GpuBuffer};
use parle::kernels::conv::{
    self, Conv1d, Conv1dState, ConvAlgo, ConvOpts, ConvTr1d, ConvTr1dState, ConvWeights, PadMode,
};

use super::{buf, Case};

/// One conv with its weights, activations and state, ready to record.
struct Conv1dBench {
    conv: Conv1d,
    t: u32,
    opts: ConvOpts,
    w: GpuBuffer,
    b: GpuBuffer,
    x: GpuBuffer,
    y: GpuBuffer,
    state: RefCell<Conv1dState>,
}

impl Conv1dBench {
    fn new(ctx: &Context, conv: Conv1d, t: u32, opts: ConvOpts) -> Result<Rc<Self>> {
        Ok(Rc::new(Self {
            conv,
            t,
            opts,
            w: buf(ctx, "w", conv.weight_len())?,
            b: buf(ctx, "b", conv.c_out as usize)?,
            x: buf(ctx, "x", (conv.c_in * t) as usize)?,
            y: buf(ctx, "y", (conv.c_out * conv.out_len(t)) as usize)?,
            state: RefCell::new(Conv1dState::new(ctx, "bench", conv)?),
        }))
    }
    fn bytes(&self) -> u64 {
        let c = &self.conv;
        4 * (c.weight_len() as u64
            + c.c_out as u64
            + (c.c_in * self.t) as u64
            + (c.c_out * c.out_len(self.t)) as u64
            + 2 * (c.c_in * c.padding()) as u64)
    }
    fn name(&self) -> String {
        let c = &self.conv;
        let mut s = format!(
            "conv1d k{} s{} {}→{} T={}",
            c.kernel, c.stride, c.c_in, c.c_out, self.t
        );
        if c.groups > 1 {
            s += &format!(" g{}", c.groups);
        }
        if c.pad_mode == PadMode::Replicate {
            s += " repl";
        }
        if self.opts.algo != ConvAlgo::Auto {
            s += &format!(" [{:?}]", self.opts.algo);
        }
        s
    }
    fn record(&self, r: &mut parle::gpu::Recorder) -> parle::gpu::GpuResult<()> {
        conv::conv1d(
            r,
            &mut self.state.borrow_mut(),
            &ConvWeights {
                weight: self.w.view(),
                bias: Some(self.b.view()),
            },
            self.x.view(),
            self.y.view(),
            self.t,
            self.opts,
        )
    }
}

struct ConvTrBench {
    conv: ConvTr1d,
    t: u32,
    opts: ConvOpts,
    w: GpuBuffer,
    b: GpuBuffer,
    x: GpuBuffer,
    y: GpuBuffer,
    state: RefCell<ConvTr1dState>,
}

impl ConvTrBench {
    fn new(ctx: &Context, conv: ConvTr1d, t: u32, opts: ConvOpts) -> Result<Rc<Self>> {
        Ok(Rc::new(Self {
            conv,
            t,
            opts,
            w: buf(ctx, "w", conv.weight_len())?,
            b: buf(ctx, "b", conv.c_out as usize)?,
            x: buf(ctx, "x", (conv.c_in * t) as usize)?,
            y: buf(ctx, "y", (conv.c_out * conv.out_len(t)) as usize)?,
            state: RefCell::new(ConvTr1dState::new(ctx, "bench", conv)?),
        }))
    }
    fn bytes(&self) -> u64 {
        let c = &self.conv;
        4 * (c.weight_len() as u64
            + c.c_out as u64
            + (c.c_in * self.t) as u64
            + (c.c_out * c.out_len(self.t)) as u64
            + 2 * (c.c_out * c.partial_len()) as u64)
    }
    fn name(&self) -> String {
        let c = &self.conv;
        let mut s = format!(
            "convtr k{} s{} {}→{} T={}",
            c.kernel, c.stride, c.c_in, c.c_out, self.t
        );
        if c.groups > 1 {
            s += &format!(" g{}", c.groups);
        }
        if self.opts.algo != ConvAlgo::Auto {
            s += &format!(" [{:?}]", self.opts.algo);
        }
        s
    }
    fn record(&self, r: &mut parle::gpu::Recorder) -> parle::gpu::GpuResult<()> {
        conv::conv_tr1d(
            r,
            &mut self.state.borrow_mut(),
            &ConvWeights {
                weight: self.w.view(),
                bias: Some(self.b.view()),
            },
            self.x.view(),
            self.y.view(),
            self.t,
            self.opts,
        )
    }
}

#[derive(Clone)]
enum Any {
    C(Rc<Conv1dBench>),
    T(Rc<ConvTrBench>),
}

impl Any {
    fn name(&self) -> String {
        match self {
            Any::C(c) => c.name(),
            Any::T(t) => t.name(),
        }
    }
    fn bytes(&self) -> u64 {
        match self {
            Any::C(c) => c.bytes(),
            Any::T(t) => t.bytes(),
        }
    }
    fn record(&self, r: &mut parle::gpu::Recorder) -> parle::gpu::GpuResult<()> {
        match self {
            Any::C(c) => c.record(r),
            Any::T(t) => t.record(r),
        }
    }
}

pub fn cases(ctx: &Context) -> Result<Vec<Case>> {
    let elu = ConvOpts {
        elu_input: true,
        ..Default::default()
    };
    let acc = ConvOpts {
        elu_input: true,
        accumulate: true,
        ..Default::default()
    };
    let plain = ConvOpts::default();
    let c1 = |conv: Conv1d, t: u32, o: ConvOpts| Conv1dBench::new(ctx, conv, t, o).map(Any::C);
    let ct = |conv: ConvTr1d, t: u32, o: ConvOpts| ConvTrBench::new(ctx, conv, t, o).map(Any::T);

    // SEANet encoder, one frame: 1920 samples in, 2 × 512 out (25 Hz), then the downsample
    // (12.5 Hz) and a quantizer input projection.
    let mut enc = vec![c1(Conv1d::new(1, 64, 7), 1920, plain)?];
    let mut t = 1920;
    for (ch, ratio) in [(64u32, 4u32), (128, 5), (256, 6), (512, 8)] {
        enc.push(c1(Conv1d::new(ch, ch / 2, 3), t, elu)?);
        enc.push(c1(Conv1d::new(ch / 2, ch, 1), t, acc)?);
        enc.push(c1(
            Conv1d::new(ch, 2 * ch, 2 * ratio).stride(ratio),
            t,
            elu,
        )?);
        t /= ratio;
    }
    enc.push(c1(Conv1d::new(1024, 512, 3), 2, elu)?);
    enc.push(c1(
        Conv1d::new(512, 512, 4)
            .stride(2)
            .pad_mode(PadMode::Replicate),
        2,
        plain,
    )?);
    enc.push(c1(Conv1d::new(512, 256, 1), 1, plain)?);

    // Decoder, one frame: output projection, upsample to 25 Hz, SEANet to 1920 samples.
    let mut dec = vec![
        c1(Conv1d::new(256, 512, 1), 1, plain)?,
        ct(ConvTr1d::new(512, 512, 4, 2).groups(512), 1, plain)?,
        c1(Conv1d::new(512, 1024, 7), 2, plain)?,
    ];
    let mut t = 2;
    let mut ch = 1024;
    for ratio in [8u32, 6, 5, 4] {
        dec.push(ct(ConvTr1d::new(ch, ch / 2, 2 * ratio, ratio), t, elu)?);
        ch /= 2;
        t *= ratio;
        dec.push(c1(Conv1d::new(ch, ch / 2, 3), t, elu)?);
        dec.push(c1(Conv1d::new(ch / 2, ch, 1), t, acc)?);
    }
    dec.push(c1(Conv1d::new(64, 1, 3), 1920, elu)?);

    let mut v = Vec::new();
    for layer in enc.iter().chain(&dec) {
        let l = layer.clone();
        v.push(Case::new(layer.name(), layer.bytes(), move |r| l.record(r)));
    }
    // The weight-bound shapes with each kernel forced, to check ConvAlgo::Auto's choice.
    let d = ConvOpts {
        algo: ConvAlgo::Direct,
        elu_input: true,
        ..Default::default()
    };
    let rd = ConvOpts {
        algo: ConvAlgo::Reduce,
        ..d
    };
    let tl = ConvOpts {
        algo: ConvAlgo::Tiled,
        ..d
    };
    let forced = [
        c1(Conv1d::new(512, 1024, 16).stride(8), 16, d)?,
        c1(Conv1d::new(512, 1024, 16).stride(8), 16, rd)?,
        c1(Conv1d::new(512, 1024, 16).stride(8), 16, tl)?,
        c1(Conv1d::new(1024, 512, 3), 2, tl)?,
        c1(Conv1d::new(256, 512, 12).stride(6), 96, d)?,
        c1(Conv1d::new(256, 512, 12).stride(6), 96, rd)?,
        c1(Conv1d::new(256, 512, 12).stride(6), 96, tl)?,
        c1(Conv1d::new(512, 256, 3), 16, d)?,
        c1(Conv1d::new(512, 256, 3), 16, rd)?,
        c1(Conv1d::new(512, 256, 3), 16, tl)?,
        c1(Conv1d::new(256, 128, 3), 96, rd)?,
        c1(Conv1d::new(256, 128, 3), 96, tl)?,
        c1(Conv1d::new(128, 256, 10).stride(5), 480, d)?,
        c1(Conv1d::new(128, 256, 10).stride(5), 480, tl)?,
        c1(Conv1d::new(128, 256, 10).stride(5), 480, rd)?,
        c1(Conv1d::new(128, 64, 3), 480, rd)?,
        c1(Conv1d::new(128, 64, 3), 480, tl)?,
        c1(Conv1d::new(64, 128, 8).stride(4), 1920, rd)?,
        c1(Conv1d::new(64, 32, 3), 1920, rd)?,
        c1(Conv1d::new(32, 64, 1), 1920, rd)?,
        c1(Conv1d::new(32, 64, 1), 1920, tl)?,
        c1(Conv1d::new(64, 128, 8).stride(4), 1920, d)?,
        c1(Conv1d::new(64, 128, 8).stride(4), 1920, tl)?,
        c1(Conv1d::new(64, 32, 3), 1920, d)?,
        c1(Conv1d::new(64, 32, 3), 1920, tl)?,
        ct(ConvTr1d::new(1024, 512, 16, 8), 2, d)?,
        ct(ConvTr1d::new(1024, 512, 16, 8), 2, rd)?,
        ct(ConvTr1d::new(512, 256, 12, 6), 16, d)?,
        ct(ConvTr1d::new(512, 256, 12, 6), 16, rd)?,
        ct(ConvTr1d::new(256, 128, 10, 5), 96, d)?,
    ];
    for layer in forced {
        v.push(Case::new(layer.name(), layer.bytes(), move |r| {
            layer.record(r)
        }));
    }
    // Whole frames: every conv of the encoder / decoder in sequence (one dispatch each).
    let enc_bytes = enc.iter().map(Any::bytes).sum();
    v.push(Case::new(
        format!("SEANet encoder frame ({} convs)", enc.len()),
        enc_bytes,
        move |r| enc.iter().try_for_each(|l| l.record(r)),
    ));
    let dec_bytes = dec.iter().map(Any::bytes).sum();
    v.push(Case::new(
        format!("SEANet decoder frame ({} convs)", dec.len()),
        dec_bytes,
        move |r| dec.iter().try_for_each(|l| l.record(r)),
    ));
    Ok(v)
}
