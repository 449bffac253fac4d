// linear.wgsl: y[m, y_col + n] (=, +=, or += scale ·) Σ_k X[m, k] · W[row_offset + n, k] (+ bias[y_col + n]),
// n < p.n, for small M (gemv / thin gemm), one kernel body for every weight format (picked by a define)
// and every input transform (picked by a define): X = x, RMSNorm(x), LayerNorm(x), silu(x_g)·x_u or
// GELU(x), computed as x is loaded (norm statistics per batch row inside each workgroup, in f32).
// (y_col / y_stride let a weight split into several buffers write one output; usually y_col = 0 and
// y_stride = p.n.)
//
// Layouts (all row-major, little-endian u32 words):
//   x    [M, x_stride] f32: [M, K] (x_stride = K), or [M, 2K] for IN_SILU (x_stride = 2K: gate
//        columns [0, K), up columns [K, 2K)).     y [M, y_stride] f32.     bias, scale [y_stride] f32.
//   nw, nb [K] f32: the norm's weight (RMSNorm alpha / LayerNorm weight) and LayerNorm bias.
//   W    [rows, K] in the format's GPU layout; the kernel reads rows row_offset .. row_offset + p.n - 1
//        (a row block of a stacked weight, without copying). A row is K / E steps of E weights
//        (E = 4 for f32, 8 otherwise), each one element of w's binding type; K is a multiple of
//        4 (f32), 8 (bf16), 32 (Q8_0) or the group size (affine).
//   W_F32     w: array<vec4<u32>>, K/4 per row: f32 bit patterns.                        (no s)
//   W_BF16    w: array<vec4<u32>>, K/8 per row; element 2i in the low 16 bits of word i, 2i+1 in the
//             high 16 bits; bf16 -> f32 is a 16-bit shift.                                (no s)
//   W_Q8_0    w: array<vec2<u32>>, K/8 per row: int8 codes, byte j of word i = element 4i + j (two's
//             complement); block b (32 weights along K) of row r = words (r·K/32 + b)·8 .. +7.
//             s: the f16 block scales d, two per u32: flat block f = r·K/32 + b lives in word f/2,
//             low half if f is even (read with unpack2x16float). w = d · q.
//   W_AFF8    w: array<vec2<u32>>, K/8 per row: MLX affine 8-bit codes, byte j of word i = element
//             4i + j, unsigned.
//   W_AFF4    w: array<u32>, K/8 per row: MLX affine 4-bit codes, nibble j (bits 4j..4j+3) of word i
//             = element 8i + j, unsigned.
//             s (both affine formats): one u32 per group of G = 32 << p.group_shift weights along K:
//             low 16 bits = bf16 scale, high 16 bits = bf16 bias; group g of row r at word r·K/G + g.
//             w = scale · q + bias.
//   W_I8ROW   w: array<vec2<u32>>, K/8 per row: PyTorch int8 (bitsandbytes row-wise) codes, byte j of
//             word i = element 4i + j (two's complement); row r at words r·K/4 .. (no blocks).
//             s: one f32 per row (its bit pattern): scb[r], the row's absmax. y = scb[r]/127 · Σ q·x
//             (the row scale multiplies the reduced sum, before bias and output mode).
// Input transforms (one define): IN_PLAIN X = x. IN_RMS X = x·nw / sqrt(mean_k(x²) + eps) (the sum of
//   squares is accumulated in the main loop, which reads every x element of the row exactly once per
//   workgroup, and reduced with the dot products; the 1/rms factor is applied to the sums). IN_LAYER
//   X = (x − mean)·rstd·nw + nb, rstd = 1/sqrt(var + eps) (biased variance), mean and variance in one
//   pass over the batch rows before the main loop, shifted by each row's first element (no
//   cancellation for rows with a large mean). IN_SILU X = silu(x[:, :K])·x[:, K:]. IN_GELU
//   X = 0.5·x·(1 + erf(x/√2)) (erf as elementwise.wgsl, |error| < 1.2e-7).
// IN_ATTN (m = 1, no bias): X = the attention output of one query over a short ring KV cache,
//   computed by every workgroup into workgroup memory before the main loop: q = x[0, 0 .. K)
//   (K = kv_hd = heads · kv_head_dim, kv_head_dim a multiple of 8; the qkv row of the fused
//   in-projection), keys and values at positions pk in [lo, kv_pos0], lo = max(0, kv_pos0 + 1 −
//   min(attn_window, kv_capacity)), slot pk % kv_capacity of `kvc` [2, capacity, K] (K slots then V;
//   KV16: half pairs in u32 words, else f32), scores q·k · eps (eps = 1/√head_dim here), softmax
//   with the max subtracted, X[h·Dh + d] = Σ p·v / Σ p. For the depformer (≤ 16 keys): heads ·
//   keys ≤ 256 scores, K ≤ 1024.
// QKV_ATTN (entry point qkv_attention instead of linear; KV_OUT's bindings, y = the attention
//   output [m, kv_hd], m ≤ MT; no bias, store only): one workgroup per head computes its q, k, v
//   rows of the in-projection, appends k (RoPE) and v to the ring as KV_OUT does, and writes its
//   head's attention output (the visible keys of attention.wgsl); see the entry point below.
// Output (p.out_mode): 0 store y = v, 1 accumulate y += v, 2 y += scale[col]·v, v = Σ + bias.
// KV_OUT (a fused attention in-projection, store mode, no bias): y = v as in mode 0, and the
//   columns [kv_k_offset, +kv_hd) (k) and [kv_v_offset, +kv_hd) (v) of batch row m are also
//   written into ring slot (kv_pos0 + m) % kv_capacity of `cache` [2, capacity, kv_hd] (K slots
//   then V slots; head dim kv_head_dim, unpadded: a multiple of 8), k rotated by interleaved RoPE
//   at position kv_pos0 + m when kv_rope = 1, exactly as attention.wgsl's kv_append (theta =
//   f32(pos) · freqs[d / 2] rounded through workgroup memory). KV16: half pairs in u32 words
//   (pack2x16float), else vec2<f32>. Column pairs (2i, 2i + 1) are written together by one
//   invocation after a workgroup barrier (y_col, both offsets and kv_hd even).
// Bindings (group 0):
//   0 w:     weight codes / values, read (type per format, above)
//   1 s:     array<u32>, read           (scales: Q8_0 f16 pairs, affine bf16 scale|bias, int8-row f32
//                                        scb per row; unused otherwise)
//   2 x:     array<vec4<f32>>, read     (activations)
//   3 bias:  array<f32>, read           (read only when p.has_bias != 0)
//   4 y:     array<f32>, read_write     (output [M, y_stride]; a different buffer from every other binding)
//   5 nw:    array<vec4<f32>>, read     (IN_RMS, IN_LAYER)
//   6 nb:    array<vec4<f32>>, read     (IN_LAYER)
//   7 scale: array<f32>, read           (out_mode 2)
//   8 p:     Params (uniform, dynamic offset)
// IN_ATTN replaces binding 3: kvc: array<vec4<u32>> (KV16) or array<vec4<f32>>, read.
// KV_OUT replaces two bindings: 3 freqs: array<f32>, read (RoPE inverse frequencies [Dh/2]; bound
//   but unread without RoPE), 7 cache: read_write (array<u32> with KV16, else array<vec2<f32>>).
// Unused bindings are bound to x by the launcher.
// Dispatch: @workgroup_size(WG) (WG = 64, R and MAX_MT injected from the launcher). A workgroup
// computes R = 4 consecutive output rows n0 .. n0+3 for MT
// consecutive batch rows (MT = 1, 2, 4 or 8 by define MT2/MT4/MT8): the row tile is
// t = wid.y · nwg.x + wid.x (2-D grid when more than 65535 tiles), n0 = 4t, and the batch tile is
// wid.z (m0 = MT · wid.z). Invocation l takes steps l, l + 64, … of the 4 rows (coalesced loads;
// every weight byte is read once per dispatch), keeps 4 × MT partial sums, and the workgroup reduces
// them with subgroupAdd + one shared slot per subgroup (SUBGROUPS) or a shared-memory tree.
// Rows past N and batch rows past M are clamped on load and skipped on store.

struct Params {
    n: u32,           // output rows N
    k: u32,           // input features K
    m: u32,           // batch rows M
    row_offset: u32,  // first weight row read
    chunks: u32,      // K / E (steps per row)
    group_shift: u32, // affine: group size = 32 << group_shift
    has_bias: u32,    // 1 = add bias[y_col + n]
    y_stride: u32,    // row stride of y (the N of the whole call)
    y_col: u32,       // first output column this dispatch writes
    x_stride: u32,    // row stride of x in vec4 (K/4, or 2K/4 for IN_SILU)
    out_mode: u32,    // 0 store, 1 accumulate, 2 accumulate scaled
    eps: f32,         // IN_RMS / IN_LAYER epsilon
    kv_k_offset: u32, // KV_OUT: first k column of the output row
    kv_v_offset: u32, // KV_OUT: first v column
    kv_hd: u32,       // KV_OUT: heads · head_dim (one cache row)
    kv_head_dim: u32, // KV_OUT: head_dim
    kv_capacity: u32, // KV_OUT: ring slots
    kv_pos0: u32,     // KV_OUT: position of batch row 0
    kv_rope: u32,     // KV_OUT: 1 = rotate k
    attn_window: u32, // IN_ATTN, QKV_ATTN: keys with kv_pos0 − pk < attn_window
    attn_scale: f32,  // QKV_ATTN: the score scale 1/√Dh
    chunks2: u32,     // MLP_SPLIT: steps per row of w2 (hidden / E)
    hidden: u32,      // MLP_SPLIT: hidden units H (the up rows of a gated w start at row_offset + H)
    row_offset2: u32, // MLP_SPLIT: first row of w2 read
    res_in: u32,      // RES_IN: first vec4 of the residual read (x_{l−1})
    res_out: u32,     // RES_IN: first vec4 of the residual written (x_l)
    parts: u32,       // RES_IN: partial outputs summed
    _pad0: u32,
}

//#if W_F32
@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>; // one vec4 = 4 f32 weights
alias WT = vec4<u32>;
//#endif
//#if W_BF16
@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>; // one vec4 = 8 bf16 weights
alias WT = vec4<u32>;
//#endif
//#if W_Q8_0
@group(0) @binding(0) var<storage, read> w: array<vec2<u32>>; // one vec2 = 8 int8 codes
alias WT = vec2<u32>;
//#endif
//#if W_AFF8
@group(0) @binding(0) var<storage, read> w: array<vec2<u32>>; // one vec2 = 8 uint8 codes
alias WT = vec2<u32>;
//#endif
//#if W_AFF4
@group(0) @binding(0) var<storage, read> w: array<u32>;       // one u32 = 8 uint4 codes
alias WT = u32;
//#endif
//#if W_I8ROW
@group(0) @binding(0) var<storage, read> w: array<vec2<u32>>; // one vec2 = 8 int8 codes
alias WT = vec2<u32>;
//#endif
@group(0) @binding(1) var<storage, read> s: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
//#if RES_IN
// RES_IN (qkv_attention only): x is the partial outputs [parts, m, K] of the previous layer's
// mlp_split, res the residual stream pair (read at res_in, written at res_out: two disjoint
// halves), pk [3, K] the norm weight, the norm bias and the previous layer's ls2 (packed at load).
@group(0) @binding(5) var<storage, read_write> res: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> pk: array<vec4<f32>>;
var<workgroup> xr: array<vec4<f32>, RES_MAX / 4u>; // x_l [m, K]
fn xld(b: u32) -> vec4<f32> {
    return xr[b];
}
fn nwv(v: u32) -> vec4<f32> {
    return pk[v];
}
fn nbv(v: u32) -> vec4<f32> {
    return pk[p.k / 4u + v];
}
//#else
@group(0) @binding(5) var<storage, read> nw: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> nb: array<vec4<f32>>;
//#endif
//#if KV_OUT
@group(0) @binding(3) var<storage, read> freqs: array<f32>;
//#if KV16
@group(0) @binding(7) var<storage, read_write> cache: array<u32>;
//#else
@group(0) @binding(7) var<storage, read_write> cache: array<vec2<f32>>;
//#endif
//#else
//#if MLP_SPLIT
// MLP_SPLIT: the second weight (same format as w) and its scales.
@group(0) @binding(3) var<storage, read> w2: array<WT>;
@group(0) @binding(7) var<storage, read> s2: array<u32>;
//#else
//#if IN_ATTN
//#if KV16
@group(0) @binding(3) var<storage, read> kvc: array<vec4<u32>>;
//#else
@group(0) @binding(3) var<storage, read> kvc: array<vec4<f32>>;
//#endif
//#else
@group(0) @binding(3) var<storage, read> bias: array<f32>;
//#endif
@group(0) @binding(7) var<storage, read> scale: array<f32>;
//#endif
//#endif
@group(0) @binding(8) var<uniform> p: Params;

// Weight and scale words (MLP_SPLIT: of the second weight w2 / s2 in its phase 2).
//#if MLP_SPLIT
var<private> ph2: bool;
fn wld(i: u32) -> WT {
    if (ph2) {
        return w2[i];
    }
    return w[i];
}
fn sld(i: u32) -> u32 {
    if (ph2) {
        return s2[i];
    }
    return s[i];
}
//#else
fn wld(i: u32) -> WT {
    return w[i];
}
fn sld(i: u32) -> u32 {
    return s[i];
}
//#endif

// R rows are the 4 lanes of a vec4.
const_assert R == 4u;
//#if MT8
const MT: u32 = MAX_MT;
//#else
//#if MT4
const MT: u32 = 4u;
//#else
//#if MT2
const MT: u32 = 2u;
//#else
const MT: u32 = 1u;
//#endif
//#endif
//#endif

// Partial sums: one vec4 (4 rows) per batch row and subgroup (SUBGROUPS) or per invocation.
var<workgroup> red: array<vec4<f32>, WG * MT>; // ≤ 8 KiB

//#if KV_OUT
//#include "common/rope.wgsl"
// The tile's results (batch row i, row r at i·R + r) and the RoPE angles of its column pairs.
var<workgroup> fin: array<f32, R * MAX_MT>;
var<workgroup> ang: array<f32, 16>;
//#endif


// erf with |error| < 1.2e-7 (Numerical Recipes erfc, Chebyshev fit), evaluated in f32; the formula
// of elementwise.wgsl's gelu_erf.
fn erf4(x: vec4<f32>) -> vec4<f32> {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
        t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
        t * (-0.82215223 + t * 0.17087277)))))))));
    return select(r - 1.0, 1.0 - r, x >= vec4<f32>(0.0));
}

// Per batch row of the tile: IN_LAYER (mean, rstd, -, -), IN_RMS (-, -, this invocation's Σ x², -).
// Only ever indexed by constants (loops over the batch rows are innermost and unrolled), so that
// compilers keep it in registers.
var<private> aux: array<vec4<f32>, MT>;

//#if IN_ATTN
// The attention output (X), the scores / probabilities [head, key] and each head's Σ p.
var<workgroup> ax: array<vec4<f32>, ATTN_MAX_HD / 4u>;
var<workgroup> sc: array<f32, ATTN_MAX_SCORES>;
var<workgroup> hsum: array<f32, WG>; // one per head (heads ≤ WG)

// Elements e .. e + 3 (e a multiple of 4) of row `row` (K slots 0 .. capacity − 1, then V) of kvc.
fn kv4(row: u32, e: u32) -> vec4<f32> {
    let f = row * p.kv_hd + e;
//#if KV16
    let w = kvc[f / 8u];
    if ((f / 4u) % 2u == 0u) {
        return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
    }
    return vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));
//#else
    return kvc[f / 4u];
//#endif
}

// Every workgroup computes the whole attention output into ax (called in uniform control flow).
fn attend(lid: u32) {
    let dh = p.kv_head_dim;
    let heads = p.kv_hd / dh;
    let span = min(p.attn_window, p.kv_capacity);
    let lo = select(0u, p.kv_pos0 + 1u - span, p.kv_pos0 + 1u > span);
    let nk = p.kv_pos0 + 1u - lo;
    for (var i = lid; i < heads * nk; i += WG) {
        let h = i / nk;
        let slot = (lo + i % nk) % p.kv_capacity;
        var s = 0.0;
        for (var d = 0u; d < dh; d += 4u) {
            s += dot(x[(h * dh + d) / 4u], kv4(slot, h * dh + d));
        }
        sc[i] = s * p.eps;
    }
    workgroupBarrier();
    if (lid < heads) {
        var mx = sc[lid * nk];
        for (var j = 1u; j < nk; j++) {
            mx = max(mx, sc[lid * nk + j]);
        }
        var l = 0.0;
        for (var j = 0u; j < nk; j++) {
            let e = exp(sc[lid * nk + j] - mx);
            sc[lid * nk + j] = e;
            l += e;
        }
        hsum[lid] = l;
    }
    workgroupBarrier();
    for (var v = lid; v < p.kv_hd / 4u; v += WG) {
        let h = (4u * v) / dh;
        var acc = vec4<f32>(0.0);
        for (var j = 0u; j < nk; j++) {
            acc += sc[h * nk + j] * kv4(p.kv_capacity + (lo + j) % p.kv_capacity, 4u * v);
        }
        ax[v] = acc / hsum[h];
    }
    workgroupBarrier();
}
//#endif

// Element group v (a vec4 index along K) of batch row m0 + i of X, the transformed input.
fn xin(i: u32, m0: u32, v: u32) -> vec4<f32> {
    let b = min(m0 + i, p.m - 1u) * p.x_stride + v;
//#if MLP_SPLIT
    if (ph2) {
        return ha[i * (MS_S / 4u) + v - p_xoff];
    }
//#endif
//#if IN_ATTN
    return ax[v];
//#endif
//#if IN_PLAIN
    return x[b];
//#endif
//#if IN_RMS
//#if RES_IN
    let xv = xld(b);
    aux[i].z += dot(xv, xv);
    return xv * nwv(v);
//#else
    let xv = x[b];
    aux[i].z += dot(xv, xv);
    return xv * nw[v];
//#endif
//#endif
//#if IN_LAYER
    let st = aux[i];
//#if RES_IN
    return (xld(b) - vec4<f32>(st.x)) * st.y * nwv(v) + nbv(v);
//#else
    return (x[b] - vec4<f32>(st.x)) * st.y * nw[v] + nb[v];
//#endif
//#endif
//#if IN_SILU
    let g = x[b];
    let u = x[b + p.k / 4u];
    return g / (1.0 + exp(-g)) * u;
//#endif
//#if IN_GELU
    let xv = x[b];
    return 0.5 * xv * (1.0 + erf4(xv * 0.70710678118654752));
//#endif
}

// Workgroup sums of one vec4 per batch row, returned to every invocation (the statistics of the
// norms; the main result uses its own reduction below). Ends with a barrier: red is free again.
// Per-row loops are innermost everywhere (see the IN_LAYER statistics).
//#if SUBGROUPS
fn wg_sum(v: array<vec4<f32>, MT>, lid: u32, lane: u32, sg_size: u32) -> array<vec4<f32>, MT> {
    let nsub = (WG + sg_size - 1u) / sg_size;
    for (var i = 0u; i < MT; i++) {
        let t = subgroupAdd(v[i]);
        if (lane == 0u) {
            red[i * WG + lid / sg_size] = t;
        }
    }
    workgroupBarrier();
    var out: array<vec4<f32>, MT>;
    for (var j = 0u; j < nsub; j++) {
        for (var i = 0u; i < MT; i++) {
            out[i] += red[i * WG + j];
        }
    }
    workgroupBarrier();
    return out;
}
//#else
fn wg_sum(v: array<vec4<f32>, MT>, lid: u32) -> array<vec4<f32>, MT> {
    for (var i = 0u; i < MT; i++) {
        red[i * WG + lid] = v[i];
    }
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
        if (lid < st) {
            for (var i = 0u; i < MT; i++) {
                red[i * WG + lid] += red[i * WG + lid + st];
            }
        }
        workgroupBarrier();
    }
    var out: array<vec4<f32>, MT>;
    for (var i = 0u; i < MT; i++) {
        out[i] = red[i * WG];
    }
    workgroupBarrier();
    return out;
}
//#endif

// The tile's norm statistics into aux, in one pass over its batch rows before the main loop
// (called in uniform control flow). IN_LAYER: (mean, rstd, -, -). Mean and variance are shifted
// by the row's first element c (every invocation reads it): mean = c + E[x − c], var =
// E[(x − c)²] − E[x − c]², so the subtraction cancels only by (mean − c)² / var = O(1), not by
// mean² / var. IN_RMS (only the fused qkv_attention, whose main loop reads x many times):
// (-, -, -, 1/rms). Loops over the batch rows are innermost (constant trip count, unrolled) so
// that every per-row array is indexed by constants and stays in registers.
//#if SUBGROUPS
fn norm_stats(m0: u32, lid: u32, lane: u32, sg_size: u32) {
//#else
fn norm_stats(m0: u32, lid: u32) {
//#endif
    let kq = p.k / 4u;
    let inv_k = 1.0 / f32(p.k);
    var st: array<vec4<f32>, MT>;
    var sh: array<vec4<f32>, MT>;
//#if IN_LAYER
    for (var i = 0u; i < MT; i++) {
//#if RES_IN
        sh[i] = vec4<f32>(xld(min(m0 + i, p.m - 1u) * p.x_stride).x);
//#else
        sh[i] = vec4<f32>(x[min(m0 + i, p.m - 1u) * p.x_stride].x);
//#endif
    }
//#endif
    for (var v0 = 0u; v0 < kq; v0 += WG) {
        let v = v0 + lid;
        if (v < kq) {
            for (var i = 0u; i < MT; i++) {
//#if RES_IN
                let d = xld(min(m0 + i, p.m - 1u) * p.x_stride + v) - sh[i];
//#else
                let d = x[min(m0 + i, p.m - 1u) * p.x_stride + v] - sh[i];
//#endif
                st[i] += vec4<f32>(d.x + d.y + d.z + d.w, dot(d, d), 0.0, 0.0);
            }
        }
    }
//#if SUBGROUPS
    let sums = wg_sum(st, lid, lane, sg_size);
//#else
    let sums = wg_sum(st, lid);
//#endif
    for (var i = 0u; i < MT; i++) {
//#if IN_LAYER
        let md = sums[i].x * inv_k;
        let vr = max(sums[i].y * inv_k - md * md, 0.0);
        aux[i] = vec4<f32>(sh[i].x + md, inverseSqrt(vr + p.eps), 0.0, 0.0);
//#else
        aux[i] = vec4<f32>(0.0, 0.0, 0.0, 1.0 / sqrt(sums[i].y * inv_k + p.eps));
//#endif
    }
}

// bf16 words: element 2i is the low half, 2i+1 the high half.
fn bf16_lo(v: vec4<u32>) -> vec4<f32> {
    return bitcast<vec4<f32>>(v << vec4<u32>(16u));
}
fn bf16_hi(v: vec4<u32>) -> vec4<f32> {
    return bitcast<vec4<f32>>(v & vec4<u32>(0xffff0000u));
}
// Σ of 8 bf16 weights times x0 (elements 0..3) and x1 (4..7), given as their even / odd parts.
fn bf16_dot(v: vec4<u32>, xe: vec4<f32>, xo: vec4<f32>) -> f32 {
    return dot(bf16_lo(v), xe) + dot(bf16_hi(v), xo);
}

// Codes become floats without int->float conversions (quarter rate on many GPUs): a code placed in
// the mantissa of 2^23 (0x4B000000) reads as 2^23 + code, and the subtraction is exact. Codes stay
// at their bit position, so component j carries a power-of-two factor (16^j for nibbles, 256^(j%2)
// for bytes) that the x values were divided by beforehand (exact: powers of two); no shifts needed.
const MAGIC: u32 = 0x4B000000u;
const TWO23: f32 = 8388608.0;
const X4: vec4<f32> = vec4<f32>(1.0, 0.0625, 0.00390625, 0.000244140625); // 16^-j
const X8: vec4<f32> = vec4<f32>(1.0, 0.00390625, 1.0, 0.00390625);       // 256^-(j mod 2)
// Bytes of a word as (b0, 256·b1, b2, 256·b3), unsigned.
fn u8x4(v: u32) -> vec4<f32> {
    let h = v >> 16u;
    let f = bitcast<vec4<f32>>((vec4<u32>(v, v, h, h) & vec4<u32>(0xffu, 0xff00u, 0xffu, 0xff00u)) | vec4<u32>(MAGIC));
    return f - vec4<f32>(TWO23);
}
// Signed bytes (two's complement) as (q0, 256·q1, q2, 256·q3): flipping the sign bits gives q + 128.
fn i8x4(v: u32) -> vec4<f32> {
    let u = v ^ 0x80808080u;
    let h = u >> 16u;
    let f = bitcast<vec4<f32>>((vec4<u32>(u, u, h, h) & vec4<u32>(0xffu, 0xff00u, 0xffu, 0xff00u)) | vec4<u32>(MAGIC));
    return f - vec4<f32>(TWO23 + 128.0, TWO23 + 32768.0, TWO23 + 128.0, TWO23 + 32768.0);
}
// Nibbles 0..3 of a word as (n0, 16·n1, 256·n2, 4096·n3).
fn u4x4(v: u32) -> vec4<f32> {
    let f = bitcast<vec4<f32>>((vec4<u32>(v) & vec4<u32>(0xfu, 0xf0u, 0xf00u, 0xf000u)) | vec4<u32>(MAGIC));
    return f - vec4<f32>(TWO23);
}
// Σ of 8 codes times x0 (elements 0..3) and x1 (4..7), x prescaled by X8 / X4.
fn i8_dot(v: vec2<u32>, x0: vec4<f32>, x1: vec4<f32>) -> f32 {
    return dot(i8x4(v.x), x0) + dot(i8x4(v.y), x1);
}
fn u8_dot(v: vec2<u32>, x0: vec4<f32>, x1: vec4<f32>) -> f32 {
    return dot(u8x4(v.x), x0) + dot(u8x4(v.y), x1);
}
fn u4_dot(v: u32, x0: vec4<f32>, x1: vec4<f32>) -> f32 {
    return dot(u4x4(v), x0) + dot(u4x4(v >> 16u), x1);
}
// Affine (scale, bias) word: bf16 scale in the low half, bf16 bias in the high half.
fn scale_bias(v: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xffff0000u));
}
//#if W_Q8_0
// f16 scale of flat block f (two per word, even blocks in the low half).
fn q8_scale(f: u32) -> f32 {
    let pair = unpack2x16float(sld(f >> 1u));
    return select(pair.x, pair.y, (f & 1u) != 0u);
}
//#endif

// One step: elements E·c .. E·c + E − 1 of the 4 weight rows rw, for every batch row of the tile.
fn step(c: u32, rw: vec4<u32>, m0: u32, acc: ptr<function, array<vec4<f32>, MT>>) {
//#if MLP_SPLIT
    let cs = select(p.chunks, p.chunks2, ph2); // steps per weight row
//#else
    let cs = p.chunks;  // steps per weight row
//#endif
//#if W_F32
    let w0 = bitcast<vec4<f32>>(wld(rw.x * cs + c));
    let w1 = bitcast<vec4<f32>>(wld(rw.y * cs + c));
    let w2 = bitcast<vec4<f32>>(wld(rw.z * cs + c));
    let w3 = bitcast<vec4<f32>>(wld(rw.w * cs + c));
    for (var i = 0u; i < MT; i++) {
        let xv = xin(i, m0, c);
        (*acc)[i] += vec4<f32>(dot(w0, xv), dot(w1, xv), dot(w2, xv), dot(w3, xv));
    }
//#endif
//#if W_BF16
    let w0 = wld(rw.x * cs + c);
    let w1 = wld(rw.y * cs + c);
    let w2 = wld(rw.z * cs + c);
    let w3 = wld(rw.w * cs + c);
    for (var i = 0u; i < MT; i++) {
        let x0 = xin(i, m0, 2u * c);
        let x1 = xin(i, m0, 2u * c + 1u);
        let xe = vec4<f32>(x0.x, x0.z, x1.x, x1.z);
        let xo = vec4<f32>(x0.y, x0.w, x1.y, x1.w);
        (*acc)[i] += vec4<f32>(bf16_dot(w0, xe, xo), bf16_dot(w1, xe, xo), bf16_dot(w2, xe, xo), bf16_dot(w3, xe, xo));
    }
//#endif
//#if W_Q8_0
    let w0 = wld(rw.x * cs + c);
    let w1 = wld(rw.y * cs + c);
    let w2 = wld(rw.z * cs + c);
    let w3 = wld(rw.w * cs + c);
    // 4 steps per 32-weight block.
    let b = c >> 2u;
    let bs = cs >> 2u;
    let d = vec4<f32>(q8_scale(rw.x * bs + b), q8_scale(rw.y * bs + b), q8_scale(rw.z * bs + b), q8_scale(rw.w * bs + b));
    for (var i = 0u; i < MT; i++) {
        let x0 = xin(i, m0, 2u * c) * X8;
        let x1 = xin(i, m0, 2u * c + 1u) * X8;
        (*acc)[i] += d * vec4<f32>(i8_dot(w0, x0, x1), i8_dot(w1, x0, x1), i8_dot(w2, x0, x1), i8_dot(w3, x0, x1));
    }
//#endif
//#if W_I8ROW
    let w0 = wld(rw.x * cs + c);
    let w1 = wld(rw.y * cs + c);
    let w2 = wld(rw.z * cs + c);
    let w3 = wld(rw.w * cs + c);
    for (var i = 0u; i < MT; i++) {
        let x0 = xin(i, m0, 2u * c) * X8;
        let x1 = xin(i, m0, 2u * c + 1u) * X8;
        (*acc)[i] += vec4<f32>(i8_dot(w0, x0, x1), i8_dot(w1, x0, x1), i8_dot(w2, x0, x1), i8_dot(w3, x0, x1));
    }
//#endif
//#if W_AFF8
    let w0 = wld(rw.x * cs + c);
    let w1 = wld(rw.y * cs + c);
    let w2 = wld(rw.z * cs + c);
    let w3 = wld(rw.w * cs + c);
    // 4 << group_shift steps per group.
    let g = c >> (2u + p.group_shift);
    let gs = cs >> (2u + p.group_shift);
    let sb0 = scale_bias(sld(rw.x * gs + g));
    let sb1 = scale_bias(sld(rw.y * gs + g));
    let sb2 = scale_bias(sld(rw.z * gs + g));
    let sb3 = scale_bias(sld(rw.w * gs + g));
    let sc = vec4<f32>(sb0.x, sb1.x, sb2.x, sb3.x);
    let bi = vec4<f32>(sb0.y, sb1.y, sb2.y, sb3.y);
    for (var i = 0u; i < MT; i++) {
        let xa = xin(i, m0, 2u * c);
        let xb = xin(i, m0, 2u * c + 1u);
        let xs = xa + xb;
        let x0 = xa * X8;
        let x1 = xb * X8;
        (*acc)[i] += sc * vec4<f32>(u8_dot(w0, x0, x1), u8_dot(w1, x0, x1), u8_dot(w2, x0, x1), u8_dot(w3, x0, x1))
            + bi * (xs.x + xs.y + xs.z + xs.w);
    }
//#endif
//#if W_AFF4
    let w0 = wld(rw.x * cs + c);
    let w1 = wld(rw.y * cs + c);
    let w2 = wld(rw.z * cs + c);
    let w3 = wld(rw.w * cs + c);
    // 4 << group_shift steps per group.
    let g = c >> (2u + p.group_shift);
    let gs = cs >> (2u + p.group_shift);
    let sb0 = scale_bias(sld(rw.x * gs + g));
    let sb1 = scale_bias(sld(rw.y * gs + g));
    let sb2 = scale_bias(sld(rw.z * gs + g));
    let sb3 = scale_bias(sld(rw.w * gs + g));
    let sc = vec4<f32>(sb0.x, sb1.x, sb2.x, sb3.x);
    let bi = vec4<f32>(sb0.y, sb1.y, sb2.y, sb3.y);
    for (var i = 0u; i < MT; i++) {
        let xa = xin(i, m0, 2u * c);
        let xb = xin(i, m0, 2u * c + 1u);
        let xs = xa + xb;
        let x0 = xa * X4;
        let x1 = xb * X4;
        (*acc)[i] += sc * vec4<f32>(u4_dot(w0, x0, x1), u4_dot(w1, x0, x1), u4_dot(w2, x0, x1), u4_dot(w3, x0, x1))
            + bi * (xs.x + xs.y + xs.z + xs.w);
    }
//#endif
}

//#if !QKV_ATTN
//#if !MLP_SPLIT
@compute @workgroup_size(WG)
fn linear(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
//#if SUBGROUPS
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
//#endif
) {
    let n0 = (wid.y * nwg.x + wid.x) * R;
    if (n0 >= p.n) { return; } // uniform over the workgroup
    let m0 = wid.z * MT;

    // Weight rows of this workgroup (rows past N are clamped: computed, never stored).
    let rw = min(vec4<u32>(n0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u)) + vec4<u32>(p.row_offset);
    var acc: array<vec4<f32>, MT>;
    for (var i = 0u; i < MT; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    let inv_k = 1.0 / f32(p.k);
//#if IN_ATTN
    attend(lid);
//#endif

//#if IN_LAYER
//#if SUBGROUPS
    norm_stats(m0, lid, lane, sg_size);
//#else
    norm_stats(m0, lid);
//#endif
//#endif

    // Invocation l takes steps l, l + WG, l + 2·WG, …: consecutive invocations read consecutive
    // steps, so every load is coalesced. Four independent steps per iteration keep more loads in
    // flight (the kernel is bound by memory latency and bandwidth).
    let cs = p.chunks;
    var c = lid;
    for (; c + 3u * WG < cs; c += 4u * WG) {
        step(c, rw, m0, &acc);
        step(c + WG, rw, m0, &acc);
        step(c + 2u * WG, rw, m0, &acc);
        step(c + 3u * WG, rw, m0, &acc);
    }
    for (; c < cs; c += WG) {
        step(c, rw, m0, &acc);
    }

//#if IN_RMS
    // 1 / rms of each batch row: every x element was loaded once by one invocation of the group.
    var ssv: array<vec4<f32>, MT>;
    for (var i = 0u; i < MT; i++) {
        ssv[i] = vec4<f32>(aux[i].z, 0.0, 0.0, 0.0);
    }
//#if SUBGROUPS
    let ss = wg_sum(ssv, lid, lane, sg_size);
//#else
    let ss = wg_sum(ssv, lid);
//#endif
//#endif

//#if SUBGROUPS
    // Sum within each subgroup; its first invocation stores the sum in the subgroup's slot, then
    // the slots are added in order (deterministic). Subgroups are taken to be consecutive
    // invocations (local_invocation_index = subgroup id · subgroup_size + subgroup_invocation_id),
    // as on every WebGPU backend for one-dimensional workgroups; any subgroup size works.
    let nsub = (WG + sg_size - 1u) / sg_size;
    for (var i = 0u; i < MT; i++) {
        let v = subgroupAdd(acc[i]);
        if (lane == 0u) {
            red[i * WG + lid / sg_size] = v;
        }
    }
    workgroupBarrier();
    if (lid < MT * R) {
        let i = lid / R;
        let r = lid % R;
        var t = 0.0;
        for (var j = 0u; j < nsub; j++) {
            t += red[i * WG + j][r];
        }
//#else
    for (var i = 0u; i < MT; i++) {
        red[i * WG + lid] = acc[i];
    }
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
        if (lid < st) {
            for (var i = 0u; i < MT; i++) {
                red[i * WG + lid] += red[i * WG + lid + st];
            }
        }
        workgroupBarrier();
    }
    if (lid < MT * R) {
        let i = lid / R;
        let r = lid % R;
        var t = red[i * WG][r];
//#endif
        let n = n0 + r;
        let m = m0 + i;
        if (n < p.n && m < p.m) {
//#if IN_RMS
            t *= 1.0 / sqrt(ss[i].x * inv_k + p.eps);
//#endif
//#if W_I8ROW
            // bitsandbytes' 1/127 (int8_vectorwise_dequant), rounded to f32.
            t *= bitcast<f32>(s[p.row_offset + n]) * 0.007874015718698502;
//#endif
            let col = p.y_col + n;
            let yi = m * p.y_stride + col;
//#if KV_OUT
            fin[lid] = t;
//#else
//#if IN_ATTN
//#else
            if (p.has_bias != 0u) {
                t += bias[col];
            }
//#endif
            if (p.out_mode == 1u) {
                t += y[yi];
            } else if (p.out_mode == 2u) {
                t = y[yi] + scale[col] * t;
            }
//#endif
            y[yi] = t;
        }
    }
//#if KV_OUT
    // k and v into the ring cache: invocation l < 2·MT takes column pair n0 + 2·(l % 2) of batch
    // row m0 + l / 2.
    let pr = 2u * (lid % 2u);
    let pi = lid / 2u;
    let kcol = p.y_col + n0 + pr;
    let is_k = kcol >= p.kv_k_offset && kcol < p.kv_k_offset + p.kv_hd;
    let is_v = kcol >= p.kv_v_offset && kcol < p.kv_v_offset + p.kv_hd;
    let e = kcol - select(p.kv_v_offset, p.kv_k_offset, is_k); // even element of the cache row
    let pos = p.kv_pos0 + m0 + pi;
    let rot = lid < 2u * MT && is_k && p.kv_rope != 0u;
    if (rot) {
        ang[lid] = f32(pos) * freqs[(e % p.kv_head_dim) / 2u];
    }
    workgroupBarrier();
    if (lid < 2u * MT && (is_k || is_v) && n0 + pr + 1u < p.n && m0 + pi < p.m) {
        var v = vec2<f32>(fin[pi * R + pr], fin[pi * R + pr + 1u]);
        if (rot) {
            v = rotate(v, cos_sin(ang[lid]));
        }
        let slot = pos % p.kv_capacity;
        let dst = (select(1u, 0u, is_k) * p.kv_capacity + slot) * (p.kv_hd / 2u) + e / 2u;
//#if KV16
        cache[dst] = pack2x16float(v);
//#else
        cache[dst] = v;
//#endif
    }
//#endif
}
//#endif
//#endif

//#if MLP_SPLIT
// mlp_split (MLP_SPLIT; bindings: w = the MLP's first weight, s its scales, x [m, K] the input,
// w2 / s2 the second weight [N, H] in the same format, y = part [J, m, N], nw / nb the norm):
// workgroup j = wid.x (grid [J = H / MS_S, 1, 1]) computes hidden units [j·S, j·S + S) (S = MS_S)
// of the m ≤ MT batch rows. Phase 1: rows row_offset + j·S + r of w (GELU), or the gate rows
// row_offset + j·S + r and the up rows row_offset + H + j·S + r (ACT_SILU), r < S, as row quads
// exactly like qkv_attention's in-projection (norm on load, QL lanes per quad, a tree over the
// lanes) into hu, then the activation (GELU erf, or silu(g)·u: the formulas of IN_GELU / IN_SILU)
// into ha. Phase 2 (ph2 = true: step() reads w2 / s2 through wld / sld and xin reads ha): one
// invocation per row quad o of w2 sums its S / E steps of columns [j·S, j·S + S) and stores
// part[j, m, o] = Σ_{i<S} w2[o, j·S + i] · a[m, i] (times the int8-row scale of row o).
// S is a multiple of every format's block / group along K (32 or 64), so the column block is whole
// blocks / groups and the per-format scale indexing of step() holds.
var<workgroup> hu: array<f32, MT * 2u * MS_S>;        // per batch row: pre-activations (gate, up)
var<workgroup> ha: array<vec4<f32>, MT * MS_S / 4u>; // per batch row: the S activations
var<private> p_xoff: u32;                            // phase 2: first vec4 of the block along H
const_assert WG % QL == 0u;
const_assert MS_S % 64u == 0u;

@compute @workgroup_size(WG)
fn mlp_split(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
//#if SUBGROUPS
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
//#endif
) {
    let j = wid.x;
    let sq = MS_S / 4u; // quads per block
//#if IN_LAYER
//#if SUBGROUPS
    norm_stats(0u, lid, lane, sg_size);
//#else
    norm_stats(0u, lid);
//#endif
//#endif
//#if IN_RMS
//#if SUBGROUPS
    norm_stats(0u, lid, lane, sg_size);
//#else
    norm_stats(0u, lid);
//#endif
//#endif

//#if ACT_SILU
    let nq = 2u * sq;
//#else
    let nq = sq;
//#endif
    let slot_q = lid / QL;
    let ql = lid % QL;
    for (var q0 = 0u; q0 < nq; q0 += WG / QL) {
        let qi = min(q0 + slot_q, nq - 1u);
        let r0 = (qi / sq) * p.hidden + j * MS_S + 4u * (qi % sq) + p.row_offset;
        let rw = vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u);
        var acc: array<vec4<f32>, MT>;
        // Zeroed explicitly: a declaration inside a loop is not re-zeroed by every compiler.
        for (var i = 0u; i < MT; i++) {
            acc[i] = vec4<f32>(0.0);
        }
        for (var c = ql; c < p.chunks; c += QL) {
            step(c, rw, 0u, &acc);
        }
        for (var i = 0u; i < MT; i++) {
            red[i * WG + lid] = acc[i];
        }
        workgroupBarrier();
        for (var st = QL / 2u; st > 0u; st >>= 1u) {
            if (ql < st) {
                for (var i = 0u; i < MT; i++) {
                    red[i * WG + lid] += red[i * WG + lid + st];
                }
            }
            workgroupBarrier();
        }
        if (ql == 0u && q0 + slot_q < nq) {
            for (var i = 0u; i < MT; i++) {
                var v = red[i * WG + lid];
//#if IN_RMS
                v *= aux[i].w;
//#endif
//#if W_I8ROW
                v *= vec4<f32>(bitcast<f32>(s[rw.x]), bitcast<f32>(s[rw.y]), bitcast<f32>(s[rw.z]),
                    bitcast<f32>(s[rw.w])) * 0.007874015718698502;
//#endif
                let b = i * 2u * MS_S + 4u * qi;
                hu[b] = v.x;
                hu[b + 1u] = v.y;
                hu[b + 2u] = v.z;
                hu[b + 3u] = v.w;
            }
        }
        workgroupBarrier();
    }
    for (var e = lid; e < MT * sq; e += WG) {
        let b = (e / sq) * 2u * MS_S + 4u * (e % sq);
        let g = vec4<f32>(hu[b], hu[b + 1u], hu[b + 2u], hu[b + 3u]);
//#if ACT_SILU
        let u = vec4<f32>(hu[b + MS_S], hu[b + MS_S + 1u], hu[b + MS_S + 2u], hu[b + MS_S + 3u]);
        ha[e] = g / (1.0 + exp(-g)) * u;
//#else
        ha[e] = 0.5 * g * (1.0 + erf4(g * 0.70710678118654752));
//#endif
    }
    workgroupBarrier();

    ph2 = true;
    p_xoff = j * sq;
    let nc = MS_S * p.chunks2 / p.hidden; // steps of the block per w2 row
    let c0 = j * nc;
    for (var q = lid; 4u * q < p.n; q += WG) {
        let rw = min(vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u)) + vec4<u32>(p.row_offset2);
        var acc: array<vec4<f32>, MT>;
        // Zeroed explicitly: a declaration inside a loop is not re-zeroed by every compiler.
        for (var i = 0u; i < MT; i++) {
            acc[i] = vec4<f32>(0.0);
        }
        for (var c = c0; c < c0 + nc; c++) {
            step(c, rw, 0u, &acc);
        }
        for (var i = 0u; i < MT; i++) {
            var v = acc[i];
//#if W_I8ROW
            v *= vec4<f32>(bitcast<f32>(s2[rw.x]), bitcast<f32>(s2[rw.y]), bitcast<f32>(s2[rw.z]),
                bitcast<f32>(s2[rw.w])) * 0.007874015718698502;
//#endif
            if (i < p.m) {
                let b = (j * p.m + i) * p.n;
                for (var r = 0u; r < 4u; r++) {
                    if (4u * q + r < p.n) {
                        y[b + 4u * q + r] = v[r];
                    }
                }
            }
        }
    }
}
//#endif

//#if QKV_ATTN
// qkv_attention (QKV_ATTN with KV_OUT's bindings; y is the attention output [m, kv_hd]): workgroup
// h = wid.x computes head h's q, k and v rows of the in-projection (weight rows row_offset +
// {0, kv_hd, 2·kv_hd} + h·Dh + r, r < Dh) for the m ≤ MT batch rows into hq, as row quads: QL
// invocations per quad take steps ql, ql + QL, … of the 4 rows (step() above), WG / QL quads at
// a time, then a shared-memory tree over the QL lanes. Then k (RoPE) and v go into the ring as
// KV_OUT writes them, q is rotated and scaled, and each query's attention over its visible keys
// (read back from the cache after a storage barrier, so new keys are the stored ones) goes to
// y[m, h·Dh ..]: scores by invocation per key into qsc, max and Σ by trees over rr, then
// (WG / (Dh/2)) key groups × (Dh/2) dim pairs, summed over the groups in op.
var<workgroup> hq: array<f32, MT * 3u * QA_MAX_DH>; // per batch row: q (rotated, scaled), k, v
var<workgroup> qsc: array<f32, QA_MAX_KEYS>;         // one query's scores, then exp(score − max)
var<workgroup> qang: array<f32, MT * QA_MAX_DH / 2u>; // RoPE angles per batch row and pair
var<workgroup> rr: array<f32, WG>;
var<workgroup> op: array<vec2<f32>, WG>;
const QA_NEG: f32 = -3.0e38; // finite "minus infinity" (exp(QA_NEG − m) = 0, never NaN)
const_assert WG % QL == 0u;
const_assert 2u * WG >= QA_MAX_DH;

// Max (is_max) or sum of one f32 per invocation, returned to all (uniform control flow).
fn rr_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    rr[lid] = v;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
        if (lid < st) {
            rr[lid] = select(rr[lid] + rr[lid + st], max(rr[lid], rr[lid + st]), is_max);
        }
        workgroupBarrier();
    }
    let r = rr[0];
    workgroupBarrier();
    return r;
}

// Cache pair e (two elements) of row `row` (K rows 0 .. capacity − 1, then V rows).
fn kv_pair(row: u32, e: u32) -> vec2<f32> {
    let f = row * (p.kv_hd / 2u) + e;
//#if KV16
    return unpack2x16float(cache[f]);
//#else
    return cache[f];
//#endif
}

@compute @workgroup_size(WG)
fn qkv_attention(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
//#if SUBGROUPS
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
//#endif
) {
    let h = wid.x;
    let dh = p.kv_head_dim;
    let hd = p.kv_hd;
    let np = dh / 2u;
//#if RES_IN
    // x_l = x_{l−1} + ls2 ⊙ Σ_j part[j] (the sum in order j, as residual_sum) into xr; workgroup 0
    // also stores it for the launches after this one (res_out is never read here).
    let kq = p.k / 4u;
    for (var e = lid; e < p.m * kq; e += WG) {
        var t = vec4<f32>(0.0);
        for (var j = 0u; j < p.parts; j++) {
            t += x[j * p.m * kq + e];
        }
        let v = res[p.res_in + e] + pk[2u * kq + e % kq] * t;
        xr[e] = v;
        if (h == 0u) {
            res[p.res_out + e] = v;
        }
    }
    workgroupBarrier();
//#endif
//#if IN_LAYER
//#if SUBGROUPS
    norm_stats(0u, lid, lane, sg_size);
//#else
    norm_stats(0u, lid);
//#endif
//#endif
//#if IN_RMS
//#if SUBGROUPS
    norm_stats(0u, lid, lane, sg_size);
//#else
    norm_stats(0u, lid);
//#endif
//#endif

    // The head's 3·Dh rows as 3·Dh / 4 quads (Dh a multiple of 8: no quad straddles q, k, v).
    let nq = 3u * dh / 4u;
    let slot_q = lid / QL;
    let ql = lid % QL;
    for (var q0 = 0u; q0 < nq; q0 += WG / QL) {
        let qi = min(q0 + slot_q, nq - 1u);
        let r0 = ((4u * qi) / dh) * hd + h * dh + (4u * qi) % dh + p.row_offset;
        let rw = vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u);
        // Zeroed explicitly: a declaration inside a loop is not re-zeroed by every compiler.
        var acc: array<vec4<f32>, MT>;
        for (var i = 0u; i < MT; i++) {
            acc[i] = vec4<f32>(0.0);
        }
        for (var c = ql; c < p.chunks; c += QL) {
            step(c, rw, 0u, &acc);
        }
        for (var i = 0u; i < MT; i++) {
            red[i * WG + lid] = acc[i];
        }
        workgroupBarrier();
        for (var st = QL / 2u; st > 0u; st >>= 1u) {
            if (ql < st) {
                for (var i = 0u; i < MT; i++) {
                    red[i * WG + lid] += red[i * WG + lid + st];
                }
            }
            workgroupBarrier();
        }
        if (ql == 0u && q0 + slot_q < nq) {
            for (var i = 0u; i < MT; i++) {
                var v = red[i * WG + lid];
//#if IN_RMS
                v *= aux[i].w;
//#endif
//#if W_I8ROW
                // bitsandbytes' 1/127, rounded to f32 (as the linear entry point).
                v *= vec4<f32>(bitcast<f32>(s[rw.x]), bitcast<f32>(s[rw.y]), bitcast<f32>(s[rw.z]),
                    bitcast<f32>(s[rw.w])) * 0.007874015718698502;
//#endif
                let b = i * 3u * dh + 4u * qi;
                hq[b] = v.x;
                hq[b + 1u] = v.y;
                hq[b + 2u] = v.z;
                hq[b + 3u] = v.w;
            }
        }
        workgroupBarrier();
    }

    // RoPE angles (rounded to f32 through workgroup memory, as kv_append and attention), then k
    // and v into ring slot (kv_pos0 + i) % capacity, q rotated and scaled in place.
    for (var j = lid; j < MT * np; j += WG) {
        if (p.kv_rope != 0u) {
            qang[j] = f32(p.kv_pos0 + j / np) * freqs[j % np];
        }
    }
    workgroupBarrier();
    for (var j = lid; j < p.m * np; j += WG) {
        let i = j / np;
        let e = j % np;
        let b = i * 3u * dh + 2u * e;
        var qv = vec2<f32>(hq[b], hq[b + 1u]);
        var kv = vec2<f32>(hq[b + dh], hq[b + dh + 1u]);
        let vv = vec2<f32>(hq[b + 2u * dh], hq[b + 2u * dh + 1u]);
        if (p.kv_rope != 0u) {
            let cs = cos_sin(qang[j]);
            qv = rotate(qv, cs);
            kv = rotate(kv, cs);
        }
        hq[b] = qv.x * p.attn_scale;
        hq[b + 1u] = qv.y * p.attn_scale;
        let dst = ((p.kv_pos0 + i) % p.kv_capacity) * (hd / 2u) + h * np + e;
//#if KV16
        cache[dst] = pack2x16float(kv);
        cache[p.kv_capacity * (hd / 2u) + dst] = pack2x16float(vv);
//#else
        cache[dst] = kv;
        cache[p.kv_capacity * (hd / 2u) + dst] = vv;
//#endif
    }
    storageBarrier();
    workgroupBarrier();

    // Query i at pq = kv_pos0 + i sees pk in [lo, pq], lo = max(0, pq + 1 − window,
    // kv_pos0 + m − capacity).
    let end = p.kv_pos0 + p.m;
    let groups = WG / np;
    let g = lid / np;
    let e = lid % np;
    for (var i = 0u; i < MT; i++) {
        if (i < p.m) {
            let pq = p.kv_pos0 + i;
            var lo = 0u;
            if (pq + 1u > p.attn_window) {
                lo = pq + 1u - p.attn_window;
            }
            if (end > p.kv_capacity) {
                lo = max(lo, end - p.kv_capacity);
            }
            let n = pq + 1u - lo;
            let qb = i * 3u * dh;
            var mx = QA_NEG;
            for (var j = lid; j < n; j += WG) {
                let row = (lo + j) % p.kv_capacity;
                var s0 = 0.0;
                for (var d = 0u; d < np; d++) {
                    s0 += dot(kv_pair(row, h * np + d), vec2<f32>(hq[qb + 2u * d], hq[qb + 2u * d + 1u]));
                }
                qsc[j] = s0;
                mx = max(mx, s0);
            }
            mx = rr_reduce(mx, lid, true);
            var l = 0.0;
            for (var j = lid; j < n; j += WG) {
                let ex = exp(qsc[j] - mx);
                qsc[j] = ex;
                l += ex;
            }
            l = rr_reduce(l, lid, false);
            var o = vec2<f32>(0.0);
            if (g < groups) {
                for (var j = g; j < n; j += groups) {
                    o += qsc[j] * kv_pair(p.kv_capacity + (lo + j) % p.kv_capacity, h * np + e);
                }
            }
            op[lid] = o;
            workgroupBarrier();
            if (lid < np) {
                var t = vec2<f32>(0.0);
                for (var k = 0u; k < groups; k++) {
                    t += op[k * np + lid];
                }
                t = t / l;
                let ob = i * hd + h * dh + 2u * lid;
                y[ob] = t.x;
                y[ob + 1u] = t.y;
            }
            workgroupBarrier();
        }
    }
}
//#endif
