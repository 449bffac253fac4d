//! The attention in-projection, the KV append and the attention in one launch, one workgroup per
//! head (`layer.wgsl`'s `qkv_attention` entry point, defines `KV_OUT` + `QKV_ATTN`): for
//! transformers with few heads and short windows (Mimi's codec transformers: 8 heads of 64, a
//! 250-key window, 2 rows per call), where the separate attention launch costs more than it
//! computes.
//!
//! Workgroup `h` (grid `[heads, 1, 1]`, [`super::WG`] invocations) computes head `h`'s q, k and v
//! rows of the in-projection (weight rows `{0, HD, 2·HD} + h·Dh + r`, `r < Dh`, `HD = heads·Dh`:
//! the `[q, k, v]` layout of PyTorch's `in_proj_weight`) for the `m ≤ `[`QA_MAX_ROWS`] batch rows,
//! with the norm applied as `x` is loaded (LayerNorm or RMSNorm statistics computed by every
//! workgroup, as the linear kernel does), in any weight format the linear kernel reads (its
//! per-format `step`): [`QA_LANES`] invocations per 4-row quad stride over K, `WG / QA_LANES`
//! quads at a time, a shared-memory tree over the lanes. It then writes k (interleaved RoPE at its
//! position, angles rounded through workgroup memory as `kv_append`) and v into ring slot
//! `(pos0 + i) % capacity` of the cache (`[2, capacity, HD]`, K slots then V, f32 or f16 pairs),
//! rotates q the same way and scales it by `1/√Dh`, and computes each query's softmax attention
//! over the keys the unfused [`crate::kernels::attention`] shows it (`lo = max(0, pq + 1 − window,
//! pos0 + m − capacity)`, read back from the cache after a storage barrier) into columns
//! `[h·Dh, (h+1)·Dh)` of `out` `[m, HD]` f32.
//!
//! Workgroup memory (the `hq`, `qsc`, `qang`, `rr`, `op` arrays of the WGSL, plus the linear
//! kernel's reduction slots for the tile): `MT·3·`[`QA_MAX_HEAD_DIM`] + [`QA_MAX_KEYS`] +
//! `MT·`[`QA_MAX_HEAD_DIM`]`/2` + `WG` f32, `WG` vec2 and `WG·MT` vec4 — under 16 KiB (asserted
//! below).

use super::{define, err, group_shift, need, one_part, step, variant, within_binding};
use super::{Params, CONSTS, INPUT_DEFINES, WG};
use crate::gpu::{Binding, GpuResult, Kernel, Recorder, Variant, View};

use super::{LinearInput, LinearWeights, FORMAT_DEFINES, MAX_BATCH_TILE};

/// Most batch rows (queries) per call: the kernel's batch tiles 1 and 2.
pub const QA_MAX_ROWS: u32 = 2;
/// Largest head dim (a multiple of 8).
pub const QA_MAX_HEAD_DIM: u32 = 128;
/// Most keys one query may see (`min(window, capacity)`).
pub const QA_MAX_KEYS: u32 = 512;
/// Invocations per row quad in the in-projection loop (injected as `QL`).
pub const QA_LANES: u32 = 16;
/// Most input floats (`m · K`) [`qkv_attention_res`] forms in workgroup memory (`RES_MAX`).
pub const QA_RES_MAX: u32 = 1024;

// hq + qsc + qang + rr + op + red (MT = QA_MAX_ROWS), plus the KV_OUT epilogue's fin and ang
// (declared in the module, unused here).
const _: () = assert!(
    QA_MAX_ROWS * 3 * QA_MAX_HEAD_DIM * 4
        + QA_MAX_KEYS * 4
        + QA_MAX_ROWS * QA_MAX_HEAD_DIM / 2 * 4
        + WG * 4
        + WG * 8
        + WG * QA_MAX_ROWS * 16
        + 4 * MAX_BATCH_TILE * 4
        + 16 * 4
        + QA_RES_MAX * 4
        <= 16384
);
const _: () = assert!(WG.is_multiple_of(QA_LANES) && 2 * WG >= QA_MAX_HEAD_DIM);
const _: () = assert!(QA_MAX_ROWS <= MAX_BATCH_TILE);

const QA_CONSTS: &[(&str, u32)] = &[
    ("QL", QA_LANES),
    ("QA_MAX_DH", QA_MAX_HEAD_DIM),
    ("QA_MAX_KEYS", QA_MAX_KEYS),
    ("RES_MAX", QA_RES_MAX),
];

/// [`CONSTS`] followed by [`QA_CONSTS`].
const ALL_CONSTS: [(&str, u32); CONSTS.len() + QA_CONSTS.len()] = super::consts_with(QA_CONSTS);

static KERNEL_QKV_ATTN: Kernel = Kernel {
    name: "linear_qkv_attn",
    source: super::LAYER_SRC,
    entry: "qkv_attention",
    bindings: &[
        Binding::Read,      // w
        Binding::Read,      // s
        Binding::Read,      // x
        Binding::Read,      // freqs
        Binding::ReadWrite, // out (y)
        Binding::Read,      // nw
        Binding::Read,      // nb
        Binding::ReadWrite, // cache
    ],
    defines: &["KV_OUT", "QKV_ATTN"],
    consts: &ALL_CONSTS,
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// [`qkv_attention_res`]: binding 2 is the partial outputs, 5 the residual stream pair (written),
/// 6 the packed norm weight, bias and layer scale.
static KERNEL_QKV_RES: Kernel = Kernel {
    name: "linear_qkv_attn_res",
    source: super::LAYER_SRC,
    entry: "qkv_attention",
    bindings: &[
        Binding::Read,      // w
        Binding::Read,      // s
        Binding::Read,      // x (the partial outputs)
        Binding::Read,      // freqs
        Binding::ReadWrite, // out (y)
        Binding::ReadWrite, // res
        Binding::Read,      // pk
        Binding::ReadWrite, // cache
    ],
    defines: &["KV_OUT", "QKV_ATTN", "RES_IN"],
    consts: &ALL_CONSTS,
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// The variants [`qkv_attention`] launches: every weight format × {plain, RMSNorm, LayerNorm}
/// input × batch tiles 1 and 2 × the cache precisions of `kv16s`; and those of
/// [`qkv_attention_res`] (RMSNorm or LayerNorm).
pub(super) fn variants(kv16s: &[bool]) -> Vec<(&'static Kernel, Variant)> {
    let mut out = Vec::new();
    for f in FORMAT_DEFINES {
        for i in &INPUT_DEFINES[..3] {
            for mt in 1..=QA_MAX_ROWS {
                for &kv16 in kv16s {
                    let v = variant(f, i, mt);
                    let v = if kv16 { v.define("KV16") } else { v };
                    if *i != INPUT_DEFINES[0] {
                        out.push((&KERNEL_QKV_RES, v.clone()));
                    }
                    out.push((&KERNEL_QKV_ATTN, v));
                }
            }
        }
    }
    out
}

/// The attention of [`qkv_attention`]: geometry, ring cache and positions.
#[derive(Clone, Copy, Debug)]
pub struct QkvAttn<'a> {
    /// `[2, capacity, heads·head_dim]`: K slots then V slots (f16 pairs in u32 words when
    /// `kv16`, else f32), the layout of [`crate::kernels::attention`] for an unpadded head dim.
    pub cache: View<'a>,
    /// RoPE inverse frequencies `[head_dim / 2]` ([`crate::kernels::rope::Rope::freqs`]); `None`:
    /// no rotation.
    pub freqs: Option<View<'a>>,
    pub kv16: bool,
    pub heads: u32,
    pub head_dim: u32,
    pub capacity: u32,
    pub window: u32,
    /// Position of batch row 0.
    pub pos0: u32,
    /// The score scale (`1/√head_dim`).
    pub scale: f32,
}

impl QkvAttn<'_> {
    fn check(&self, m: u32) -> GpuResult<()> {
        let (dh, heads) = (self.head_dim, self.heads);
        if dh == 0 || !dh.is_multiple_of(8) || dh > QA_MAX_HEAD_DIM || heads == 0 || heads > 65535 {
            return Err(err(format!(
                "the fused qkv attention needs 1 ≤ heads ≤ 65535 and a head dim that is a multiple of 8 up to {QA_MAX_HEAD_DIM}, got {heads} heads of {dh}"
            )));
        }
        if m == 0 || m > QA_MAX_ROWS {
            return Err(err(format!(
                "the fused qkv attention takes 1 to {QA_MAX_ROWS} rows per call, got {m}"
            )));
        }
        let keys = self.window.min(self.capacity);
        if self.capacity < m || self.window == 0 || keys > QA_MAX_KEYS {
            return Err(err(format!(
                "the fused qkv attention needs a ring of at least the {m} new rows (capacity {}), a window ≥ 1 (got {}) and at most {QA_MAX_KEYS} visible keys (got {keys})",
                self.capacity, self.window
            )));
        }
        let elem = if self.kv16 { 2 } else { 4 };
        let need = 2 * self.capacity as u64 * (heads * dh) as u64 * elem;
        if self.cache.size < need {
            return Err(err(format!(
                "the KV cache needs {need} bytes, view has {}",
                self.cache.size
            )));
        }
        if self.pos0 as u64 + m as u64 > 1 << 24 {
            return Err(err(format!(
                "position {} is beyond f32's exact integers (RoPE angles)",
                self.pos0 as u64 + m as u64
            )));
        }
        if let Some(f) = &self.freqs {
            if f.size < (dh / 2) as u64 * 4 {
                return Err(err(format!(
                    "the RoPE table has {} bytes, head_dim {dh} needs {}",
                    f.size,
                    dh / 2 * 4
                )));
            }
        }
        if !self.scale.is_finite() {
            return Err(err("the attention scale must be finite"));
        }
        Ok(())
    }
}

/// `out[m, h·Dh ..] = attention_h(in_proj(norm(x)))` for `m ≤ `[`QA_MAX_ROWS`] rows in one
/// launch, with k and v appended to `a.cache` (see the module doc). `w` is the in-projection
/// `[3·heads·head_dim, K]` (q, k, v row blocks; one weight part), `x` `[m, K]` f32, `input` plain,
/// RMSNorm or LayerNorm, `out` `[m, heads·head_dim]` f32. No bias. The result equals the unfused
/// in-projection + `kv_append` + `attention_with` up to f32 rounding (sums in another order).
pub fn qkv_attention(
    rec: &mut Recorder,
    w: &LinearWeights,
    x: View,
    out: View,
    m: u32,
    input: LinearInput,
    a: &QkvAttn,
) -> GpuResult<()> {
    launch(rec, w, x, out, m, input, a, None)
}

/// The layer's input formed in the same launch (define `RES_IN`): the residual stream of a
/// transformer whose MLPs are split ([`super::mlp_split`]).
#[derive(Clone, Copy, Debug)]
pub struct ResidualIn<'a> {
    /// The residual stream: `x_{l−1}` `[m, K]` f32 at float `read`, and `x_l` is written at
    /// float `write` (by workgroup 0; the two ranges must not overlap).
    pub stream: View<'a>,
    pub read: u32,
    pub write: u32,
    /// The previous layer's partial MLP outputs `[count, m, K]` f32.
    pub parts: View<'a>,
    pub count: u32,
    /// `[3, K]` f32: the norm's weight, its bias (LayerNorm; zeros for RMSNorm) and the
    /// previous layer's second layer scale (ones without).
    pub packed: View<'a>,
    /// LayerNorm (else RMSNorm).
    pub layer_norm: bool,
    pub eps: f32,
}

impl ResidualIn<'_> {
    /// The sizes, offsets and buffers for `m` rows of `k` features (both launches that read it).
    pub(super) fn check(&self, k: u32, m: u32) -> GpuResult<()> {
        let rows = m as u64 * k as u64;
        if rows > QA_RES_MAX as u64 || self.count == 0 || !k.is_multiple_of(4) {
            return Err(err(format!(
                "the fused residual input takes m · K ≤ {QA_RES_MAX} floats (K a multiple of 4) and ≥ 1 partial output, got {m} × {k} and {}",
                self.count
            )));
        }
        let (lo, hi) = (
            self.read.min(self.write) as u64,
            self.read.max(self.write) as u64,
        );
        if !self.read.is_multiple_of(4) || !self.write.is_multiple_of(4) || hi - lo < rows {
            return Err(err(format!(
                "the residual stream's read ({}) and write ({}) offsets must be multiples of 4, {rows} floats apart or more",
                self.read, self.write
            )));
        }
        if self.stream.size < (hi + rows) * 4
            || self.parts.size < self.count as u64 * rows * 4
            || self.packed.size < 3 * k as u64 * 4
        {
            return Err(err(format!(
                "the residual stream ({} bytes), the partial outputs ({} bytes) or the packed norm ({} bytes) is too small for {} parts of {m} × {k}",
                self.stream.size, self.parts.size, self.packed.size, self.count
            )));
        }
        let id = self.stream.buffer.id();
        if self.parts.buffer.id() == id || self.packed.buffer.id() == id {
            return Err(err(
                "the residual stream must be a buffer of its own (it is written)",
            ));
        }
        Ok(())
    }
}

/// [`qkv_attention`] on `x_l = x_{l−1} + ls2 ⊙ Σ_j parts[j]` (see [`ResidualIn`]), which every
/// workgroup forms in workgroup memory before the norm and workgroup 0 writes to the stream:
/// the previous layer's MLP partials summed by this layer's launch. `m · K ≤ `[`QA_RES_MAX`].
pub fn qkv_attention_res(
    rec: &mut Recorder,
    w: &LinearWeights,
    res: &ResidualIn,
    out: View,
    m: u32,
    a: &QkvAttn,
) -> GpuResult<()> {
    res.check(w.k, m)?;
    let input = if res.layer_norm {
        LinearInput::LayerNorm {
            weight: res.packed,
            bias: res.packed,
            eps: res.eps,
        }
    } else {
        LinearInput::RmsNorm {
            weight: res.packed,
            eps: res.eps,
        }
    };
    launch(rec, w, res.parts, out, m, input, a, Some(res))
}

#[allow(clippy::too_many_arguments)]
fn launch(
    rec: &mut Recorder,
    w: &LinearWeights,
    x: View,
    out: View,
    m: u32,
    input: LinearInput,
    a: &QkvAttn,
    res: Option<&ResidualIn>,
) -> GpuResult<()> {
    a.check(m)?;
    let hd = a.heads * a.head_dim;
    let k = w.k;
    if w.n != 3 * hd {
        return Err(err(format!(
            "the fused qkv attention needs an in-projection of 3 × {hd} rows, got {}",
            w.n
        )));
    }
    if !matches!(
        input,
        LinearInput::Plain | LinearInput::RmsNorm { .. } | LinearInput::LayerNorm { .. }
    ) {
        return Err(err(format!(
            "the fused qkv attention takes a plain, RMSNorm or LayerNorm input, got {input:?}"
        )));
    }
    let (input_define, norm_w, norm_b, eps) = super::input_parts(input)?;
    let part = one_part(w, "the fused qkv attention needs the in-projection's rows")?;
    let reads = [
        (
            if res.is_some() {
                "the partial outputs"
            } else {
                "x"
            },
            Some(x),
        ),
        ("the norm weight", norm_w),
        ("the norm bias", norm_b),
        ("the RoPE table", a.freqs),
    ];
    for (what, v) in reads {
        let Some(v) = v else { continue };
        for (written, b) in [("out", &out), ("the KV cache", &a.cache)] {
            if v.buffer.id() == b.buffer.id() {
                return Err(err(format!(
                    "{written} must be a different buffer from {what} (a written binding cannot alias a read one)"
                )));
            }
        }
    }
    if out.buffer.id() == a.cache.buffer.id() {
        return Err(err("out must be a different buffer from the KV cache"));
    }
    if let Some(r) = res {
        let id = r.stream.buffer.id();
        if [x, out, a.cache, r.packed]
            .iter()
            .any(|v| v.buffer.id() == id)
            || a.freqs.is_some_and(|f| f.buffer.id() == id)
        {
            return Err(err(
                "the residual stream must be a buffer of its own (it is written)",
            ));
        }
    }
    if res.is_none() {
        need(&x, "x", m as u64 * k as u64)?;
    }
    need(&out, "out", m as u64 * hd as u64)?;
    for (v, what) in [(&norm_w, "norm weight"), (&norm_b, "norm bias")] {
        if let Some(v) = v {
            need(v, what, k as u64)?;
        }
    }
    within_binding(part, rec.ctx().caps().max_storage_binding)?;
    let mut variant = variant(define(w.format), input_define, m);
    if a.kv16 {
        variant = variant.define("KV16");
    }
    let (res_in, res_out, parts) = res.map_or((0, 0, 0), |r| (r.read / 4, r.write / 4, r.count));
    let p = Params {
        res_in,
        res_out,
        parts,
        n: w.n,
        k,
        m,
        row_offset: w.row_offset - part.first_row,
        chunks: k / step(w.format),
        group_shift: group_shift(w.format),
        y_stride: hd,
        x_stride: k / 4,
        eps,
        kv_hd: hd,
        kv_head_dim: a.head_dim,
        kv_capacity: a.capacity,
        kv_pos0: a.pos0,
        kv_rope: a.freqs.is_some() as u32,
        attn_window: a.window,
        attn_scale: a.scale,
        ..Params::default()
    };
    // For profiles: the weight rows, and the keys and values in range.
    let elem = if a.kv16 { 2 } else { 4 };
    let keys = a.window.min(a.capacity).min(a.pos0 + m) as u64;
    let xin = m as u64 * k as u64 * 4 * (1 + res.map_or(0, |r| r.count as u64));
    rec.note_reads(w.bytes() + xin + 2 * keys * hd as u64 * elem);
    let data = part.data.view();
    let scales = part.scales.as_ref().map(|s| s.view()).unwrap_or(data);
    let (kernel, b5, b6) = match res {
        Some(r) => (&KERNEL_QKV_RES, r.stream, r.packed),
        None => (&KERNEL_QKV_ATTN, norm_w.unwrap_or(x), norm_b.unwrap_or(x)),
    };
    rec.launch(
        kernel,
        &variant,
        &[data, scales, x, a.freqs.unwrap_or(x), out, b5, b6, a.cache],
        &p,
        [a.heads, 1, 1],
    )
}
