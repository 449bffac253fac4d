//! Mimi's split RVQ (spec §1.8) as two streaming parts sharing one set of codebooks: the
//! encoder projects the frame's latent and quantizes it into `n_q` codes (one semantic level
//! `rvq_first`, `n_q − 1` acoustic levels `rvq_rest`, both from the same latent); the decoder
//! looks the codes up, projects both sums back and adds them.

use crate::gpu::{BufferUsage, Context, GpuBuffer, Recorder};
use crate::kernels::conv::Conv1d;
use crate::kernels::rvq::{
    self, Codebooks, CodesLayout, CodesView, EncodeScratch, Frames, IoLayout,
};
use crate::nn::conv::{Bias, ConvLayer, ConvRun};
use crate::nn::Scope;

use super::config::QuantizerConfig;
use super::streaming::Streaming;

fn fbuf(ctx: &Context, label: &str, floats: u32) -> crate::Result<GpuBuffer> {
    Ok(ctx.create_buffer(label, floats as u64 * 4, BufferUsage::Storage)?)
}

/// Codes of one frame, level `l` at element `offset + l`.
fn codes_at(offset: u32) -> CodesLayout {
    CodesLayout {
        offset,
        level_stride: 1,
        t_stride: 1,
    }
}

/// The semantic and acoustic codebooks on the GPU (cheap shared handles, one copy for both
/// halves).
#[derive(Clone)]
struct SplitCodebooks {
    first: GpuBuffer,
    rest: GpuBuffer,
    n_q: u32,
    bins: u32,
    dim: u32,
}

impl SplitCodebooks {
    /// `vq.layers.{l}._codebook` of `rvq_first` (1 level) and `rvq_rest` (`n_q − 1` levels):
    /// each codebook is `embedding_sum / max(cluster_usage, 1e-5)`.
    fn load(ctx: &Context, w: &Scope, q: &QuantizerConfig, n_q: u32) -> crate::Result<Self> {
        let (bins, dim) = (q.bins, q.dimension);
        let load = |rvq: &str, levels: u32| -> crate::Result<GpuBuffer> {
            let mut all = Vec::with_capacity(levels as usize * bins * dim);
            for l in 0..levels {
                let book = w.pp(rvq).pp("vq").pp("layers").pp(l).pp("_codebook");
                let sum = book.values("embedding_sum", &[bins, dim], 0.0)?;
                let usage = book.values("cluster_usage", &[bins], 1.0)?;
                for (j, row) in sum.chunks(dim).enumerate() {
                    let u = usage[j].max(1e-5);
                    all.extend(row.iter().map(|v| v / u));
                }
            }
            Ok(ctx.upload(&format!("{rvq} codebooks"), &all)?)
        };
        Ok(Self {
            first: load("rvq_first", 1)?,
            rest: load("rvq_rest", n_q - 1)?,
            n_q,
            bins: bins as u32,
            dim: dim as u32,
        })
    }

    /// The semantic and acoustic codebooks, and the `[1, dim]` input/output layout.
    fn views(&self) -> (Codebooks<'_>, Codebooks<'_>, IoLayout) {
        let first = Codebooks {
            view: self.first.view(),
            levels: 1,
            bins: self.bins,
            dim: self.dim,
        };
        let rest = Codebooks {
            view: self.rest.view(),
            levels: self.n_q - 1,
            bins: self.bins,
            dim: self.dim,
        };
        (first, rest, IoLayout::time_major(self.dim))
    }
}

/// The quantizer's projection `{rvq}.{which}` (a 1×1 conv, no bias).
fn projection(
    ctx: &Context,
    w: &Scope,
    rvq: &str,
    which: &str,
    conv: Conv1d,
) -> crate::Result<ConvLayer> {
    ConvLayer::load(ctx, &w.pp(rvq).pp(which), conv, Bias::Without, 1)
}

/// Load both halves from the scope `w` (the reference's `quantizer`) for latents of `d`
/// channels and `n_q` codebooks.
pub fn load(
    ctx: &Context,
    w: &Scope,
    q: &QuantizerConfig,
    d: u32,
    n_q: u32,
) -> crate::Result<(RvqEncoder, RvqDecoder)> {
    let qd = q.dimension as u32;
    let encoder = RvqEncoder {
        proj_first: projection(ctx, w, "rvq_first", "input_proj", Conv1d::new(d, qd, 1))?,
        proj_rest: projection(ctx, w, "rvq_rest", "input_proj", Conv1d::new(d, qd, 1))?,
        first_in: fbuf(ctx, "rvq first in", qd)?,
        rest_in: fbuf(ctx, "rvq rest in", qd)?,
        books: SplitCodebooks::load(ctx, w, q, n_q)?,
        residual: ctx.create_buffer(
            "rvq residual",
            rvq::residual_bytes(1, qd),
            BufferUsage::Storage,
        )?,
        parts: ctx.create_buffer(
            "rvq parts",
            rvq::parts_bytes(1, q.bins as u32),
            BufferUsage::Storage,
        )?,
        codes: ctx.create_buffer("codes", n_q as u64 * 4, BufferUsage::Storage)?,
    };
    let decoder = RvqDecoder {
        books: encoder.books.clone(),
        q_first: fbuf(ctx, "q first", qd)?,
        q_rest: fbuf(ctx, "q rest", qd)?,
        out_first: projection(ctx, w, "rvq_first", "output_proj", Conv1d::new(qd, d, 1))?,
        out_rest: projection(ctx, w, "rvq_rest", "output_proj", Conv1d::new(qd, d, 1))?,
        quantized: fbuf(ctx, "quantized", d)?,
    };
    Ok((encoder, decoder))
}

/// The frame's latent `[d]` → its `n_q` codes (u32).
pub struct RvqEncoder {
    proj_first: ConvLayer,
    proj_rest: ConvLayer,
    first_in: GpuBuffer,
    rest_in: GpuBuffer,
    books: SplitCodebooks,
    residual: GpuBuffer,
    parts: GpuBuffer,
    codes: GpuBuffer,
}

impl RvqEncoder {
    /// The projected latents the semantic and the acoustic RVQ quantize (`[dimension]` each).
    pub fn projected(&self) -> (&GpuBuffer, &GpuBuffer) {
        (&self.first_in, &self.rest_in)
    }
}

impl Streaming for RvqEncoder {
    fn record(&mut self, rec: &mut Recorder, input: &GpuBuffer) -> crate::Result<()> {
        let x = input.view();
        self.proj_first
            .run(rec, x, self.first_in.view(), ConvRun::PLAIN)?;
        self.proj_rest
            .run(rec, x, self.rest_in.view(), ConvRun::PLAIN)?;
        let (first, rest, io) = self.books.views();
        for (books, input, offset) in [(&first, &self.first_in, 0), (&rest, &self.rest_in, 1)] {
            rvq::encode(
                rec,
                books,
                books.levels,
                Frames {
                    view: input.view(),
                    layout: io,
                    frames: 1,
                },
                CodesView {
                    view: self.codes.view(),
                    layout: codes_at(offset),
                },
                EncodeScratch {
                    residual: self.residual.view(),
                    parts: self.parts.view(),
                },
            )?;
        }
        Ok(())
    }

    fn output(&self) -> &GpuBuffer {
        &self.codes
    }

    fn reset(&mut self) {
        self.proj_first.reset();
        self.proj_rest.reset();
    }
}

/// A frame's `n_q` codes (u32) → its quantized latent `[d]`.
pub struct RvqDecoder {
    books: SplitCodebooks,
    q_first: GpuBuffer,
    q_rest: GpuBuffer,
    out_first: ConvLayer,
    out_rest: ConvLayer,
    quantized: GpuBuffer,
}

impl Streaming for RvqDecoder {
    fn record(&mut self, rec: &mut Recorder, input: &GpuBuffer) -> crate::Result<()> {
        let (first, rest, io) = self.books.views();
        for (books, output, offset) in [(&first, &self.q_first, 0), (&rest, &self.q_rest, 1)] {
            rvq::decode(
                rec,
                books,
                books.levels,
                CodesView {
                    view: input.view(),
                    layout: codes_at(offset),
                },
                Frames {
                    view: output.view(),
                    layout: io,
                    frames: 1,
                },
            )?;
        }
        let y = self.quantized.view();
        self.out_first
            .run(rec, self.q_first.view(), y, ConvRun::PLAIN)?;
        self.out_rest
            .run(rec, self.q_rest.view(), y, ConvRun::ACCUMULATE)
    }

    fn output(&self) -> &GpuBuffer {
        &self.quantized
    }

    fn reset(&mut self) {
        self.out_first.reset();
        self.out_rest.reset();
    }
}
