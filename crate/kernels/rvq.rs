//! Residual vector quantization for Mimi (`shaders/rvq.wgsl`, spec §1.8).
//!
//! Encode, for each frame `t` and each level `l` in order:
//! `code(l, t) = argmin_j ||r_t − E_l[j]||²` (ties → lowest `j`), then `r_t ← r_t − E_l[code]`,
//! starting from `r_t = x_t`. Decode: `out_t = Σ_l E_l[code(l, t)]`.
//!
//! Layouts: codebooks `[levels, bins, dim]` f32 row-major (`dim % 4 == 0`, `dim ≤ 1024`);
//! `x` / `out` element `(t, d)` at `offset + t·t_stride + d·d_stride` ([`IoLayout`]: `[T, dim]`
//! or Mimi's `[dim, T]`); codes u32, `(l, t)` at `offset + l·level_stride + t·t_stride`
//! ([`CodesLayout`], `[levels, T]` by default); scratch `residual` f32 `[2, T, dim]` (ping-pong;
//! after the encode its first `[T, dim]` holds the final residual `x − Σ_l E_l[code_l]`) and
//! `parts` `[2, T, ceil(bins / 16)]` pairs of u32 (per group of 16 rows: smallest distance, row).
//!
//! Streams ([`RvqStream`]): one launch may run two independent RVQs (Mimi's semantic and
//! acoustic halves) over one codebook buffer, grid z = stream: each stream has its own first
//! codebook level (`book`), number of levels, input/output offset and codes offset, and its own
//! scratch rows (`s·T + t`). [`encode_streams`] records `max(levels) + 1` launches for both;
//! [`decode_streams`] one. [`encode`] and [`decode`] are the one-stream case.
//!
//! Dispatch (encode, `levels + 1` launches): `rvq_level` for each level, workgroups of 256 =
//! 16 codebook rows × 16 lanes, grid `[ceil(bins / 16), T, streams]`: every workgroup first
//! finishes the previous level (argmin over its `ceil(bins / 16)` group minima,
//! `r ← r − E[code]`; workgroup 0 stores the code and the residual), then computes its 16 squared
//! distances and their minimum (a stream whose levels are done returns at once);
//! `rvq_finish`, one workgroup of 256 per frame and stream, finishes each stream's last level. Redoing the small
//! argmin in every workgroup replaces a separate argmin launch per level (2·levels launches).
//!
//! Why direct distances `Σ_d (r_d − E_d)²` rather than `||E||² − 2 r·E` with precomputed norms
//! (what the Rust reference implementation does): the expansion cancels catastrophically when `r`
//! is close to a codebook row and its rounding depends on the norm table, so near ties can
//! resolve differently from the f64 reference; the direct form costs the same here (the kernel is
//! bound by reading the codebook), is accurate to a few ulps of the distance, and every row is
//! reduced by the same instruction sequence in the same order, so duplicate rows give
//! bit-identical distances, and `(distance, row)` is compared lexicographically in every
//! reduction, so exact ties return the lowest row.
//!
//! Decode: `rvq_decode`, one invocation per `(stream, t, d)`, workgroups of 256, grid
//! `[ceil(dim / 256), T, streams]`; levels summed in order in f32; a code `≥ bins` (e.g.
//! `0xFFFFFFFF`) adds zero.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Binding, GpuError, GpuResult, Kernel, Recorder, Variant, View};

const SRC: &str = include_str!("../../shaders/rvq.wgsl");
/// Invocations per workgroup of every RVQ kernel (injected into the WGSL as `WG`).
pub const WG: u32 = 256;
/// Codebook rows handled by one `rvq_level` workgroup, 16 lanes each (injected as `ROWS`; the
/// WGSL's reductions are written for 16 × 16 and assert it).
pub const BINS_PER_GROUP: u32 = 16;
/// Largest codebook dimension (the residual is staged in `MAX_DIM / 4` vec4 of shared memory;
/// injected as `MAX_DIM`).
pub const MAX_DIM: u32 = 1024;
const CONSTS: &[(&str, u32)] = &[("WG", WG), ("ROWS", BINS_PER_GROUP), ("MAX_DIM", MAX_DIM)];

const ENCODE_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::ReadWrite,
];
static LEVEL: Kernel = Kernel {
    name: "rvq_level",
    source: SRC,
    entry: "rvq_level",
    bindings: ENCODE_BINDINGS,
    defines: &[],
    consts: CONSTS,
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};
static FINISH: Kernel = Kernel {
    name: "rvq_finish",
    source: SRC,
    entry: "rvq_finish",
    bindings: ENCODE_BINDINGS,
    defines: &[],
    consts: CONSTS,
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};
static DECODE: Kernel = Kernel {
    name: "rvq_decode",
    source: SRC,
    entry: "rvq_decode",
    bindings: &[Binding::Read, Binding::Read, Binding::ReadWrite],
    defines: &["DECODE"],
    consts: CONSTS,
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// The kernel variants this module launches (for `tests/reflect.rs`).
pub fn variants(_device: &[&str]) -> Vec<(&'static Kernel, Variant)> {
    [&LEVEL, &FINISH, &DECODE]
        .into_iter()
        .map(|k| (k, Variant::none()))
        .collect()
}

crate::params_struct! {
    #[derive(Clone, Copy, Pod, Zeroable, Default)]
    struct Params {
        t: u32,
        dc: u32,
        bins: u32,
        level: u32,
        levels: u32,
        io_offset: u32,
        io_t_stride: u32,
        io_d_stride: u32,
        code_offset: u32,
        code_l_stride: u32,
        code_t_stride: u32,
        book: u32,
        levels1: u32,
        io_offset1: u32,
        code_offset1: u32,
        book1: u32,
        _pad: [u32; 3],
    }
}

/// Streams one launch runs at most.
pub const MAX_STREAMS: usize = 2;

/// One RVQ of a launch: the codebook levels `book .. book + levels`, its input (encode) or output
/// (decode) starting `io_offset` elements after the frames' layout offset, and its codes
/// starting `code_offset` elements after the codes' layout offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RvqStream {
    pub book: u32,
    pub levels: u32,
    pub io_offset: u32,
    pub code_offset: u32,
}

impl RvqStream {
    /// The first `levels` codebooks, at the layouts' offsets.
    pub fn levels(levels: u32) -> Self {
        Self {
            book: 0,
            levels,
            io_offset: 0,
            code_offset: 0,
        }
    }
}

/// Where element `(t, d)` of an encoder input / decoder output lives: `offset + t·t_stride + d·d_stride`
/// (in f32 elements of the bound view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoLayout {
    pub offset: u32,
    pub t_stride: u32,
    pub d_stride: u32,
}

impl IoLayout {
    /// `[T, dim]`, frames outermost.
    pub fn time_major(dim: u32) -> Self {
        Self {
            offset: 0,
            t_stride: dim,
            d_stride: 1,
        }
    }
    /// `[dim, T]`, Mimi's conv layout.
    pub fn channel_major(t: u32) -> Self {
        Self {
            offset: 0,
            t_stride: 1,
            d_stride: t,
        }
    }
    fn last(&self, t: u32, dim: u32) -> u64 {
        self.offset as u64
            + (t as u64 - 1) * self.t_stride as u64
            + (dim as u64 - 1) * self.d_stride as u64
    }
}

/// Where code `(l, t)` lives: `offset + l·level_stride + t·t_stride` (u32 elements of the view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodesLayout {
    pub offset: u32,
    pub level_stride: u32,
    pub t_stride: u32,
}

impl CodesLayout {
    /// `[levels, T]` starting at element `offset`.
    pub fn levels_major(t: u32) -> Self {
        Self {
            offset: 0,
            level_stride: t,
            t_stride: 1,
        }
    }
    /// The same layout starting `levels` levels further (to place a second RVQ's codes after the
    /// first's, as Mimi's split RVQ does).
    pub fn skip_levels(self, levels: u32) -> Self {
        Self {
            offset: self.offset + levels * self.level_stride,
            ..self
        }
    }
    fn last(&self, levels: u32, t: u32) -> u64 {
        self.offset as u64
            + (levels as u64 - 1) * self.level_stride as u64
            + (t as u64 - 1) * self.t_stride as u64
    }
}

/// A stack of codebooks `[levels, bins, dim]` (f32) in one view.
#[derive(Debug, Clone, Copy)]
pub struct Codebooks<'a> {
    pub view: View<'a>,
    pub levels: u32,
    pub bins: u32,
    pub dim: u32,
}

/// Bytes of the `residual` scratch (`[2, t, dim]` f32) for `t` frames (`streams · frames` when
/// several streams share a launch).
pub fn residual_bytes(t: u32, dim: u32) -> u64 {
    2 * t as u64 * dim as u64 * 4
}

/// Bytes of the `parts` scratch (`[2, t, ceil(bins / 16)]` u32 pairs) for `t` frames
/// (`streams · frames` when several streams share a launch).
pub fn parts_bytes(t: u32, bins: u32) -> u64 {
    2 * t as u64 * bins.div_ceil(BINS_PER_GROUP) as u64 * 8
}

fn check_codebooks(
    kernel: &'static str,
    cb: &Codebooks,
    levels: u32,
    t: u32,
    max_groups: u32,
) -> GpuResult<()> {
    let bad = |message: String| GpuError::Launch { kernel, message };
    if cb.dim == 0 || !cb.dim.is_multiple_of(4) || cb.dim > MAX_DIM {
        return Err(bad(format!(
            "codebook dim {} must be a positive multiple of 4, at most {MAX_DIM}",
            cb.dim
        )));
    }
    if cb.bins == 0 || levels == 0 || t == 0 {
        return Err(bad(format!(
            "empty shape: bins {}, levels {levels}, frames {t}",
            cb.bins
        )));
    }
    if levels > cb.levels {
        return Err(bad(format!(
            "{levels} levels asked, the codebooks have {}",
            cb.levels
        )));
    }
    let need = cb.levels as u64 * cb.bins as u64 * cb.dim as u64 * 4;
    if cb.view.size < need {
        return Err(bad(format!(
            "codebook view holds {} bytes, [{}, {}, {}] f32 needs {need}",
            cb.view.size, cb.levels, cb.bins, cb.dim
        )));
    }
    if t > max_groups {
        return Err(bad(format!("{t} frames exceed {max_groups} workgroups")));
    }
    Ok(())
}

/// `frames` frames of `dim` f32 in `view`, element `(t, d)` where `layout` says: an encoder
/// input or a decoder output.
#[derive(Debug, Clone, Copy)]
pub struct Frames<'a> {
    pub view: View<'a>,
    pub layout: IoLayout,
    pub frames: u32,
}

/// u32 codes `(level, t)` in `view` where `layout` says.
#[derive(Debug, Clone, Copy)]
pub struct CodesView<'a> {
    pub view: View<'a>,
    pub layout: CodesLayout,
}

/// The encoder's scratch buffers: `residual` of at least [`residual_bytes`] and `parts` of at
/// least [`parts_bytes`].
#[derive(Debug, Clone, Copy)]
pub struct EncodeScratch<'a> {
    pub residual: View<'a>,
    pub parts: View<'a>,
}

/// Encode the `x.frames` frames of `x` with the first `levels` codebooks: writes
/// `levels × frames` codes and leaves the final residual `x − Σ_l E_l[code_l]` in the first
/// `frames · dim` floats of `scratch.residual`.
///
/// `x` and the codebooks may not share a buffer with the scratch or with `codes` (a buffer bound
/// read-only and writable in one launch is invalid). Records `levels + 1` launches.
pub fn encode(
    rec: &mut Recorder,
    codebooks: &Codebooks,
    levels: u32,
    x: Frames,
    codes: CodesView,
    scratch: EncodeScratch,
) -> GpuResult<()> {
    encode_streams(
        rec,
        codebooks,
        &[RvqStream::levels(levels)],
        x,
        codes,
        scratch,
    )
}

/// Element ranges `[first, last]` of two streams that one launch writes must not meet.
fn check_disjoint(kernel: &'static str, what: &str, ranges: &[(u64, u64)]) -> GpuResult<()> {
    if let [(a0, a1), (b0, b1)] = ranges[..] {
        if a0 <= b1 && b0 <= a1 {
            return Err(GpuError::Launch {
                kernel,
                message: format!(
                    "the streams' {what} overlap (elements {a0}..={a1} and {b0}..={b1})"
                ),
            });
        }
    }
    Ok(())
}

/// Check the streams against the codebooks, and each stream's frames and codes against their
/// views (the codes must not overlap; the frames neither when `frames_written`, a decode's
/// output); returns the largest `levels`.
fn check_streams(
    kernel: &'static str,
    rec: &Recorder,
    codebooks: &Codebooks,
    streams: &[RvqStream],
    (frames, frames_written): (&Frames, bool),
    codes: &CodesView,
) -> GpuResult<u32> {
    let bad = |message: String| GpuError::Launch { kernel, message };
    if streams.is_empty() || streams.len() > MAX_STREAMS {
        return Err(bad(format!(
            "{} streams given, a launch runs 1 to {MAX_STREAMS}",
            streams.len()
        )));
    }
    let t = frames.frames;
    let max_groups = rec.ctx().caps().max_workgroups_per_dimension;
    let (mut code_ranges, mut io_ranges) = (Vec::new(), Vec::new());
    for (i, st) in streams.iter().enumerate() {
        if st.levels == 0 {
            return Err(bad(format!("stream {i} has no levels")));
        }
        let end = st.book as u64 + st.levels as u64;
        if end > codebooks.levels as u64 {
            return Err(bad(format!(
                "stream {i} uses codebook levels {}..{end}, the codebooks have {}",
                st.book, codebooks.levels
            )));
        }
        check_codebooks(kernel, codebooks, st.levels, t, max_groups)?;
        let io = IoLayout {
            offset: frames.layout.offset + st.io_offset,
            ..frames.layout
        };
        io_ranges.push((io.offset as u64, io.last(t, codebooks.dim)));
        if (io.last(t, codebooks.dim) + 1) * 4 > frames.view.size {
            return Err(bad(format!(
                "frames view ({} bytes) is too small for stream {i}: {t} frames of {} with {io:?}",
                frames.view.size, codebooks.dim
            )));
        }
        let cl = CodesLayout {
            offset: codes.layout.offset + st.code_offset,
            ..codes.layout
        };
        let last = cl.last(st.levels, t);
        if (last + 1) * 4 > codes.view.size {
            return Err(bad(format!(
                "codes view ({} bytes) is too small for stream {i}: {} levels × {t} frames with {cl:?}",
                codes.view.size, st.levels
            )));
        }
        code_ranges.push((cl.offset as u64, last));
    }
    check_disjoint(kernel, "codes", &code_ranges)?;
    if frames_written {
        check_disjoint(kernel, "outputs", &io_ranges)?;
    }
    Ok(streams.iter().map(|s| s.levels).max().unwrap_or(0))
}

/// Params for `streams` (one or two) over `frames` and `codes` (the layouts' strides; each
/// stream's offsets added to the layouts' offsets).
fn stream_params(
    codebooks: &Codebooks,
    streams: &[RvqStream],
    frames: &Frames,
    codes: &CodesView,
) -> Params {
    let (s0, s1) = (streams[0], streams.get(1).copied());
    let (io, cl) = (frames.layout, codes.layout);
    Params {
        t: frames.frames,
        dc: codebooks.dim,
        bins: codebooks.bins,
        level: 0,
        levels: s0.levels,
        io_offset: io.offset + s0.io_offset,
        io_t_stride: io.t_stride,
        io_d_stride: io.d_stride,
        code_offset: cl.offset + s0.code_offset,
        code_l_stride: cl.level_stride,
        code_t_stride: cl.t_stride,
        book: s0.book,
        levels1: s1.map_or(0, |s| s.levels),
        io_offset1: s1.map_or(0, |s| io.offset + s.io_offset),
        code_offset1: s1.map_or(0, |s| cl.offset + s.code_offset),
        book1: s1.map_or(0, |s| s.book),
        _pad: [0; 3],
    }
}

/// Encode one or two independent RVQs ([`RvqStream`]) over one codebook buffer in
/// `max(levels) + 1` launches: stream `s` quantizes the frames of `x` at its `io_offset` with its
/// codebooks `book ..`, writes its codes at its `code_offset` and leaves its final residual in
/// rows `s·frames ..` of `scratch.residual`, which must hold [`residual_bytes`] and
/// [`parts_bytes`] of `streams · frames` frames. Each stream's codes are those [`encode`] gives
/// it alone (same arithmetic, same tie rule); the streams' codes may not overlap.
pub fn encode_streams(
    rec: &mut Recorder,
    codebooks: &Codebooks,
    streams: &[RvqStream],
    x: Frames,
    codes: CodesView,
    scratch: EncodeScratch,
) -> GpuResult<()> {
    let bad = |message: String| GpuError::Launch {
        kernel: LEVEL.name,
        message,
    };
    let max_levels = check_streams(LEVEL.name, rec, codebooks, streams, (&x, false), &codes)?;
    let max_groups = rec.ctx().caps().max_workgroups_per_dimension;
    let (dim, bins, t) = (codebooks.dim, codebooks.bins, x.frames);
    let ns = streams.len() as u32;
    let EncodeScratch { residual, parts } = scratch;
    if residual.size < residual_bytes(ns * t, dim) || parts.size < parts_bytes(ns * t, bins) {
        return Err(bad(format!(
            "scratch too small for {ns} × {t} frames: residual {} of {} bytes, parts {} of {} bytes",
            residual.size,
            residual_bytes(ns * t, dim),
            parts.size,
            parts_bytes(ns * t, bins)
        )));
    }
    let groups = bins.div_ceil(BINS_PER_GROUP);
    if groups > max_groups {
        return Err(bad(format!(
            "{bins} bins need more than {max_groups} workgroups"
        )));
    }
    let mut p = stream_params(codebooks, streams, &x, &codes);
    let views = [x.view, codebooks.view, residual, parts, codes.view];
    let v = Variant::none();
    // For profiles: a level reads its own codebooks and the frames, not every level's codebook.
    let frame_bytes = t as u64 * dim as u64 * 4;
    for level in 0..max_levels {
        p.level = level;
        let active = streams.iter().filter(|s| s.levels > level).count() as u64;
        rec.note_reads(active * (bins as u64 * dim as u64 * 4 + frame_bytes));
        rec.launch(&LEVEL, &v, &views, &p, [groups, t, ns])?;
    }
    rec.note_reads(2 * ns as u64 * frame_bytes);
    rec.launch(&FINISH, &v, &views, &p, [t, 1, ns])
}

/// Decode: `out(t, d) = Σ_{l < levels} E_l[code(l, t), d]` for the `out.frames` frames. One
/// launch.
pub fn decode(
    rec: &mut Recorder,
    codebooks: &Codebooks,
    levels: u32,
    codes: CodesView,
    out: Frames,
) -> GpuResult<()> {
    decode_streams(rec, codebooks, &[RvqStream::levels(levels)], codes, out)
}

/// Decode one or two RVQs ([`RvqStream`]) in one launch: stream `s` writes
/// `Σ_{l < levels} E_{book + l}[code_s(l, t), d]` at its `io_offset` of `out`.
pub fn decode_streams(
    rec: &mut Recorder,
    codebooks: &Codebooks,
    streams: &[RvqStream],
    codes: CodesView,
    out: Frames,
) -> GpuResult<()> {
    check_streams(DECODE.name, rec, codebooks, streams, (&out, true), &codes)?;
    let (dim, t) = (codebooks.dim, out.frames);
    let p = stream_params(codebooks, streams, &out, &codes);
    // For profiles: one codebook row per level and frame, not the whole codebooks.
    let levels: u64 = streams.iter().map(|s| s.levels as u64).sum();
    rec.note_reads(levels * t as u64 * (dim as u64 * 4 + 4));
    rec.launch(
        &DECODE,
        &Variant::none(),
        &[codebooks.view, codes.view, out.view],
        &p,
        [dim.div_ceil(WG), t, streams.len() as u32],
    )
}

/// Plain Rust references for the tests (f64 arithmetic).
pub mod reference {
    /// Codes `[levels, t]` for `x` given as `[t, dim]`; codebooks `[≥ levels, bins, dim]`.
    /// Direct squared distances in f64, ties → lowest index, residual kept in f64.
    pub fn encode(
        x: &[f32],
        t: usize,
        dim: usize,
        codebooks: &[f32],
        bins: usize,
        levels: usize,
    ) -> Vec<u32> {
        let mut codes = vec![0u32; levels * t];
        for ti in 0..t {
            let mut r: Vec<f64> = x[ti * dim..(ti + 1) * dim]
                .iter()
                .map(|&v| v as f64)
                .collect();
            for l in 0..levels {
                let (best, _) = nearest(&r, &codebooks[l * bins * dim..(l + 1) * bins * dim], dim);
                codes[l * t + ti] = best as u32;
                let e = &codebooks[(l * bins + best) * dim..(l * bins + best + 1) * dim];
                for (rv, &ev) in r.iter_mut().zip(e) {
                    *rv -= ev as f64;
                }
            }
        }
        codes
    }

    /// (index, squared distance) of the row of `book` (`[bins, dim]`) nearest to `r`; lowest
    /// index on ties.
    pub fn nearest(r: &[f64], book: &[f32], dim: usize) -> (usize, f64) {
        let mut best = (0usize, f64::INFINITY);
        for (j, row) in book.chunks_exact(dim).enumerate() {
            let d: f64 = r
                .iter()
                .zip(row)
                .map(|(&a, &b)| (a - b as f64) * (a - b as f64))
                .sum();
            if d < best.1 {
                best = (j, d);
            }
        }
        best
    }

    /// `[t, dim]`: `Σ_l E_l[codes[l, t]]`; codes `≥ bins` add zero.
    pub fn decode(
        codes: &[u32],
        t: usize,
        dim: usize,
        codebooks: &[f32],
        bins: usize,
        levels: usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; t * dim];
        for ti in 0..t {
            for d in 0..dim {
                let mut acc = 0f64;
                for l in 0..levels {
                    let c = codes[l * t + ti] as usize;
                    if c < bins {
                        acc += codebooks[(l * bins + c) * dim + d] as f64;
                    }
                }
                out[ti * dim + d] = acc as f32;
            }
        }
        out
    }
}
