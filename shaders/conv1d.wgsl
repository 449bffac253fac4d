// conv1d.wgsl: streaming causal Conv1d (spec §1.3) on channel-major activations.
//
// Layouts (f32, row-major, PyTorch [B=1, C, T] without the batch):
//   x      [C_in, T_in]        the T_in new input samples of this call (T_in = T_out · S)
//   state  [C_in, P]           the last P samples of the stream, P = K_eff − S, K_eff = (K − 1)·d + 1
//   w      [C_out, C_in/G, K]  PyTorch Conv1d layout (G groups)
//   bias   [C_out]
//   y      [C_out, T_out]
// The call is a VALID convolution over the window win = cat(state, x) (length P + T_in):
//   y[co, t] = bias[co] + Σ_{cl < C_in/G} Σ_{k < K} w[co, cl, k] · win[g·C_in/G + cl, t·S + k·d],
//   g = co / (C_out/G), and the new state is the last P columns of win: state'[ci, j] = win[ci, T_in + j].
// With FIRST (stream start) the state is not read: it is zeros, or with REPLICATE P copies of
// x[ci, 0]. With ELU_IN every x sample goes through ELU (alpha 1) as it is read, so the state
// holds ELU'd samples: the call computes conv(ELU(x)) exactly as an ELU module before the conv.
// With ACCUMULATE the result is added to y (y += conv(...)), e.g. a residual branch.
// With X_ROWS x is time-major, [T_in, C_in] (a transformer's rows): x[ci, t] is read at t·C_in + ci.
// With Y_ROWS y is time-major, [T_out, C_out] (the rows a transformer runs on): y[co, t] is
// stored at t·C_out + co.
//
// Bindings (group 0):
//   0 x:         array<f32>, read        [C_in, T_in] ([T_in, C_in] with X_ROWS)
//   1 state_in:  array<f32>, read        [C_in, P] (not read with FIRST; any 4-byte buffer when P = 0)
//   2 w:         array<f32>, read        [C_out, C_in/G, K]
//   3 bias:      array<f32>, read        [C_out] (not read without HAS_BIAS)
//   4 y:         array<f32>, read_write  [C_out, T_out] ([T_out, C_out] with Y_ROWS)
//   5 state_out: array<f32>, read_write  [C_in, P]; a different buffer from state_in (ping-pong)
//   6 p:         Params (uniform, dynamic offset)
// Dispatch: @workgroup_size(WG); linear workgroup index g = wid.y · nwg.x + wid.x (2-D grid
// when more than 65535 groups are needed). Groups g < p.main_groups compute y; groups
// g ≥ p.main_groups write state_out, one invocation per element (C_in·P elements).
// Entry points:
//   conv1d_direct: one invocation per (output time, COT output channels); a workgroup covers
//     64 output times × 4·COT output channels: tile = g mod p.tiles_t gives the times
//     [64·tile, 64·tile + 64), g / p.tiles_t the channels. Each invocation loops over the
//     C_in/G · K reduction. COT (override, 1 or 4) must divide C_out/G. For long T.
//   conv1d_tiled: implicit GEMM, G = 1 or C_out/G a multiple of 32. A workgroup computes 32
//     output channels × 64 output times: g / p.tiles_t gives channels [32·(g / tiles_t), +32),
//     g mod p.tiles_t the times [64·(g mod tiles_t), +64); invocation lid computes channels
//     +2·(lid / 16) + {0, 1} and times +(lid mod 16) + 16·{0..3}. The reduction runs in chunks of
//     32 indices r = cl·K + k: weights and the im2col window (ELU applied once per element) are
//     staged in shared memory.
//   conv1d_rows: 4 output channels × 8 output times per workgroup (channels 4·(g / p.tiles_t) +
//     lid / 64, times 8·(g mod p.tiles_t) + 0..7), 64 lanes per channel stride over the contiguous
//     weight row (C_in/G · K), then a shared-memory reduction. For short T (streaming frames),
//     where the weights dominate, and mid T (many workgroups, short reductions).
//     With the define W_VEC4 (C_in/G · K a multiple of 4), w is bound as array<vec4<f32>> and only
//     conv1d_rows is compiled.

struct Params {
    c_in: u32,
    c_out: u32,
    k: u32,
    stride: u32,
    dilation: u32,
    cin_g: u32,       // C_in / G
    cout_g: u32,      // C_out / G
    pad: u32,         // P
    t_in: u32,
    t_out: u32,
    flags: u32,       // HAS_BIAS | FIRST | REPLICATE | ELU_IN | ACCUMULATE | X_ROWS | Y_ROWS
    main_groups: u32, // workgroups that compute y; the rest update the state
    tiles_t: u32,     // direct, tiled: number of 64-wide time tiles; rows: of 8-wide ones
    state_n: u32,     // C_in · P
    _pad0: u32,
    _pad1: u32,
}

// Injected from the launcher: WG, the tile geometry TILE_T (times per conv1d_direct and
// conv1d_tiled workgroup), TILE_CO (channels per conv1d_tiled workgroup), ROWS_CO and ROWS_T
// (channels and times per conv1d_rows workgroup), and the p.flags bits HAS_BIAS, FIRST,
// REPLICATE, ELU_IN, ACCUMULATE, X_ROWS, Y_ROWS. The kernel bodies are written for these values:
const_assert WG == 256u && TILE_T == 64u && TILE_CO == 32u && ROWS_CO == 4u && ROWS_T == 8u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> state_in: array<f32>;
//#if W_VEC4
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
//#else
@group(0) @binding(2) var<storage, read> w: array<f32>;
//#endif
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> state_out: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

// Output channels per invocation in conv1d_direct (1 or 4; must divide C_out/G).
override COT: u32 = 4u;

fn act(v: f32) -> f32 {
    if ((p.flags & ELU_IN) != 0u) {
        return select(exp(v) - 1.0, v, v > 0.0);
    }
    return v;
}

// x[ci, t] in either layout.
fn x_at(ci: u32, t: u32) -> f32 {
    if ((p.flags & X_ROWS) != 0u) {
        return x[t * p.c_in + ci];
    }
    return x[ci * p.t_in + t];
}

// win[ci, pos] for pos in [0, P + T_in).
fn win(ci: u32, pos: u32) -> f32 {
    if (pos >= p.pad) {
        return act(x_at(ci, pos - p.pad));
    }
    if ((p.flags & FIRST) != 0u) {
        if ((p.flags & REPLICATE) != 0u) {
            return act(x_at(ci, 0u));
        }
        return 0.0;
    }
    return state_in[ci * p.pad + pos];
}

fn store(co: u32, t: u32, acc: f32) {
    var v = acc;
    if ((p.flags & HAS_BIAS) != 0u) {
        v += bias[co];
    }
    var i = co * p.t_out + t;
    if ((p.flags & Y_ROWS) != 0u) {
        i = t * p.c_out + co;
    }
    if ((p.flags & ACCUMULATE) != 0u) {
        v += y[i];
    }
    y[i] = v;
}

// state'[ci, j] = win[ci, T_in + j], invocation i of the state-update groups.
fn update_state(g: u32, lid: u32) {
    let i = (g - p.main_groups) * WG + lid;
    if (i < p.state_n) {
        let ci = i / p.pad;
        let j = i - ci * p.pad;
        state_out[i] = win(ci, p.t_in + j);
    }
}

//#if !W_VEC4
@compute @workgroup_size(WG)
fn conv1d_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= p.main_groups) {
        update_state(g, lid.x);
        return;
    }
    let t = (g % p.tiles_t) * TILE_T + lid.x % TILE_T;
    let co0 = ((g / p.tiles_t) * (WG / TILE_T) + lid.x / TILE_T) * COT;
    if (t >= p.t_out || co0 >= p.c_out) {
        return;
    }
    let ci0 = (co0 / p.cout_g) * p.cin_g;
    let r_len = p.cin_g * p.k;
    // Private accumulators are vectors, never dynamically indexed arrays (those can end up in
    // slow local memory).
    var acc = vec4<f32>(0.0);
    for (var cl = 0u; cl < p.cin_g; cl++) {
        let ci = ci0 + cl;
        for (var k = 0u; k < p.k; k++) {
            let xv = win(ci, t * p.stride + k * p.dilation);
            let r = cl * p.k + k;
            if (COT == 4u) {
                acc += xv * vec4<f32>(w[co0 * r_len + r], w[(co0 + 1u) * r_len + r],
                    w[(co0 + 2u) * r_len + r], w[(co0 + 3u) * r_len + r]);
            } else {
                acc.x += xv * w[co0 * r_len + r];
            }
        }
    }
    store(co0, t, acc.x);
    if (COT == 4u) {
        store(co0 + 1u, t, acc.y);
        store(co0 + 2u, t, acc.z);
        store(co0 + 3u, t, acc.w);
    }
}

// conv1d_tiled: ws[kk · 33 + m] (weights, transposed, padded against bank conflicts) and
// xs[kk · 64 + n] (the im2col window) for one chunk of 32 reduction indices.
var<workgroup> ws: array<f32, 1056>;
var<workgroup> xs: array<f32, 2048>;

// Store v at channel co, times t, t + 16, t + 32, t + 48 (where inside the output).
fn tile_store(co: u32, t: u32, v: vec4<f32>) {
    if (co >= p.c_out) {
        return;
    }
    if (t < p.t_out) {
        store(co, t, v.x);
    }
    if (t + 16u < p.t_out) {
        store(co, t + 16u, v.y);
    }
    if (t + 32u < p.t_out) {
        store(co, t + 32u, v.z);
    }
    if (t + 48u < p.t_out) {
        store(co, t + 48u, v.w);
    }
}

@compute @workgroup_size(WG)
fn conv1d_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= p.main_groups) {
        update_state(g, lid.x);
        return;
    }
    let m0 = (g / p.tiles_t) * TILE_CO;
    let n0 = (g % p.tiles_t) * TILE_T;
    // This invocation: channels m0 + 2·ty + i (i < 2), times n0 + tx + 16·j (j < 4).
    let tx = lid.x % 16u;
    let ty = lid.x / 16u;
    // Every channel of the tile is in one group (C_out/G is a multiple of 32, or G = 1).
    let ci0 = (m0 / p.cout_g) * p.cin_g;
    let r_len = p.cin_g * p.k;
    var acc0 = vec4<f32>(0.0); // channel +2·ty, times +tx + 16·{0..3}
    var acc1 = vec4<f32>(0.0); // channel +2·ty + 1
    for (var r0 = 0u; r0 < r_len; r0 += 32u) {
        for (var i = 0u; i < 4u; i++) {
            // e = m · 32 + kk: a warp reads 32 consecutive weights of one row.
            let e = lid.x + 256u * i;
            let m = e / 32u;
            let kk = e % 32u;
            let co = m0 + m;
            let r = r0 + kk;
            var v = 0.0;
            if (co < p.c_out && r < r_len) {
                v = w[co * r_len + r];
            }
            ws[kk * 33u + m] = v;
        }
        for (var i = 0u; i < 8u; i++) {
            // e = kk · 64 + n
            let e = lid.x + 256u * i;
            let kk = e / 64u;
            let n = e % 64u;
            let r = r0 + kk;
            let t = n0 + n;
            var v = 0.0;
            if (r < r_len && t < p.t_out) {
                let cl = r / p.k;
                let k = r - cl * p.k;
                v = win(ci0 + cl, t * p.stride + k * p.dilation);
            }
            xs[e] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 32u; kk++) {
            let a0 = ws[kk * 33u + 2u * ty];
            let a1 = ws[kk * 33u + 2u * ty + 1u];
            let xb = kk * 64u + tx;
            let b = vec4<f32>(xs[xb], xs[xb + 16u], xs[xb + 32u], xs[xb + 48u]);
            acc0 += a0 * b;
            acc1 += a1 * b;
        }
        workgroupBarrier();
    }
    tile_store(m0 + 2u * ty, n0 + tx, acc0);
    tile_store(m0 + 2u * ty + 1u, n0 + tx, acc1);
}
//#endif

// conv1d_rows: red[tt · 256 + lid] holds lane partial sums, red2[row · 64 + tt · 8 + seg] the
// sums of 8 lanes each.
var<workgroup> red: array<f32, 2048>;
var<workgroup> red2: array<f32, 256>;

// win[ci, base + tt·S], or 0 for tt ≥ nt.
fn win_t(ci: u32, base: u32, tt: u32, nt: u32) -> f32 {
    if (tt < nt) {
        return win(ci, base + tt * p.stride);
    }
    return 0.0;
}

// (lo, hi)[tt] += wv · win[ci, (t0 + tt)·S + k·d] for the reduction index r = cl·K + k, tt < nt.
// Accumulators are two vec4s rather than an indexed array (which could land in local memory).
fn rows_acc(lo: ptr<function, vec4<f32>>, hi: ptr<function, vec4<f32>>, r: u32, wv: f32, ci0: u32, t0: u32, nt: u32) {
    let cl = r / p.k;
    let k = r - cl * p.k;
    let ci = ci0 + cl;
    let b = t0 * p.stride + k * p.dilation;
    *lo += wv * vec4<f32>(win_t(ci, b, 0u, nt), win_t(ci, b, 1u, nt), win_t(ci, b, 2u, nt), win_t(ci, b, 3u, nt));
    if (nt > 4u) {
        *hi += wv * vec4<f32>(win_t(ci, b, 4u, nt), win_t(ci, b, 5u, nt), win_t(ci, b, 6u, nt), win_t(ci, b, 7u, nt));
    }
}

fn rows_acc4(lo: ptr<function, vec4<f32>>, hi: ptr<function, vec4<f32>>, r: u32, wv: vec4<f32>, ci0: u32, t0: u32, nt: u32) {
    rows_acc(lo, hi, r, wv.x, ci0, t0, nt);
    rows_acc(lo, hi, r + 1u, wv.y, ci0, t0, nt);
    rows_acc(lo, hi, r + 2u, wv.z, ci0, t0, nt);
    rows_acc(lo, hi, r + 3u, wv.w, ci0, t0, nt);
}

@compute @workgroup_size(WG)
fn conv1d_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= p.main_groups) {
        update_state(g, lid.x);
        return;
    }
    let lane = lid.x % 64u;
    // Every invocation takes part in the barriers; rows past C_out compute a copy of the last row
    // and store nothing.
    // g = channel group · tiles_t + time chunk: 4 channels × 8 output times per workgroup.
    let cg = g / p.tiles_t;
    let t0 = (g % p.tiles_t) * ROWS_T;
    let co = min(cg * ROWS_CO + lid.x / (WG / ROWS_CO), p.c_out - 1u);
    let ci0 = (co / p.cout_g) * p.cin_g;
    let r_len = p.cin_g * p.k;
    let wrow = co * r_len;
    {
        let nt = min(8u, p.t_out - t0);
        var lo = vec4<f32>(0.0);
        var hi = vec4<f32>(0.0);
//#if W_VEC4
        // The row as vec4s (r_len is a multiple of 4): two independent 16-byte loads per step.
        let qrow = wrow / 4u;
        let q_len = r_len / 4u;
        var q = lane;
        for (; q + 64u < q_len; q += 128u) {
            let w0 = w[qrow + q];
            let w1 = w[qrow + q + 64u];
            rows_acc4(&lo, &hi, 4u * q, w0, ci0, t0, nt);
            rows_acc4(&lo, &hi, 4u * (q + 64u), w1, ci0, t0, nt);
        }
        for (; q < q_len; q += 64u) {
            rows_acc4(&lo, &hi, 4u * q, w[qrow + q], ci0, t0, nt);
        }
//#else
        // Four independent weight loads per step keep more memory requests in flight.
        var r = lane;
        for (; r + 192u < r_len; r += 256u) {
            let w0 = w[wrow + r];
            let w1 = w[wrow + r + 64u];
            let w2 = w[wrow + r + 128u];
            let w3 = w[wrow + r + 192u];
            rows_acc(&lo, &hi, r, w0, ci0, t0, nt);
            rows_acc(&lo, &hi, r + 64u, w1, ci0, t0, nt);
            rows_acc(&lo, &hi, r + 128u, w2, ci0, t0, nt);
            rows_acc(&lo, &hi, r + 192u, w3, ci0, t0, nt);
        }
        for (; r < r_len; r += 64u) {
            rows_acc(&lo, &hi, r, w[wrow + r], ci0, t0, nt);
        }
//#endif
        red[lid.x] = lo.x;
        red[256u + lid.x] = lo.y;
        red[512u + lid.x] = lo.z;
        red[768u + lid.x] = lo.w;
        red[1024u + lid.x] = hi.x;
        red[1280u + lid.x] = hi.y;
        red[1536u + lid.x] = hi.z;
        red[1792u + lid.x] = hi.w;
        workgroupBarrier();
        {
            // lid = row · 64 + tt · 8 + seg: sum lanes [8·seg, 8·seg + 8) of (row, tt).
            let row = lid.x / 64u;
            let tt = (lid.x % 64u) / 8u;
            let seg = lid.x % 8u;
            let base = tt * 256u + row * 64u + seg * 8u;
            var s = 0.0;
            for (var i = 0u; i < 8u; i++) {
                s += red[base + i];
            }
            red2[lid.x] = s;
        }
        workgroupBarrier();
        if (lid.x < 32u) {
            // lid = row · 8 + tt
            let row = lid.x / 8u;
            let tt = lid.x % 8u;
            var s = 0.0;
            for (var seg = 0u; seg < 8u; seg++) {
                s += red2[row * 64u + tt * 8u + seg];
            }
            let co_out = cg * 4u + row;
            if (co_out < p.c_out && tt < nt) {
                store(co_out, t0 + tt, s);
            }
        }
    }
}
