//! Embedding gather and sum over token streams (`shaders/embed.wgsl`; Moshi's input embedding,
//! spec §2.3), every table read in the format its checkpoint stores it in.
//!
//! `out[d] (= or +=) Σ_s table_s[id_s − stream_s.first_id, d]` with `id_s = tokens[stream_s.token]`,
//! read on the GPU (ids come from the sampler and are never read back). An id outside
//! `[first_id, first_id + rows)` — in particular the "zero" token `0xFFFFFFFF` (−1) — contributes a
//! zero vector.
//!
//! Layout: the bound `table` view holds table pieces (rows `first_id .. first_id + rows` of one
//! table) at word offsets [`Stream::base`] (multiples of 64 words), each in its own format
//! ([`crate::weights::table_piece`]: f32, bf16, ggml Q8_0, MLX affine 4/8-bit),
//! so tables of mixed formats share one buffer and one launch. Each element is dequantized exactly
//! in f32 (`d·q`, `s·q + β`: the values the reference tools compute, bit for bit).
//! `tokens` is a u32 array; `out` is f32 `[dim]`. Tables that live in different buffers (or a
//! table too big for one binding, split by rows with `first_id`) are summed by one call per buffer
//! with `accumulate = true` after the first.
//!
//! Dispatch: workgroups of 256 invocations = 16 stream slots × 16 lanes of 4 elements; slot j
//! gathers the rows of streams j and j + 16 (added in that order), then a fixed shared-memory tree
//! sums the slots; grid `[ceil(dim / 64), 1, 1]`. At most [`MAX_STREAMS_PER_LAUNCH`] streams go into one launch;
//! [`embed_sum`] splits longer lists into several accumulating launches.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Binding, GpuError, GpuResult, Kernel, Recorder, Variant, View};
use crate::weights::{gather_reads, table_bytes, WeightFormat, TABLE_ALIGN_WORDS};

const SRC: &str = include_str!("../../shaders/embed.wgsl");
/// Invocations per workgroup (injected into the WGSL as `WG`).
pub const WG: u32 = 256;
/// Lanes per stream slot (injected as `LANES`); `WG / LANES` stream slots.
const LANES: u32 = 16;
/// Table elements handled by one workgroup (`LANES` lanes × 4).
pub const ELEMENTS_PER_GROUP: u32 = LANES * 4;
// The scale stream starts at the next `TABLE_ALIGN_WORDS` boundary after the data
// (weights::table; injected as `ALIGN_WORDS`).
const _: () = assert!(TABLE_ALIGN_WORDS.is_power_of_two());
// A slot takes at most two streams (s and s + slots) and the WGSL's `rel_ids` holds 2 · slots.
const _: () = assert!(MAX_STREAMS_PER_LAUNCH as u32 <= 2 * (WG / LANES));

/// Streams one launch can sum (the two-slot parameter block holds 31 stream descriptors): all 17
/// of Moshi's input streams (with a condition row, 18) in one launch.
pub const MAX_STREAMS_PER_LAUNCH: usize = 31;
/// Token indices must fit the descriptor's low 24 bits.
pub const MAX_TOKEN_INDEX: u32 = (1 << 24) - 1;

static EMBED_SUM: Kernel = Kernel {
    name: "embed_sum",
    source: SRC,
    entry: "embed_sum",
    bindings: &[Binding::Read, Binding::Read, Binding::ReadWrite],
    defines: &[],
    consts: &[
        ("WG", WG),
        ("LANES", LANES),
        ("ALIGN_WORDS", TABLE_ALIGN_WORDS as u32),
    ],
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// The kernel variants this module launches (for `tests/reflect.rs`).
pub fn variants(_device: &[&str]) -> Vec<(&'static Kernel, Variant)> {
    vec![(&EMBED_SUM, Variant::none())]
}

/// The shader's format code (`kind | group shift << 4`) of a table format the gather reads
/// (checked by the caller with `gather_reads`).
pub(crate) fn format_code(format: WeightFormat) -> u32 {
    match format {
        WeightFormat::F32 | WeightFormat::Int8Row => 0,
        WeightFormat::Bf16 => 1,
        WeightFormat::Q8_0 => 2,
        WeightFormat::Affine { bits, group } => {
            (if bits == 4 { 3 } else { 4 }) | (group / 32).trailing_zeros() << 4
        }
    }
}

/// One token stream: which token it reads and where its table piece lives in the bound buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// Element index of this stream's token id in the `tokens` view.
    pub token: u32,
    /// Format of the table piece.
    pub format: WeightFormat,
    /// Word offset of the piece in the table view (a multiple of 64).
    pub base: u32,
    /// First id held in this piece (0 unless a table is split by rows over several buffers).
    pub first_id: u32,
    /// Ids `first_id .. first_id + rows` are in this piece; others contribute zero.
    pub rows: u32,
}

impl Stream {
    /// A whole table of `rows` rows in `format` at word `base`, reading `tokens[token]`.
    pub fn new(token: u32, format: WeightFormat, base: u32, rows: u32) -> Self {
        Self {
            token,
            format,
            base,
            first_id: 0,
            rows,
        }
    }
}

crate::params_struct! {
    #[derive(Clone, Copy, Pod, Zeroable)]
    struct Params {
        dim: u32,
        n_streams: u32,
        flags: u32,
        _pad: u32,
        streams: [[u32; 4]; MAX_STREAMS_PER_LAUNCH],
    }
}
const _: () = assert!(std::mem::size_of::<Params>() == 512);

/// One bound table buffer holding pieces of width `dim` (see [`Stream`]).
#[derive(Debug, Clone, Copy)]
pub struct EmbedTable<'a> {
    pub view: View<'a>,
    /// Elements per row (the embedding dimension).
    pub dim: u32,
}

/// `out[d] (= or += when accumulate) Σ_s table_s[tokens[s.token] − s.first_id, d]` for
/// `d < table.dim`.
///
/// Streams are summed in f32 (a fixed tree order). With no streams and `accumulate = false`, `out`
/// is zeroed. More than [`MAX_STREAMS_PER_LAUNCH`] streams take several launches.
pub fn embed_sum(
    rec: &mut Recorder,
    table: &EmbedTable,
    tokens: View,
    streams: &[Stream],
    out: View,
    accumulate: bool,
) -> GpuResult<()> {
    let EmbedTable { view: table, dim } = *table;
    let bad = |message: String| GpuError::Launch {
        kernel: EMBED_SUM.name,
        message,
    };
    if dim == 0 {
        return Err(bad("dim is 0".into()));
    }
    if out.size < dim as u64 * 4 {
        return Err(bad(format!(
            "out holds {} bytes, dim {dim} needs {}",
            out.size,
            dim as u64 * 4
        )));
    }
    for (i, s) in streams.iter().enumerate() {
        if !gather_reads(s.format, dim) {
            return Err(bad(format!(
                "stream {i}: {} tables of width {dim} cannot be gathered (f32, bf16, Q8_0 with width a multiple of 32, MLX 4/8-bit with group 32/64 dividing the width); dequantize them to f32 at load",
                s.format.name()
            )));
        }
        if !(s.base as u64).is_multiple_of(TABLE_ALIGN_WORDS) {
            return Err(bad(format!(
                "stream {i}: base word {} is not a multiple of {TABLE_ALIGN_WORDS}",
                s.base
            )));
        }
        let end = 4 * s.base as u64 + table_bytes(s.format, s.rows, dim);
        if end > table.size {
            return Err(bad(format!(
                "stream {i}: {} rows of {dim} {} elements at word {} end at byte {end}, past the table view ({} bytes)",
                s.rows,
                s.format.name(),
                s.base,
                table.size
            )));
        }
        if s.rows as u64 * dim as u64 + 32 > u32::MAX as u64 {
            return Err(bad(format!(
                "stream {i}: {} rows of width {dim} are too many for one piece (split the table by rows)",
                s.rows
            )));
        }
        if s.token > MAX_TOKEN_INDEX || (s.token as u64 + 1) * 4 > tokens.size {
            return Err(bad(format!(
                "stream {i}: token index {} is outside the tokens view ({} bytes)",
                s.token, tokens.size
            )));
        }
        if s.first_id as u64 + s.rows as u64 > i32::MAX as u64 {
            return Err(bad(format!(
                "stream {i}: ids {}..+{} reach the negative (zero-token) range",
                s.first_id, s.rows
            )));
        }
    }
    let max_groups = rec.ctx().caps().max_workgroups_per_dimension;
    let groups = dim.div_ceil(ELEMENTS_PER_GROUP);
    if groups > max_groups {
        return Err(bad(format!(
            "dim {dim} needs more than {max_groups} workgroups"
        )));
    }
    let mut first = true;
    let chunks: Vec<&[Stream]> = if streams.is_empty() {
        vec![&[]]
    } else {
        streams.chunks(MAX_STREAMS_PER_LAUNCH).collect()
    };
    for chunk in chunks {
        let mut p = Params {
            dim,
            n_streams: chunk.len() as u32,
            flags: (accumulate || !first) as u32,
            _pad: 0,
            streams: [[0; 4]; MAX_STREAMS_PER_LAUNCH],
        };
        for (d, s) in p.streams.iter_mut().zip(chunk) {
            *d = [
                s.token | format_code(s.format) << 24,
                s.first_id,
                s.rows,
                s.base,
            ];
        }
        // For profiles: one row of each stream's table (and its token), not the whole tables.
        rec.note_reads(
            chunk
                .iter()
                .map(|s| table_bytes(s.format, 1, dim) + 4)
                .sum(),
        );
        rec.launch(
            &EMBED_SUM,
            &Variant::none(),
            &[table, tokens, out],
            &p,
            [groups, 1, 1],
        )?;
        first = false;
    }
    Ok(())
}

/// Plain Rust reference for the tests.
pub mod reference {
    use super::Stream;

    /// `init + Σ_s table_s[tokens[s.token] − s.first_id]` in f64 (init zero when `None`), with
    /// `tables[i]` the f32 values (`[rows, dim]`, the CPU's dequantization) of stream `i`'s piece.
    pub fn embed_sum(
        tables: &[&[f32]],
        dim: usize,
        tokens: &[u32],
        streams: &[Stream],
        init: Option<&[f32]>,
    ) -> Vec<f32> {
        let mut acc: Vec<f64> = match init {
            Some(v) => v[..dim].iter().map(|&x| x as f64).collect(),
            None => vec![0.0; dim],
        };
        for (s, t) in streams.iter().zip(tables) {
            let id = tokens[s.token as usize];
            if id < s.first_id || id - s.first_id >= s.rows {
                continue;
            }
            let row = (id - s.first_id) as usize;
            for (d, a) in acc.iter_mut().enumerate() {
                *a += t[row * dim + d] as f64;
            }
        }
        acc.into_iter().map(|x| x as f32).collect()
    }
}
