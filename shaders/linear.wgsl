// linear.wgsl: y[m, y_col + n] = Σ_k x[m, k] · W[row_offset + n, k] (+ bias[y_col + n]), n < p.n, for
// small M (gemv / thin gemm), one kernel body for every weight format, the format picked by a define.
// (y_col / y_stride let a weight split into several buffers write one output; usually y_col = 0 and
// y_stride = p.n.)
//
// Layouts (all row-major, little-endian u32 words):
//   x    [M, K] f32 (row stride K).     y [M, y_stride] f32.     bias [y_stride] f32.
//   W    [rows, K] in the format's GPU layout; the kernel reads rows row_offset .. row_offset + p.n - 1
//        (a row block of a stacked weight, without copying). Row r's codes start at u32 word
//        r · K · bits / 32, so a row is a run of 16-byte chunks (K is a multiple of the chunk width E):
//   W_F32     w: K f32 per row (E = 4: one vec4<f32>).                                  (no s)
//   W_BF16    w: K/2 u32 per row; element 2i in the low 16 bits of word i, 2i+1 in the high 16 bits;
//             bf16 -> f32 is a 16-bit shift (E = 8: one vec4<u32>).                      (no s)
//   W_Q8_0    w: int8 codes, 4 per u32 (byte j of word i = element 4i + j, two's complement);
//             block b (32 weights along K) of row r at word (r·K/32 + b)·8 (E = 32: two vec4<u32>).
//             s: the f16 block scales d, two per u32: flat block f = r·K/32 + b lives in word f/2,
//             low half if f is even (read with unpack2x16float). w = d · q.
//   W_AFF8    w: MLX affine 8-bit codes, u32-packed along the row, byte j of word i = element 4i + j,
//             unsigned (E = 32: two vec4<u32>).
//   W_AFF4    w: MLX affine 4-bit codes, nibble j (bits 4j..4j+3) of word i = element 8i + j,
//             unsigned (E = 32: one vec4<u32>).
//             s (both affine formats): one u32 per group of G = 32 << p.group_shift weights along K:
//             low 16 bits = bf16 scale, high 16 bits = bf16 bias; group g of row r at word r·K/G + g.
//             w = scale · q + bias.
// Bindings (group 0):
//   0 w:    array<vec4<u32>>, read     (weight codes / values; f32 weights are bitcast)
//   1 s:    array<u32>, read           (scales: Q8_0 f16 pairs, affine bf16 scale|bias; unused otherwise)
//   2 x:    array<vec4<f32>>, read     (activations [M, K]; K is a multiple of 4)
//   3 bias: array<f32>, read           (read only when p.has_bias != 0)
//   4 y:    array<f32>, read_write     (output [M, y_stride]; a different buffer from x and bias)
//   5 p:    Params (uniform, dynamic offset)
// Dispatch: @workgroup_size(64). A workgroup computes R = 4 consecutive output rows n0 .. n0+3 for MT
// consecutive batch rows (MT = 1, 2, 4 or 8 by define MT2/MT4/MT8): the row tile is
// t = wid.y · nwg.x + wid.x (2-D grid when more than 65535 tiles), n0 = 4t, and the batch tile is
// wid.z (m0 = MT · wid.z). The 64 invocations stride over the K/E chunks of the 4 rows (every weight
// word is read exactly once per dispatch), keep 4 × MT partial sums, and reduce them with
// subgroupAdd + a deterministic sum of the per-subgroup partials (SUBGROUPS) or a shared-memory tree.
// Rows past N and batch rows past M are clamped on load and skipped on store.

struct Params {
    n: u32,           // output rows N
    k: u32,           // input features K
    m: u32,           // batch rows M
    row_offset: u32,  // first weight row read
    chunks: u32,      // K / E
    group_shift: u32, // affine: group size = 32 << group_shift
    has_bias: u32,    // 1 = add bias[y_col + n]
    y_stride: u32,    // row stride of y (the N of the whole call)
    y_col: u32,       // first output column this dispatch writes
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> s: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

const WG: u32 = 64u;
const R: u32 = 4u;
//#if MT8
const MT: u32 = 8u;
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

var<workgroup> red: array<vec4<f32>, 512>; // WG · MT_max partial sums (8 KiB)

// bf16 words: element 2i is the low half, 2i+1 the high half.
fn bf16_lo(v: vec4<u32>) -> vec4<f32> {
    return bitcast<vec4<f32>>(v << vec4<u32>(16u));
}
fn bf16_hi(v: vec4<u32>) -> vec4<f32> {
    return bitcast<vec4<f32>>(v & vec4<u32>(0xffff0000u));
}
// Codes become floats without int->float conversions (quarter rate on many GPUs): a code placed in
// the mantissa of 2^23 (0x4B000000) reads as 2^23 + code, and the subtraction is exact. Codes stay
// at their bit position, so component j of a word's lane carries a power-of-two factor
// (16^j for nibbles, 256^j for bytes) that the x values were divided by beforehand (exact: powers
// of two), which saves the shifts.
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
// Signed bytes (two's complement) as (q0, 256·q1, q2, 256·q3): flip the sign bits to get q + 128.
fn i8x4(v: u32) -> vec4<f32> {
    let u = v ^ 0x80808080u;
    let h = u >> 16u;
    let f = bitcast<vec4<f32>>((vec4<u32>(u, u, h, h) & vec4<u32>(0xffu, 0xff00u, 0xffu, 0xff00u)) | vec4<u32>(MAGIC));
    return f - vec4<f32>(TWO23 + 128.0, TWO23 + 32768.0, TWO23 + 128.0, TWO23 + 32768.0);
}
// Nibbles 0..3 (lo) and 4..7 (hi) of a word as (n0, 16·n1, 256·n2, 4096·n3).
fn u4x4_lo(v: u32) -> vec4<f32> {
    let f = bitcast<vec4<f32>>((vec4<u32>(v) & vec4<u32>(0xfu, 0xf0u, 0xf00u, 0xf000u)) | vec4<u32>(MAGIC));
    return f - vec4<f32>(TWO23);
}
fn u4x4_hi(v: u32) -> vec4<f32> {
    return u4x4_lo(v >> 16u);
}
// Σ over a 32-element chunk of 8-bit codes (two vec4<u32>) times x (eight vec4<f32>, prescaled by X8).
fn dot8_signed(a: vec4<u32>, b: vec4<u32>, xc: array<vec4<f32>, 8>) -> f32 {
    return dot(i8x4(a.x), xc[0]) + dot(i8x4(a.y), xc[1]) + dot(i8x4(a.z), xc[2]) + dot(i8x4(a.w), xc[3])
         + dot(i8x4(b.x), xc[4]) + dot(i8x4(b.y), xc[5]) + dot(i8x4(b.z), xc[6]) + dot(i8x4(b.w), xc[7]);
}
fn dot8_unsigned(a: vec4<u32>, b: vec4<u32>, xc: array<vec4<f32>, 8>) -> f32 {
    return dot(u8x4(a.x), xc[0]) + dot(u8x4(a.y), xc[1]) + dot(u8x4(a.z), xc[2]) + dot(u8x4(a.w), xc[3])
         + dot(u8x4(b.x), xc[4]) + dot(u8x4(b.y), xc[5]) + dot(u8x4(b.z), xc[6]) + dot(u8x4(b.w), xc[7]);
}
// Σ over a 32-element chunk of nibbles (one vec4<u32>) times x (prescaled by X4).
fn dot4_unsigned(a: vec4<u32>, xc: array<vec4<f32>, 8>) -> f32 {
    return dot(u4x4_lo(a.x), xc[0]) + dot(u4x4_hi(a.x), xc[1]) + dot(u4x4_lo(a.y), xc[2]) + dot(u4x4_hi(a.y), xc[3])
         + dot(u4x4_lo(a.z), xc[4]) + dot(u4x4_hi(a.z), xc[5]) + dot(u4x4_lo(a.w), xc[6]) + dot(u4x4_hi(a.w), xc[7]);
}
fn scale_bias(v: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xffff0000u));
}

@compute @workgroup_size(64)
fn linear(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
//#if SUBGROUPS
    @builtin(subgroup_invocation_id) lane: u32,
//#endif
) {
    let n0 = (wid.y * nwg.x + wid.x) * R;
    if (n0 >= p.n) { return; } // uniform over the workgroup
    let m0 = wid.z * MT;

    // Absolute weight rows (clamped into range) and x row bases (in vec4 units, clamped).
    var rows: array<u32, 4>;
    for (var r = 0u; r < R; r++) {
        rows[r] = min(n0 + r, p.n - 1u) + p.row_offset;
    }
    let kv = p.k / 4u;
    var xb: array<u32, MT>;
    for (var i = 0u; i < MT; i++) {
        xb[i] = min(m0 + i, p.m - 1u) * kv;
    }
    var acc: array<vec4<f32>, MT>;
    for (var i = 0u; i < MT; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    for (var c = lid; c < p.chunks; c += WG) {
//#if W_F32
        // E = 4: one vec4<f32> per row.
        let w0 = bitcast<vec4<f32>>(w[rows[0] * kv + c]);
        let w1 = bitcast<vec4<f32>>(w[rows[1] * kv + c]);
        let w2 = bitcast<vec4<f32>>(w[rows[2] * kv + c]);
        let w3 = bitcast<vec4<f32>>(w[rows[3] * kv + c]);
        for (var i = 0u; i < MT; i++) {
            let xv = x[xb[i] + c];
            acc[i] += vec4<f32>(dot(w0, xv), dot(w1, xv), dot(w2, xv), dot(w3, xv));
        }
//#endif
//#if W_BF16
        // E = 8: one vec4<u32> per row (low halves = even elements, high halves = odd elements).
        let stride = p.chunks;
        let w0 = w[rows[0] * stride + c];
        let w1 = w[rows[1] * stride + c];
        let w2 = w[rows[2] * stride + c];
        let w3 = w[rows[3] * stride + c];
        for (var i = 0u; i < MT; i++) {
            let x0 = x[xb[i] + 2u * c];
            let x1 = x[xb[i] + 2u * c + 1u];
            let xe = vec4<f32>(x0.x, x0.z, x1.x, x1.z);
            let xo = vec4<f32>(x0.y, x0.w, x1.y, x1.w);
            acc[i] += vec4<f32>(
                dot(bf16_lo(w0), xe) + dot(bf16_hi(w0), xo),
                dot(bf16_lo(w1), xe) + dot(bf16_hi(w1), xo),
                dot(bf16_lo(w2), xe) + dot(bf16_hi(w2), xo),
                dot(bf16_lo(w3), xe) + dot(bf16_hi(w3), xo));
        }
//#endif
//#if W_Q8_0
        // E = 32: one block = two vec4<u32> of codes + one f16 scale per row.
        let stride = p.chunks;
        var qa: array<vec4<u32>, 4>;
        var qb: array<vec4<u32>, 4>;
        var d: vec4<f32>;
        for (var r = 0u; r < R; r++) {
            let blk = rows[r] * stride + c;
            qa[r] = w[2u * blk];
            qb[r] = w[2u * blk + 1u];
            let pair = unpack2x16float(s[blk >> 1u]);
            d[r] = select(pair.x, pair.y, (blk & 1u) != 0u);
        }
        for (var i = 0u; i < MT; i++) {
            var xc: array<vec4<f32>, 8>;
            for (var j = 0u; j < 8u; j++) {
                xc[j] = x[xb[i] + 8u * c + j] * X8;
            }
            acc[i] += d * vec4<f32>(
                dot8_signed(qa[0], qb[0], xc), dot8_signed(qa[1], qb[1], xc),
                dot8_signed(qa[2], qb[2], xc), dot8_signed(qa[3], qb[3], xc));
        }
//#endif
//#if W_AFF8
        // E = 32: two vec4<u32> of codes per row, one (scale, bias) word per group.
        let stride = p.chunks;
        let gstride = p.chunks >> p.group_shift;
        let g = c >> p.group_shift;
        var qa: array<vec4<u32>, 4>;
        var qb: array<vec4<u32>, 4>;
        var sc: vec4<f32>;
        var bi: vec4<f32>;
        for (var r = 0u; r < R; r++) {
            let blk = rows[r] * stride + c;
            qa[r] = w[2u * blk];
            qb[r] = w[2u * blk + 1u];
            let sb = scale_bias(s[rows[r] * gstride + g]);
            sc[r] = sb.x;
            bi[r] = sb.y;
        }
        for (var i = 0u; i < MT; i++) {
            var xc: array<vec4<f32>, 8>;
            var xs = vec4<f32>(0.0);
            for (var j = 0u; j < 8u; j++) {
                let xv = x[xb[i] + 8u * c + j];
                xs += xv;
                xc[j] = xv * X8;
            }
            let xsum = xs.x + xs.y + xs.z + xs.w;
            acc[i] += sc * vec4<f32>(
                dot8_unsigned(qa[0], qb[0], xc), dot8_unsigned(qa[1], qb[1], xc),
                dot8_unsigned(qa[2], qb[2], xc), dot8_unsigned(qa[3], qb[3], xc)) + bi * xsum;
        }
//#endif
//#if W_AFF4
        // E = 32: one vec4<u32> of nibbles per row, one (scale, bias) word per group.
        let stride = p.chunks;
        let gstride = p.chunks >> p.group_shift;
        let g = c >> p.group_shift;
        var qa: array<vec4<u32>, 4>;
        var sc: vec4<f32>;
        var bi: vec4<f32>;
        for (var r = 0u; r < R; r++) {
            qa[r] = w[rows[r] * stride + c];
            let sb = scale_bias(s[rows[r] * gstride + g]);
            sc[r] = sb.x;
            bi[r] = sb.y;
        }
        for (var i = 0u; i < MT; i++) {
            var xc: array<vec4<f32>, 8>;
            var xs = vec4<f32>(0.0);
            for (var j = 0u; j < 8u; j++) {
                let xv = x[xb[i] + 8u * c + j];
                xs += xv;
                xc[j] = xv * X4;
            }
            let xsum = xs.x + xs.y + xs.z + xs.w;
            acc[i] += sc * vec4<f32>(
                dot4_unsigned(qa[0], xc), dot4_unsigned(qa[1], xc),
                dot4_unsigned(qa[2], xc), dot4_unsigned(qa[3], xc)) + bi * xsum;
        }
//#endif
    }

//#if SUBGROUPS
    // Sum within each subgroup; its first lane writes the sum, every other invocation a zero, so
    // the 64 shared entries add up to the workgroup's sum whatever the subgroup size and however
    // invocations map to subgroups; then each output is summed in index order (deterministic).
    for (var i = 0u; i < MT; i++) {
        let v = subgroupAdd(acc[i]);
        red[i * WG + lid] = select(vec4<f32>(0.0), v, lane == 0u);
    }
    workgroupBarrier();
    if (lid < MT * R) {
        let i = lid / R;
        let r = lid % R;
        var t = 0.0;
        for (var j = 0u; j < WG; j++) {
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
            let col = p.y_col + n;
            if (p.has_bias != 0u) {
                t += bias[col];
            }
            y[m * p.y_stride + col] = t;
        }
    }
}
