//! Mimi's split RVQ (spec §1.8) as two streaming parts sharing one set of codebooks: the
//! encoder projects the frame's latent and quantizes it into `n_q` codes (one semantic level
//! `rvq_first`, `n_q − 1` acoustic levels `rvq_rest`, both from the same latent); the decoder
//! looks the codes up, projects both sums back and adds them.
//!
//! Both halves run together, as the two streams of one RVQ launch ([`RvqStream`]) over one
//! codebook buffer `[n_q, bins, dim]` (level 0 semantic, levels 1.. acoustic): encode is one
//! input projection (the two weights stacked at load, output `[first; rest]`), `n_q − 1` level
//! launches (the semantic level runs beside acoustic level 0) and one finish; decode is one
//! gather of both sums into `[q_first; q_rest]` and one output projection (weights
//! `[W_first | W_rest]` joined at load, which adds the two projections in its reduction).

use crate::gpu::{BufferUsage, Context, GpuBuffer, Recorder};
use crate::kernels::conv::Conv1d;
use crate::kernels::rvq::{
    self, Codebooks, CodesLayout, CodesView, EncodeScratch, Frames, IoLayout, RvqStream,
};
use crate::nn::conv::{ConvLayer, ConvRun, Join};
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

/// The semantic and acoustic codebooks on the GPU in one buffer (a cheap shared handle, one copy
/// for both parts).
#[derive(Clone)]
struct SplitCodebooks {
    all: GpuBuffer,
    n_q: u32,
    bins: u32,
    dim: u32,
}

impl SplitCodebooks {
    /// `vq.layers.{l}._codebook` of `rvq_first` (1 level) then `rvq_rest` (`n_q − 1` levels):
    /// each codebook is `embedding_sum / max(cluster_usage, 1e-5)`.
    fn load(ctx: &Context, w: &Scope, q: &QuantizerConfig, n_q: u32) -> crate::Result<Self> {
        let (bins, dim) = (q.bins, q.dimension);
        let mut all = Vec::with_capacity(n_q as usize * bins * dim);
        for (rvq, levels) in [("rvq_first", 1), ("rvq_rest", n_q - 1)] {
            for l in 0..levels {
                let book = w.pp(rvq).pp("vq").pp("layers").pp(l).pp("_codebook");
                let sum = book.values("embedding_sum", &[bins, dim], 0.0)?;
                let usage = book.values("cluster_usage", &[bins], 1.0)?;
                for (j, row) in sum.chunks(dim).enumerate() {
                    let u = usage[j].max(1e-5);
                    all.extend(row.iter().map(|v| v / u));
                }
            }
        }
        Ok(Self {
            all: ctx.upload("rvq codebooks", &all)?,
            n_q,
            bins: bins as u32,
            dim: dim as u32,
        })
    }

    /// The codebooks, the two streams (semantic: level 0, its input/output at 0 and its code
    /// first; acoustic: levels 1.., at `dim` and codes 1..) and the `[1, dim]` layout of each.
    fn views(&self) -> (Codebooks<'_>, [RvqStream; 2], IoLayout) {
        let books = Codebooks {
            view: self.all.view(),
            levels: self.n_q,
            bins: self.bins,
            dim: self.dim,
        };
        let streams = [
            RvqStream::levels(1),
            RvqStream {
                book: 1,
                levels: self.n_q - 1,
                io_offset: self.dim,
                code_offset: 1,
            },
        ];
        (books, streams, IoLayout::time_major(self.dim))
    }
}

/// The quantizer's projections `{rvq_first, rvq_rest}.{which}` (1×1 convs, no bias) joined into
/// one conv.
fn projections(
    ctx: &Context,
    w: &Scope,
    which: &str,
    conv: Conv1d,
    join: Join,
) -> crate::Result<ConvLayer> {
    let parts = [w.pp("rvq_first").pp(which), w.pp("rvq_rest").pp(which)];
    ConvLayer::load_joined(ctx, &parts, conv, join, 1)
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
        proj: projections(
            ctx,
            w,
            "input_proj",
            Conv1d::new(d, 2 * qd, 1),
            Join::Outputs,
        )?,
        projected: fbuf(ctx, "rvq in", 2 * qd)?,
        books: SplitCodebooks::load(ctx, w, q, n_q)?,
        residual: ctx.create_buffer(
            "rvq residual",
            rvq::residual_bytes(2, qd),
            BufferUsage::Storage,
        )?,
        parts: ctx.create_buffer(
            "rvq parts",
            rvq::parts_bytes(2, q.bins as u32),
            BufferUsage::Storage,
        )?,
        codes: ctx.create_buffer("codes", n_q as u64 * 4, BufferUsage::Storage)?,
    };
    let decoder = RvqDecoder {
        books: encoder.books.clone(),
        q: fbuf(ctx, "q first, rest", 2 * qd)?,
        out: projections(
            ctx,
            w,
            "output_proj",
            Conv1d::new(2 * qd, d, 1),
            Join::Inputs,
        )?,
        quantized: fbuf(ctx, "quantized", d)?,
    };
    Ok((encoder, decoder))
}

/// The frame's latent `[d]` → its `n_q` codes (u32).
pub struct RvqEncoder {
    /// Both input projections: latent → `[first; rest]`.
    proj: ConvLayer,
    projected: GpuBuffer,
    books: SplitCodebooks,
    residual: GpuBuffer,
    parts: GpuBuffer,
    codes: GpuBuffer,
}

impl RvqEncoder {
    /// The projected latents the semantic and the acoustic RVQ quantize, `[first; rest]`
    /// (`[dimension]` each).
    pub fn projected(&self) -> &GpuBuffer {
        &self.projected
    }
}

impl Streaming for RvqEncoder {
    fn record(&mut self, rec: &mut Recorder, input: &GpuBuffer) -> crate::Result<()> {
        self.proj
            .run(rec, input.view(), self.projected.view(), ConvRun::PLAIN)?;
        let (books, streams, io) = self.books.views();
        rvq::encode_streams(
            rec,
            &books,
            &streams,
            Frames {
                view: self.projected.view(),
                layout: io,
                frames: 1,
            },
            CodesView {
                view: self.codes.view(),
                layout: codes_at(0),
            },
            EncodeScratch {
                residual: self.residual.view(),
                parts: self.parts.view(),
            },
        )?;
        Ok(())
    }

    fn output(&self) -> &GpuBuffer {
        &self.codes
    }

    fn reset(&mut self) {
        self.proj.reset();
    }
}

/// A frame's `n_q` codes (u32) → its quantized latent `[d]`.
pub struct RvqDecoder {
    books: SplitCodebooks,
    /// `[q_first; q_rest]`: the semantic and acoustic sums of codebook rows.
    q: GpuBuffer,
    /// Both output projections, summed: `[q_first; q_rest]` → latent.
    out: ConvLayer,
    quantized: GpuBuffer,
}

impl Streaming for RvqDecoder {
    fn record(&mut self, rec: &mut Recorder, input: &GpuBuffer) -> crate::Result<()> {
        let (books, streams, io) = self.books.views();
        rvq::decode_streams(
            rec,
            &books,
            &streams,
            CodesView {
                view: input.view(),
                layout: codes_at(0),
            },
            Frames {
                view: self.q.view(),
                layout: io,
                frames: 1,
            },
        )?;
        self.out
            .run(rec, self.q.view(), self.quantized.view(), ConvRun::PLAIN)
    }

    fn output(&self) -> &GpuBuffer {
        &self.quantized
    }

    fn reset(&mut self) {
        self.out.reset();
    }
}
