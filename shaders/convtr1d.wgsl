// convtr1d.wgsl: streaming causal ConvTranspose1d (spec §1.3) on channel-major activations.
//
// Layouts (f32, row-major, PyTorch [B=1, C, T] without the batch):
//   x        [C_in, T]           the T new input samples of this call
//   w        [C_in, C_out/G, K]  PyTorch ConvTranspose1d layout (G groups), K ≥ S
//   bias     [C_out]
//   y        [C_out, T·S]
//   partial  [C_out, K − S]      raw outputs carried to the next call, without bias
// The full transposed conv of the call has L = (T − 1)·S + K raw outputs
//   z[co, o] = Σ_{cl < C_in/G} Σ_{t, k: t·S + k = o} x[g·C_in/G + cl, t] · w[g·C_in/G + cl, co − g·C_out/G, k]
//              + (o < K − S ? partial_in[co, o] : 0),          g = co / (C_out/G), o in [0, L);
// the call emits y[co, o] = z[co, o] + bias[co] for o < T·S and keeps
// partial_out[co, j] = z[co, T·S + j] for j < K − S (no bias). With FIRST (stream start)
// partial_in is not read (zeros). With ELU_IN every x sample goes through ELU (alpha 1) as it is read.
// With Y_ROWS y is time-major, [T·S, C_out] (the rows a transformer runs on): y[co, o] is stored
// at o·C_out + co.
//
// Bindings (group 0):
//   0 x:           array<f32>, read        [C_in, T]
//   1 partial_in:  array<f32>, read        [C_out, K − S] (not read with FIRST; any 4-byte buffer when K = S)
//   2 w:           array<f32>, read        [C_in, C_out/G, K]
//   3 bias:        array<f32>, read        [C_out] (not read without HAS_BIAS)
//   4 y:           array<f32>, read_write  [C_out, T·S] ([T·S, C_out] with Y_ROWS)
//   5 partial_out: array<f32>, read_write  [C_out, K − S]; a different buffer from partial_in (ping-pong)
//   6 p:           Params (uniform, dynamic offset)
// Dispatch: @workgroup_size(WG); linear workgroup index g = wid.y · nwg.x + wid.x (2-D grid
// when more than 65535 groups are needed).
// Entry points:
//   convtr_direct: one invocation per raw output (co, o), linear index g·WG + lid = co·L + o.
//     For long T.
//   convtr_cols: a workgroup owns p.co_per_wg whole output channels [g·co_per_wg, …): their
//     n_cols = co_per_wg·K weight columns (co, k). Pass 1, for 8 input times at a time and 32
//     columns at a time: invocation lid = slice·32 + col sums over the input channels
//     cl ≡ slice (mod 8) of its column, then the 8 slices are added in shared memory, giving
//     zc[t, (co, k)] = Σ_cl x[ci, t] · w[ci, co_l, k] for all T in shared memory (T · n_cols ≤ ZC).
//     Pass 2: the overlap-add z[co, o] = Σ_t zc[t, (co, o − t·S)] (+ partial), invocations
//     striding over (co, o). For short T (streaming frames), where the weights dominate:
//     32 consecutive columns are 128 contiguous bytes of a weight row.

struct Params {
    c_in: u32,
    c_out: u32,
    k: u32,
    stride: u32,
    cin_g: u32,     // C_in / G
    cout_g: u32,    // C_out / G
    t_in: u32,      // T
    l_full: u32,    // L = (T − 1)·S + K
    emit: u32,      // T·S
    pk: u32,        // K − S
    flags: u32,     // HAS_BIAS | FIRST | ELU_IN | Y_ROWS
    co_per_wg: u32, // convtr_cols: output channels per workgroup
    n_cols: u32,    // convtr_cols: co_per_wg · K
    n_out: u32,     // convtr_direct: C_out · L
    _pad0: u32,
    _pad1: u32,
}

// Injected from the launcher: WG, COLS (weight columns per convtr_cols pass), ZC (the floats
// of zc) and the p.flags bits HAS_BIAS, FIRST, ELU_IN, Y_ROWS. The kernel bodies are written for:
const_assert WG == 256u && COLS == 32u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> partial_in: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial_out: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

fn xin(ci: u32, t: u32) -> f32 {
    let v = x[ci * p.t_in + t];
    if ((p.flags & ELU_IN) != 0u) {
        return select(exp(v) - 1.0, v, v > 0.0);
    }
    return v;
}

// First input time that reaches raw output o: the least t with o − t·S < K.
fn t_first(o: u32) -> u32 {
    if (o + p.stride >= p.k) {
        return (o + p.stride - p.k) / p.stride;
    }
    return 0u;
}

// Add the carried partial and route raw output z[co, o] to y (with bias) or to partial_out.
fn finish(co: u32, o: u32, z: f32) {
    var v = z;
    if (o < p.pk && (p.flags & FIRST) == 0u) {
        v += partial_in[co * p.pk + o];
    }
    if (o < p.emit) {
        if ((p.flags & HAS_BIAS) != 0u) {
            v += bias[co];
        }
        if ((p.flags & Y_ROWS) != 0u) {
            y[o * p.c_out + co] = v;
        } else {
            y[co * p.emit + o] = v;
        }
    } else {
        partial_out[co * p.pk + o - p.emit] = v;
    }
}

@compute @workgroup_size(WG)
fn convtr_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid.x;
    if (i >= p.n_out) {
        return;
    }
    let co = i / p.l_full;
    let o = i - co * p.l_full;
    let grp = co / p.cout_g;
    let co_l = co - grp * p.cout_g;
    let t_lo = t_first(o);
    let t_hi = min(o / p.stride + 1u, p.t_in);
    var acc = 0.0;
    for (var cl = 0u; cl < p.cin_g; cl++) {
        let ci = grp * p.cin_g + cl;
        let wrow = (ci * p.cout_g + co_l) * p.k;
        for (var t = t_lo; t < t_hi; t++) {
            acc += xin(ci, t) * w[wrow + o - t * p.stride];
        }
    }
    finish(co, o, acc);
}

// red[(slice · 8 + tt) · 32 + col]: per-slice partial sums of pass 1.
var<workgroup> red: array<f32, 2048>;
// zc[t · n_cols + col]: the reduced column products for every input time of the call.
var<workgroup> zc: array<f32, ZC>;

// x[ci, t0 + tt] (ELU'd), or 0 for tt ≥ nt.
fn xin_t(ci: u32, t0: u32, tt: u32, nt: u32) -> f32 {
    if (tt < nt) {
        return xin(ci, t0 + tt);
    }
    return 0.0;
}

// (lo, hi)[tt] += wv · x[ci, t0 + tt] for tt < nt. Accumulators are two vec4s rather than an
// indexed array (which could land in local memory).
fn cols_acc(lo: ptr<function, vec4<f32>>, hi: ptr<function, vec4<f32>>, ci: u32, wv: f32, t0: u32, nt: u32) {
    *lo += wv * vec4<f32>(xin_t(ci, t0, 0u, nt), xin_t(ci, t0, 1u, nt), xin_t(ci, t0, 2u, nt), xin_t(ci, t0, 3u, nt));
    if (nt > 4u) {
        *hi += wv * vec4<f32>(xin_t(ci, t0, 4u, nt), xin_t(ci, t0, 5u, nt), xin_t(ci, t0, 6u, nt), xin_t(ci, t0, 7u, nt));
    }
}

@compute @workgroup_size(WG)
fn convtr_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = wid.y * nwg.x + wid.x;
    let co0 = g * p.co_per_wg;
    let col = lid.x % 32u;
    let slice = lid.x / 32u;
    for (var t0 = 0u; t0 < p.t_in; t0 += 8u) {
        let nt = min(8u, p.t_in - t0);
        for (var c0 = 0u; c0 < p.n_cols; c0 += COLS) {
            var lo = vec4<f32>(0.0);
            var hi = vec4<f32>(0.0);
            let m = c0 + col;
            let co = co0 + m / p.k;
            if (m < p.n_cols && co < p.c_out) {
                let k = m % p.k;
                let grp = co / p.cout_g;
                let co_l = co - grp * p.cout_g;
                let wcol = co_l * p.k + k;
                let ci0 = grp * p.cin_g;
                // Four independent weight loads per step keep more memory requests in flight.
                var cl = slice;
                for (; cl + 24u < p.cin_g; cl += 32u) {
                    let w0 = w[(ci0 + cl) * p.cout_g * p.k + wcol];
                    let w1 = w[(ci0 + cl + 8u) * p.cout_g * p.k + wcol];
                    let w2 = w[(ci0 + cl + 16u) * p.cout_g * p.k + wcol];
                    let w3 = w[(ci0 + cl + 24u) * p.cout_g * p.k + wcol];
                    cols_acc(&lo, &hi, ci0 + cl, w0, t0, nt);
                    cols_acc(&lo, &hi, ci0 + cl + 8u, w1, t0, nt);
                    cols_acc(&lo, &hi, ci0 + cl + 16u, w2, t0, nt);
                    cols_acc(&lo, &hi, ci0 + cl + 24u, w3, t0, nt);
                }
                for (; cl < p.cin_g; cl += 8u) {
                    cols_acc(&lo, &hi, ci0 + cl, w[(ci0 + cl) * p.cout_g * p.k + wcol], t0, nt);
                }
            }
            let rb = slice * 256u + col;
            red[rb] = lo.x;
            red[rb + 32u] = lo.y;
            red[rb + 64u] = lo.z;
            red[rb + 96u] = lo.w;
            red[rb + 128u] = hi.x;
            red[rb + 160u] = hi.y;
            red[rb + 192u] = hi.z;
            red[rb + 224u] = hi.w;
            workgroupBarrier();
            {
                // lid = tt · 32 + c
                let tt = lid.x / 32u;
                let c = lid.x % 32u;
                var s = 0.0;
                for (var sl = 0u; sl < 8u; sl++) {
                    s += red[(sl * 8u + tt) * 32u + c];
                }
                if (tt < nt && c0 + c < p.n_cols) {
                    zc[(t0 + tt) * p.n_cols + c0 + c] = s;
                }
            }
            workgroupBarrier();
        }
    }
    // Pass 2: overlap-add. zc is complete (the last barrier above ordered every write).
    let n = p.co_per_wg * p.l_full;
    for (var j = lid.x; j < n; j += WG) {
        let cw = j / p.l_full;
        let o = j - cw * p.l_full;
        let co = co0 + cw;
        if (co < p.c_out) {
            let t_hi = min(o / p.stride + 1u, p.t_in);
            var z = 0.0;
            for (var t = t_first(o); t < t_hi; t++) {
                z += zc[t * p.n_cols + cw * p.k + o - t * p.stride];
            }
            finish(co, o, z);
        }
    }
}
