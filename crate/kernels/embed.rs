//! Embedding gather and sum over token streams (`shaders/embed.wgsl`; Moshi's input embedding,
//! spec §2.3).
//!
//! `out[d] (= or +=) Σ_s table[stream_s.row_offset + (id_s − stream_s.first_id), d]` with
//! `id_s = tokens[stream_s.token]`, read on the GPU (ids come from the sampler and are never read
//! back). An id outside `[first_id, first_id + rows)` — in particular the "zero" token
//! `0xFFFFFFFF` (−1) — contributes a zero vector.
//!
//! Layouts: `table` is `[rows_total, dim]` row-major holding several tables concatenated along
//! rows, in f32 or bf16 (u32 words holding two bf16, element `2w` in the low half: a plain
//! little-endian bf16 array); `tokens` is a u32 array; `out` is f32 `[dim]`.
//! Tables that live in different buffers (or one table too big for one binding, split by rows with
//! `first_id`) are summed by one call per buffer ([`EmbedTable`]) with `accumulate = true` after the first.
//!
//! Dispatch: workgroups of 256 invocations = 16 stream slots × 16 table words (a word is one f32
//! or two bf16), so that every row of a launch is loaded in parallel, then summed by a fixed
//! shared-memory tree; grid `[ceil(words / 16), 1, 1]` with `words = dim` (f32) or `dim / 2`
//! (bf16). At most [`MAX_STREAMS_PER_LAUNCH`] streams go into one launch; [`embed_sum`] splits
//! longer lists into several accumulating launches.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Binding, GpuError, GpuResult, Kernel, Recorder, Variant, View};

const SRC: &str = include_str!("../../shaders/embed.wgsl");
/// Invocations per workgroup (injected into the WGSL as `WG`).
pub const WG: u32 = 256;
/// Table words handled by one workgroup (injected as `WORDS`); `WG / WORDS` stream slots.
pub const WORDS_PER_GROUP: u32 = 16;

/// Streams one launch can sum (the parameter block holds 15 stream descriptors).
pub const MAX_STREAMS_PER_LAUNCH: usize = 15;
// The slots are summed by a halving tree, and every stream needs a slot.
const _: () =
    assert!((WG / WORDS_PER_GROUP).is_power_of_two() && WG.is_multiple_of(WORDS_PER_GROUP));
const _: () = assert!(MAX_STREAMS_PER_LAUNCH as u32 <= WG / WORDS_PER_GROUP);

static EMBED_SUM: Kernel = Kernel {
    name: "embed_sum",
    source: SRC,
    entry: "embed_sum",
    bindings: &[Binding::Read, Binding::Read, Binding::ReadWrite],
    defines: &[],
    consts: &[("WG", WG), ("WORDS", WORDS_PER_GROUP)],
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// The kernel variants this module launches (for `tests/reflect.rs`).
pub fn variants(_device: &[&str]) -> Vec<(&'static Kernel, Variant)> {
    vec![(&EMBED_SUM, Variant::none())]
}

/// Element format of an embedding table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    F32,
    /// bf16, packed two per u32 word (low half first); `dim` must be even.
    Bf16,
}

impl TableFormat {
    pub fn bytes_per_element(self) -> u64 {
        match self {
            TableFormat::F32 => 4,
            TableFormat::Bf16 => 2,
        }
    }
}

/// One token stream: which token it reads and where its table lives in the bound table buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// Element index of this stream's token id in the `tokens` view.
    pub token: u32,
    /// Row of the table buffer that holds id `first_id`.
    pub row_offset: u32,
    /// First id held in this buffer (0 unless a table is split by rows over several buffers).
    pub first_id: u32,
    /// Ids `first_id .. first_id + rows` are in this buffer; others contribute zero.
    pub rows: u32,
}

impl Stream {
    /// A whole table of `rows` rows starting at row `row_offset`, reading `tokens[token]`.
    pub fn new(token: u32, row_offset: u32, rows: u32) -> Self {
        Self {
            token,
            row_offset,
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
const _: () = assert!(std::mem::size_of::<Params>() == 256);

/// One bound table buffer: `[rows, dim]` row-major elements in `format` (several tables may be
/// concatenated along rows; each [`Stream`] says where its own starts).
#[derive(Debug, Clone, Copy)]
pub struct EmbedTable<'a> {
    pub view: View<'a>,
    pub format: TableFormat,
    /// Elements per row (the embedding dimension).
    pub dim: u32,
}

/// `out[d] (= or += when accumulate) Σ_s table[row_s(tokens[s.token]), d]` for `d < table.dim`.
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
    let EmbedTable {
        view: table,
        format,
        dim,
    } = *table;
    let bad = |message: String| GpuError::Launch {
        kernel: EMBED_SUM.name,
        message,
    };
    if dim == 0 {
        return Err(bad("dim is 0".into()));
    }
    if format == TableFormat::Bf16 && !dim.is_multiple_of(2) {
        return Err(bad(format!("bf16 tables need an even dim, got {dim}")));
    }
    if out.size < dim as u64 * 4 {
        return Err(bad(format!(
            "out holds {} bytes, dim {dim} needs {}",
            out.size,
            dim as u64 * 4
        )));
    }
    let row_bytes = dim as u64 * format.bytes_per_element();
    for (i, s) in streams.iter().enumerate() {
        let end_row = s.row_offset as u64 + s.rows as u64;
        if end_row * row_bytes > table.size {
            return Err(bad(format!(
                "stream {i}: rows {}..{end_row} of {dim} {format:?} elements exceed the table view ({} bytes)",
                s.row_offset, table.size
            )));
        }
        if (s.token as u64 + 1) * 4 > tokens.size {
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
    let words = match format {
        TableFormat::F32 => dim,
        TableFormat::Bf16 => dim / 2,
    };
    let max_groups = rec.ctx().caps().max_workgroups_per_dimension;
    if words.div_ceil(WORDS_PER_GROUP) > max_groups {
        return Err(bad(format!(
            "dim {dim} needs more than {max_groups} workgroups"
        )));
    }
    let groups = [words.div_ceil(WORDS_PER_GROUP), 1, 1];
    let bf16_flag = if format == TableFormat::Bf16 { 2 } else { 0 };
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
            flags: bf16_flag | (accumulate || !first) as u32,
            _pad: 0,
            streams: [[0; 4]; MAX_STREAMS_PER_LAUNCH],
        };
        for (d, s) in p.streams.iter_mut().zip(chunk) {
            *d = [s.token, s.row_offset, s.first_id, s.rows];
        }
        rec.launch(
            &EMBED_SUM,
            &Variant::none(),
            &[table, tokens, out],
            &p,
            groups,
        )?;
        first = false;
    }
    Ok(())
}

/// Plain Rust references for the tests.
pub mod reference {
    use super::Stream;

    /// An embedding table as the CPU sees it.
    #[derive(Clone, Copy)]
    pub enum Table<'a> {
        F32(&'a [f32]),
        /// Raw bf16 bit patterns.
        Bf16(&'a [u16]),
    }

    impl Table<'_> {
        pub fn get(&self, i: usize) -> f64 {
            match self {
                Table::F32(t) => t[i] as f64,
                Table::Bf16(t) => bf16_to_f32(t[i]) as f64,
            }
        }
    }

    pub fn bf16_to_f32(b: u16) -> f32 {
        f32::from_bits((b as u32) << 16)
    }

    /// bf16 bit patterns packed two per u32 word (element `2w` in the low half), as the GPU reads them.
    pub fn pack_bf16(v: &[u16]) -> Vec<u32> {
        v.chunks(2)
            .map(|c| c[0] as u32 | (*c.get(1).unwrap_or(&0) as u32) << 16)
            .collect()
    }

    /// `init + Σ_s table[row_s(tokens[s.token])]` in f64 (init zero when `None`).
    pub fn embed_sum(
        table: Table,
        dim: usize,
        tokens: &[u32],
        streams: &[Stream],
        init: Option<&[f32]>,
    ) -> Vec<f32> {
        let mut acc: Vec<f64> = match init {
            Some(v) => v[..dim].iter().map(|&x| x as f64).collect(),
            None => vec![0.0; dim],
        };
        for s in streams {
            let id = tokens[s.token as usize];
            if id < s.first_id || id - s.first_id >= s.rows {
                continue;
            }
            let row = (s.row_offset + (id - s.first_id)) as usize;
            for (d, a) in acc.iter_mut().enumerate() {
                *a += table.get(row * dim + d);
            }
        }
        acc.into_iter().map(|x| x as f32).collect()
    }
}
