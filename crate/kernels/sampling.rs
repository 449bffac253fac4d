//! Greedy / temperature + top-k sampling on the GPU (`shaders/sampling.wgsl`, spec §3.3).
//!
//! One token per logits row is drawn and written into a u32 token buffer, which the next kernels
//! (e.g. [`super::embed::embed_sum`]) read directly: ids never visit the CPU.
//!
//! Semantics:
//! - `temperature <= 0`: greedy argmax, ties → lowest index.
//! - otherwise: a draw from `softmax(logits / τ)` restricted to the top-k ids (`top_k = 0` or
//!   `top_k ≥ n`: no truncation). The top-k set has exactly `min(k, n)` members: ties at the
//!   k-th largest value go to the lowest indices (so `top_k = 1` is greedy). The draw is the
//!   Gumbel-max / exponential race `argmax_i logit_i/τ − ln E_i`, `E_i = −ln U_i ~ Exp(1)`, with
//!   `U_i` from the counter-based hash `pcg4d(i, counter + row, stream, seed)`: reproducible from
//!   `(seed, counter, stream)`, independent across counters and streams. Bit-exact agreement with
//!   PyTorch's draws is impossible (different RNG); [`reference::sample`] reproduces these draws.
//! - NaN logits are never drawn (all-NaN rows: greedy writes 0, sampling writes `0xFFFFFFFF`).
//!
//! Layouts ([`LogitRows`], [`TokenSlots`]): logits f32, row `r` element `i` at
//! `offset + r·row_stride + i` of the view (`row_stride = 0` draws the same row with counters
//! `counter + r`); row `r` writes `tokens[index + r]` ([`sample_many`]: `D` draws per row, draw `d`
//! of row `r` at `index + r·D + d` with counter `counter + r·D + d`).
//!
//! Dispatch: one workgroup of 256 invocations per row, grid from [`super::grid_1d`]; each
//! invocation reads elements `l, l + 256, …` with 4 loads in flight. In one workgroup: a radix
//! select of the k-th largest composite key (order-preserving u32 of the logit, `!index`), 8 bits
//! per round: a histogram over the row (shared-memory atomics, 8 replicated copies against
//! contention), then one invocation walks the 256 counts from the top in two levels of 16; at
//! most 8 rounds, usually 3–4, stopping when the k-th element's bin is taken whole. Then one
//! Gumbel-max pass over the row and a two-level shared-memory argmax. Greedy is one pass and the
//! argmax.
//!
//! [`sample_embed`] (entry `sample_embed`, define `EMBED`): one row drawn as above by one
//! workgroup, which then gathers the drawn token's row of an embedding table (`embed.wgsl`'s
//! piece layout and dequantization, `shaders/common/table.wgsl`) into `out` — stored, or added
//! as `embed_sum` adds one stream — in the same dispatch. The LM uses it for the depformer:
//! each sampler writes the embedding that the next depformer step reads.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Binding, GpuError, GpuResult, Kernel, Recorder, Variant, View};
use crate::weights::{gather_reads, table_bytes, WeightFormat, TABLE_ALIGN_WORDS};

const SRC: &str = include_str!("../../shaders/sampling.wgsl");
/// Invocations per workgroup (injected into the WGSL as `WG`; the kernel's radix bins and its
/// 16 × 16 reductions are written for 256, which it asserts with `const_assert`).
pub const WG: u32 = 256;

static SAMPLE: Kernel = Kernel {
    name: "sample",
    source: SRC,
    entry: "sample",
    bindings: &[Binding::Read, Binding::ReadWrite],
    defines: &[],
    consts: &[("WG", WG)],
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// [`sample_embed`]: the sampler fused with the gather of the drawn token's embedding row
/// (bindings: logits, tokens, table, out).
static SAMPLE_EMBED: Kernel = Kernel {
    name: "sample_embed",
    source: SRC,
    entry: "sample_embed",
    bindings: &[
        Binding::Read,
        Binding::ReadWrite,
        Binding::Read,
        Binding::ReadWrite,
    ],
    defines: &["EMBED"],
    consts: &[("WG", WG), ("ALIGN_WORDS", TABLE_ALIGN_WORDS as u32)],
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// The kernel variants this module launches (for `tests/reflect.rs`).
pub fn variants(_device: &[&str]) -> Vec<(&'static Kernel, Variant)> {
    vec![(&SAMPLE, Variant::none()), (&SAMPLE_EMBED, Variant::none())]
}

/// How to draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleConfig {
    /// τ; `<= 0` means greedy.
    pub temperature: f32,
    /// Keep the k most likely ids; 0 (or ≥ n) keeps all.
    pub top_k: u32,
    pub seed: u32,
    /// Advances every draw (the caller passes the frame index); row `r` of a launch uses
    /// `counter + r`.
    pub counter: u32,
    /// Separates sampling sites that share a counter (text, each audio codebook, …).
    pub stream: u32,
}

impl SampleConfig {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            seed: 0,
            counter: 0,
            stream: 0,
        }
    }
    pub fn top_k(temperature: f32, top_k: u32, seed: u32, counter: u32, stream: u32) -> Self {
        Self {
            temperature,
            top_k,
            seed,
            counter,
            stream,
        }
    }
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

crate::params_struct! {
    #[derive(Clone, Copy, Pod, Zeroable, Default)]
    struct Params {
        n: u32,
        logits_offset: u32,
        row_stride: u32,
        rows: u32,
        out_index: u32,
        top_k: u32,
        greedy: u32,
        seed: u32,
        counter: u32,
        stream: u32,
        inv_temp: f32,
        draws: u32,
        emb_kind: u32,
        emb_first: u32,
        emb_rows: u32,
        emb_base: u32,
        emb_dim: u32,
        emb_out: u32,
        emb_accumulate: u32,
    }
}

/// `rows` rows of `n` f32 logits in `view`: row `r` starts at element `offset + r·row_stride`
/// (`row_stride = 0` draws the same row again, with the next counters).
#[derive(Debug, Clone, Copy)]
pub struct LogitRows<'a> {
    pub view: View<'a>,
    /// Element of row 0's first logit.
    pub offset: u32,
    /// Logits per row (the vocabulary).
    pub n: u32,
    pub row_stride: u32,
    pub rows: u32,
}

impl<'a> LogitRows<'a> {
    /// One row of `n` logits at element `offset` of `view`.
    pub fn one(view: View<'a>, offset: u32, n: u32) -> Self {
        Self {
            view,
            offset,
            n,
            row_stride: 0,
            rows: 1,
        }
    }
}

/// Where drawn ids go: u32 elements `index, index + 1, …` of `view`.
#[derive(Debug, Clone, Copy)]
pub struct TokenSlots<'a> {
    pub view: View<'a>,
    /// Element the first id is written to.
    pub index: u32,
}

/// Draw one token from the `n` logits at element `logits_offset` of `logits` into
/// `tokens[out_index]`.
pub fn sample(
    rec: &mut Recorder,
    logits: View,
    logits_offset: u32,
    n: u32,
    cfg: &SampleConfig,
    tokens: View,
    out_index: u32,
) -> GpuResult<()> {
    let slots = TokenSlots {
        view: tokens,
        index: out_index,
    };
    launch(
        rec,
        &LogitRows::one(logits, logits_offset, n),
        0,
        cfg,
        slots,
    )
}

/// Draw one token per row of `logits`: row `r` uses counter `cfg.counter + r` and writes
/// element `tokens.index + r`.
pub fn sample_rows(
    rec: &mut Recorder,
    logits: &LogitRows,
    cfg: &SampleConfig,
    tokens: TokenSlots,
) -> GpuResult<()> {
    launch(rec, logits, 0, cfg, tokens)
}

/// `draws` (1 ..= [`MAX_DRAWS_PER_ROW`]) independent draws from each row of `logits`: draw `d`
/// of row `r` uses counter `cfg.counter + r·draws + d` and writes element
/// `tokens.index + r·draws + d` (the same draws as [`sample_rows`] over `rows·draws` copies of
/// the rows). The top-k set is found once per row, then one invocation computes each draw by a
/// sequential pass over the row: cheap for small vocabularies (statistical tests), slow for
/// large ones.
pub fn sample_many(
    rec: &mut Recorder,
    logits: &LogitRows,
    draws: u32,
    cfg: &SampleConfig,
    tokens: TokenSlots,
) -> GpuResult<()> {
    if draws == 0 || draws > MAX_DRAWS_PER_ROW {
        return Err(GpuError::Launch {
            kernel: SAMPLE.name,
            message: format!("{draws} draws per row: must be 1 ..= {MAX_DRAWS_PER_ROW}"),
        });
    }
    launch(rec, logits, draws, cfg, tokens)
}

/// Most draws per row of [`sample_many`] (one per invocation of a workgroup).
pub const MAX_DRAWS_PER_ROW: u32 = WG;

fn launch(
    rec: &mut Recorder,
    logits: &LogitRows,
    draws: u32,
    cfg: &SampleConfig,
    tokens: TokenSlots,
) -> GpuResult<()> {
    let p = params(SAMPLE.name, logits, draws, cfg, tokens)?;
    let groups = super::grid_1d(logits.rows, rec.ctx().caps().max_workgroups_per_dimension);
    rec.launch(
        &SAMPLE,
        &Variant::none(),
        &[logits.view, tokens.view],
        &p,
        groups,
    )
}

/// Where [`sample_embed`] puts the drawn token's embedding row: one piece of a table (ids
/// `first_id .. first_id + rows`, [`crate::kernels::embed::Stream`]'s layout) in `table`, rows
/// of `dim` elements, gathered into `out[offset .. offset + dim]`.
#[derive(Debug, Clone, Copy)]
pub struct EmbedRow<'a> {
    pub table: View<'a>,
    pub format: WeightFormat,
    /// Word offset of the piece in `table` (a multiple of 64).
    pub base: u32,
    pub first_id: u32,
    pub rows: u32,
    pub dim: u32,
    pub out: View<'a>,
    /// Element of `out` that receives element 0 of the row.
    pub offset: u32,
    /// `out += row` instead of `out = row`.
    pub accumulate: bool,
}

/// [`sample_rows`] of one row, then, in the same launch, `out (= or +=)` the drawn token's row of
/// `emb.table` (a zero row for an id outside the piece), as [`crate::kernels::embed::embed_sum`]
/// of that one stream would: the sampler of one step and the embedding that the next step reads
/// in one dispatch. One workgroup of 256: the draw, then invocation `l` gathers elements
/// `l, l + 256, …`.
pub fn sample_embed(
    rec: &mut Recorder,
    logits: &LogitRows,
    cfg: &SampleConfig,
    tokens: TokenSlots,
    emb: &EmbedRow,
) -> GpuResult<()> {
    let bad = |message: String| GpuError::Launch {
        kernel: SAMPLE_EMBED.name,
        message,
    };
    if logits.rows != 1 {
        return Err(bad(format!("one row per launch, got {}", logits.rows)));
    }
    let EmbedRow {
        table,
        format,
        base,
        first_id,
        rows,
        dim,
        out,
        offset,
        accumulate,
    } = *emb;
    if dim == 0 || !gather_reads(format, dim) {
        return Err(bad(format!(
            "{} tables of width {dim} cannot be gathered (f32, bf16, Q8_0 with width a multiple of 32, MLX 4/8-bit with group 32/64 dividing the width)",
            format.name()
        )));
    }
    if !(base as u64).is_multiple_of(TABLE_ALIGN_WORDS) {
        return Err(bad(format!(
            "base word {base} is not a multiple of {TABLE_ALIGN_WORDS}"
        )));
    }
    let end = 4 * base as u64 + table_bytes(format, rows, dim);
    if end > table.size {
        return Err(bad(format!(
            "{rows} rows of {dim} {} elements at word {base} end at byte {end}, past the table view ({} bytes)",
            format.name(),
            table.size
        )));
    }
    if rows as u64 * dim as u64 + 32 > u32::MAX as u64
        || first_id as u64 + rows as u64 > i32::MAX as u64
    {
        return Err(bad(format!(
            "ids {first_id}..+{rows} of width {dim} do not fit one piece"
        )));
    }
    if (offset as u64 + dim as u64) * 4 > out.size {
        return Err(bad(format!(
            "out view ({} bytes) is too small for {dim} elements at {offset}",
            out.size
        )));
    }
    let mut p = params(SAMPLE_EMBED.name, logits, 0, cfg, tokens)?;
    p.emb_kind = super::embed::format_code(format);
    p.emb_first = first_id;
    p.emb_rows = rows;
    p.emb_base = base;
    p.emb_dim = dim;
    p.emb_out = offset;
    p.emb_accumulate = accumulate as u32;
    rec.launch(
        &SAMPLE_EMBED,
        &Variant::none(),
        &[logits.view, tokens.view, table, out],
        &p,
        [1, 1, 1],
    )
}

/// The checked parameters of a launch of `kernel`.
fn params(
    kernel: &'static str,
    logits: &LogitRows,
    draws: u32,
    cfg: &SampleConfig,
    tokens: TokenSlots,
) -> GpuResult<Params> {
    let LogitRows {
        view: logits,
        offset: logits_offset,
        n,
        row_stride,
        rows,
    } = *logits;
    let TokenSlots {
        view: tokens,
        index: out_index,
    } = tokens;
    let bad = |message: String| GpuError::Launch { kernel, message };
    if n == 0 || rows == 0 {
        return Err(bad(format!("empty shape: n {n}, rows {rows}")));
    }
    let greedy = cfg.is_greedy();
    if !greedy && !cfg.temperature.is_finite() {
        return Err(bad(format!(
            "temperature {} is not finite",
            cfg.temperature
        )));
    }
    let last = logits_offset as u64 + (rows as u64 - 1) * row_stride as u64 + n as u64;
    if last * 4 > logits.size {
        return Err(bad(format!(
            "logits view ({} bytes) is too small for {rows} rows of {n} at offset {logits_offset}, stride {row_stride}",
            logits.size
        )));
    }
    let ids = rows as u64 * draws.max(1) as u64;
    if (out_index as u64 + ids) * 4 > tokens.size {
        return Err(bad(format!(
            "tokens view ({} bytes) is too small for {ids} ids at index {out_index}",
            tokens.size
        )));
    }
    Ok(Params {
        n,
        logits_offset,
        row_stride,
        rows,
        out_index,
        top_k: if cfg.top_k >= n { 0 } else { cfg.top_k },
        greedy: greedy as u32,
        seed: cfg.seed,
        counter: cfg.counter,
        stream: cfg.stream,
        inv_temp: if greedy { 0.0 } else { 1.0 / cfg.temperature },
        draws,
        ..Default::default()
    })
}

/// Plain Rust references for the tests: the same draws as the GPU, computed in f64.
pub mod reference {
    use super::SampleConfig;

    /// Order-preserving key of a float (NaN lowest, −0 = +0), as the shader's `okey`.
    pub fn okey(x: f32) -> u32 {
        let b = x.to_bits();
        let a = b & 0x7fff_ffff;
        if a > 0x7f80_0000 {
            0
        } else if a == 0 {
            0x8000_0000
        } else if b >> 31 != 0 {
            !b
        } else {
            b | 0x8000_0000
        }
    }

    pub fn pcg4d(v: [u32; 4]) -> [u32; 4] {
        let mut v = v.map(|x| x.wrapping_mul(1664525).wrapping_add(1013904223));
        let round = |v: &mut [u32; 4]| {
            v[0] = v[0].wrapping_add(v[1].wrapping_mul(v[3]));
            v[1] = v[1].wrapping_add(v[2].wrapping_mul(v[0]));
            v[2] = v[2].wrapping_add(v[0].wrapping_mul(v[1]));
            v[3] = v[3].wrapping_add(v[1].wrapping_mul(v[2]));
        };
        round(&mut v);
        v = v.map(|x| x ^ (x >> 16));
        round(&mut v);
        v
    }

    /// The uniform `U_i ∈ (0, 1)` of element `i` for a draw with this counter.
    pub fn uniform(i: u32, counter: u32, stream: u32, seed: u32) -> f64 {
        let h = pcg4d([i, counter, stream, seed])[0];
        ((h >> 9) as f64 + 0.5) / 8388608.0
    }

    /// Argmax, ties → lowest index, NaN lowest.
    pub fn argmax(logits: &[f32]) -> u32 {
        let mut best = 0usize;
        for (i, &x) in logits.iter().enumerate() {
            if okey(x) > okey(logits[best]) {
                best = i;
            }
        }
        best as u32
    }

    /// Membership of the top-k set: exactly `min(k, n)` ids, ties at the k-th value → lowest
    /// indices (k = 0: all).
    pub fn top_k_set(logits: &[f32], k: usize) -> Vec<bool> {
        let n = logits.len();
        if k == 0 || k >= n {
            return vec![true; n];
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| okey(logits[b]).cmp(&okey(logits[a])).then(a.cmp(&b)));
        let mut set = vec![false; n];
        for &i in &order[..k] {
            set[i] = true;
        }
        set
    }

    /// Gumbel scores `logit/τ − ln(−ln U_i)` of the top-k members (None outside the set or NaN).
    pub fn scores(logits: &[f32], cfg: &SampleConfig, row: u32) -> Vec<Option<f64>> {
        let set = top_k_set(logits, cfg.top_k as usize);
        let inv_t = 1.0 / cfg.temperature as f64;
        let counter = cfg.counter.wrapping_add(row);
        logits
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                (set[i] && !x.is_nan()).then(|| {
                    let u = uniform(i as u32, counter, cfg.stream, cfg.seed);
                    x as f64 * inv_t - (-u.ln()).ln()
                })
            })
            .collect()
    }

    /// The id the GPU draws for row `row` of a launch (counter `cfg.counter + row`).
    pub fn sample(logits: &[f32], cfg: &SampleConfig, row: u32) -> u32 {
        if cfg.is_greedy() {
            return argmax(logits);
        }
        let mut best: Option<(usize, f64)> = None;
        for (i, s) in scores(logits, cfg, row).into_iter().enumerate() {
            if let Some(s) = s {
                if best.is_none_or(|(_, b)| s > b) {
                    best = Some((i, s));
                }
            }
        }
        best.map(|(i, _)| i as u32).unwrap_or(u32::MAX)
    }

    /// `softmax(logits/τ)` restricted to the top-k set, normalised (zero outside), in f64.
    pub fn distribution(logits: &[f32], temperature: f32, k: usize) -> Vec<f64> {
        let set = top_k_set(logits, k);
        let m = logits
            .iter()
            .zip(&set)
            .filter(|(_, &s)| s)
            .map(|(&x, _)| x as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = logits
            .iter()
            .zip(&set)
            .map(|(&x, &s)| {
                if s {
                    ((x as f64 - m) / temperature as f64).exp()
                } else {
                    0.0
                }
            })
            .collect();
        let z: f64 = w.iter().sum();
        w.into_iter().map(|v| v / z).collect()
    }
}
