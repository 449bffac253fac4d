// sampling.wgsl: draw one token per logits row on the GPU (spec §3.3) and write its id into a u32
// token buffer, so that ids never visit the CPU.
//
// Layouts:
//   logits f32, row r element i at logits[p.logits_offset + r * p.row_stride + i], i < p.n
//          (row_stride 0 samples the same row many times, with different counters)
//   tokens u32; row r writes tokens[p.out_index + r]
// Bindings (group 0):
//   0 logits: array<f32>, read
//   1 tokens: array<u32>, read_write
//   2 p:      Params (uniform, dynamic offset)
// Dispatch: @workgroup_size(256), one workgroup per row; row = wid.y * nwg.x + wid.x (2-D grid
// beyond 65535 rows).
//
// Modes:
//   greedy (p.greedy = 1, temperature 0): argmax, ties -> lowest index.
//   sampling: exactly the top-k set (k = p.top_k; k = 0 or k >= n keeps every id) is chosen by a
//     radix select on the composite 64-bit key (ordered key of the logit, ~index), 8 bits per pass
//     from the top, stopping as soon as the k-th element's bin is taken whole. So ties at the k-th
//     largest value are broken toward the LOWEST indices, and the set always has exactly
//     min(k, n) members (k = 1 is greedy). Then the Gumbel-max trick: the winner is the argmax
//     over the set of logit / τ + G_i with G_i = -log(E_i), E_i = -log(U_i) ~ Exp(1) (PyTorch's
//     "exponential race" argmax p_i / E_i): a draw from softmax(logits / τ) restricted to the
//     top-k. Score ties (measure zero) -> lowest index.
//   Random numbers: U_i from the counter-based hash pcg4d(i, counter + r, stream, seed)
//     (Jarzynski & Olano 2020), 23 bits, U = (m + 0.5) / 2^23 in (0, 1); E = -log U, computed
//     with an atanh series when U > 0.75 so that small E keep full relative precision.
//   NaN logits rank below -inf and are never chosen (an all-NaN row writes 0xFFFFFFFF when
//   sampling, the lowest index when greedy). -0.0 and +0.0 are the same value.

struct Params {
    n: u32,             // logits per row
    logits_offset: u32, // element offset of row 0
    row_stride: u32,    // elements between rows
    rows: u32,          // rows (workgroups) in this launch
    out_index: u32,     // token element written by row 0
    top_k: u32,         // 0 or >= n: no truncation
    greedy: u32,        // 1: argmax
    seed: u32,
    counter: u32,       // row r uses counter + r
    stream: u32,        // which sampling site (text, audio codebook k, …)
    inv_temp: f32,      // 1 / τ
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> scan: array<u32, 256>;
var<workgroup> red_s: array<f32, 256>;
var<workgroup> red_k: array<u32, 256>;
var<workgroup> red_i: array<u32, 256>;
var<workgroup> sel_digit: u32;
var<workgroup> sel_remaining: u32;
var<workgroup> sel_count: u32;

const NONE: u32 = 0xffffffffu;

// Order-preserving u32 key of a float: a < b  <=>  okey(a) < okey(b); NaN -> 0 (below -inf),
// -0.0 -> the key of +0.0.
fn okey(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    let a = b & 0x7fffffffu;
    if (a > 0x7f800000u) { return 0u; }
    if (a == 0u) { return 0x80000000u; }
    return select(b | 0x80000000u, ~b, (b >> 31u) != 0u);
}

fn pcg4d(v_in: vec4<u32>) -> vec4<u32> {
    var v = v_in * 1664525u + 1013904223u;
    v.x += v.y * v.w;
    v.y += v.z * v.x;
    v.z += v.x * v.y;
    v.w += v.y * v.z;
    v = v ^ (v >> vec4<u32>(16u));
    v.x += v.y * v.w;
    v.y += v.z * v.x;
    v.z += v.x * v.y;
    v.w += v.y * v.z;
    return v;
}

// E ~ Exp(1) for element i of a draw.
fn exp_noise(i: u32, counter: u32) -> f32 {
    let h = pcg4d(vec4<u32>(i, counter, p.stream, p.seed)).x;
    let u = (f32(h >> 9u) + 0.5) * (1.0 / 8388608.0); // exact: 24 significant bits at most
    if (u <= 0.75) {
        return -log(u);
    }
    // -log(u) = 2 atanh(z), z = (1 - u) / (1 + u) <= 1/7 (1 - u is exact; the series is
    // truncated below 1e-11 relative).
    let z = (1.0 - u) / (1.0 + u);
    let z2 = z * z;
    return 2.0 * z * (1.0 + z2 * (1.0 / 3.0 + z2 * (1.0 / 5.0 + z2 * (1.0 / 7.0 + z2 * (1.0 / 9.0 + z2 * (1.0 / 11.0))))));
}

// Reduce (score, key, index) pairs held in red_* to slot 0: larger score wins, then larger key
// (greedy uses the key as its score), then the lower index; NONE loses to anything.
fn reduce_best(l: u32) {
    for (var off = 128u; off > 0u; off >>= 1u) {
        if (l < off) {
            let os = red_s[l + off];
            let ok = red_k[l + off];
            let oi = red_i[l + off];
            let ms = red_s[l];
            let mk = red_k[l];
            let mi = red_i[l];
            let better = os > ms || (os == ms && (ok > mk || (ok == mk && oi < mi)));
            if (oi != NONE && (mi == NONE || better)) {
                red_s[l] = os;
                red_k[l] = ok;
                red_i[l] = oi;
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn sample(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= p.rows) { return; }
    let l = lid3.x;
    let base = p.logits_offset + row * p.row_stride;
    let n = p.n;

    if (p.greedy != 0u) {
        var bk = 0u;
        var bi = NONE;
        for (var i = l; i < n; i += 256u) {
            let k = okey(logits[base + i]);
            if (bi == NONE || k > bk) { // i grows: strict > keeps the lowest index
                bk = k;
                bi = i;
            }
        }
        red_s[l] = 0.0;
        red_k[l] = bk;
        red_i[l] = bi;
        workgroupBarrier();
        reduce_best(l);
        if (l == 0u) { tokens[p.out_index + row] = red_i[0]; }
        return;
    }

    // Radix select of the k-th largest composite key (okey(logit), ~i), 8 bits per pass.
    var pk = 0u;   // key prefix found so far (unresolved low bits zero)
    var pi = 0u;   // ~index prefix (passes 4..7)
    var mk = 0u;   // mask of resolved key bits
    var mi = 0u;   // mask of resolved ~index bits
    var remaining = p.top_k;
    if (p.top_k != 0u && p.top_k < n) {
        for (var round = 0u; round < 8u; round++) {
            atomicStore(&hist[l], 0u);
            workgroupBarrier();
            let shift = 24u - 8u * (round & 3u);
            let on_key = round < 4u;
            for (var i = l; i < n; i += 256u) {
                let k = okey(logits[base + i]);
                let ni = ~i;
                if (on_key) {
                    if ((k & mk) == pk) { atomicAdd(&hist[(k >> shift) & 255u], 1u); }
                } else {
                    if (k == pk && (ni & mi) == pi) { atomicAdd(&hist[(ni >> shift) & 255u], 1u); }
                }
            }
            workgroupBarrier();
            let c = atomicLoad(&hist[l]);
            scan[l] = c;
            workgroupBarrier();
            // Inclusive suffix sums: scan[b] = Σ_{b' >= b} count[b'].
            for (var off = 1u; off < 256u; off <<= 1u) {
                var v = scan[l];
                if (l + off < 256u) { v += scan[l + off]; }
                workgroupBarrier();
                scan[l] = v;
                workgroupBarrier();
            }
            let s = scan[l];
            let above = s - c; // matching elements in higher bins
            if (above < remaining && s >= remaining) {
                sel_digit = l;
                sel_remaining = remaining - above;
                sel_count = c;
            }
            let digit = workgroupUniformLoad(&sel_digit);
            remaining = workgroupUniformLoad(&sel_remaining);
            let count = workgroupUniformLoad(&sel_count);
            if (on_key) {
                pk |= digit << shift;
                mk |= 255u << shift;
            } else {
                pi |= digit << shift;
                mi |= 255u << shift;
            }
            // Every element of the chosen bin is needed: the threshold with zero low bits is exact.
            if (count == remaining) { break; }
        }
    }

    // Gumbel-max over the set {(okey, ~i) >= (pk, pi)}.
    let counter = p.counter + row;
    var bs = 0.0;
    var bi = NONE;
    for (var i = l; i < n; i += 256u) {
        let x = logits[base + i];
        let k = okey(x);
        // k == 0 is NaN: never a candidate, so scores are never NaN.
        if (k != 0u && (k > pk || (k == pk && ~i >= pi))) {
            let s = x * p.inv_temp - log(exp_noise(i, counter));
            if (bi == NONE || s > bs) { // i grows: strict > keeps the lowest index
                bs = s;
                bi = i;
            }
        }
    }
    red_s[l] = bs;
    red_k[l] = 0u;
    red_i[l] = bi;
    workgroupBarrier();
    reduce_best(l);
    if (l == 0u) { tokens[p.out_index + row] = red_i[0]; }
}
