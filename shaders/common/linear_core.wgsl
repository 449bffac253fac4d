// common/linear_core.wgsl: the part of the linear kernel family that every entry point shares —
// Params, bindings, the weight formats' loads (wld / sld) and dot products, the input transforms
// (xin, norm_stats), the workgroup reductions and step(), which sums E elements of 4 weight rows.
// Layouts, bindings and defines are documented in linear.wgsl's header; linear.wgsl (the `linear`
// entry point) and layer.wgsl (`qkv_attention`, `mlp_split`) include it.

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
// RES_IN (qkv_attention, res_linear): x is the partial outputs [parts, m, K] of the previous layer's
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
//#if RES_IN
    return xld(b);
//#else
    return x[b];
//#endif
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
