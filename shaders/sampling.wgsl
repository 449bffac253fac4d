// sampling.wgsl: draw one token per logits row on the GPU (spec §3.3) and write its id into a u32
// token buffer, so that ids never visit the CPU.
//
// Layouts:
//   logits f32, row r element i at logits[p.logits_offset + r * p.row_stride + i], i < p.n
//          (row_stride 0 samples the same row many times, with different counters)
//   tokens u32; draw d (d < D = max(p.draws, 1)) of row r writes tokens[p.out_index + r * D + d]
//          and uses the counter p.counter + r * D + d
// Bindings (group 0):
//   0 logits: array<f32>, read
//   1 tokens: array<u32>, read_write
//   2 p:      Params (uniform, dynamic offset)
// EMBED (entry sample_embed, the sampler fused with the next embedding gather):
//   2 table:  array<u32>, read        (embedding-table pieces, embed.wgsl's layout)
//   3 out:    array<f32>, read_write  (the gathered row goes to out[emb_out ..])
//   4 p:      Params
// sample_embed: one workgroup (one row, p.draws = 0) draws the token as `sample` does, writes it,
// then its WG invocations gather elements d, d + WG, … of the token's table row into out.
// Dispatch: @workgroup_size(WG) (WG injected from the launcher; the radix bins, the 16 x 16
// reductions and the workgroup arrays below are written for WG = 256), one workgroup per row;
// row = wid.y * nwg.x + wid.x (2-D grid
// beyond 65535 rows). With p.draws = D > 0 (D <= 256) the top-k set is found once per row, then
// invocation d < D computes draw d alone by a sequential pass over the row (cheap many draws
// from a small vocabulary, e.g. for statistical tests). Each thread reads elements l, l + 256, … of the row, 4 loads per loop trip.
//
// Modes:
//   greedy (p.greedy = 1, temperature 0): argmax, ties -> lowest index.
//   sampling: exactly the top-k set (k = p.top_k; k = 0 or k >= n keeps every id) is chosen by a
//     radix select on the composite 64-bit key (ordered key of the logit, ~index), 8 bits per round
//     from the top (a histogram round over the row, then one thread walks the 256 bin counts
//     from the top in two levels of 16), stopping as soon as the k-th element's bin is taken whole. So ties at the k-th
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
    draws: u32,         // 0: one draw per row (parallel); D > 0: D draws per row, one per thread
    // sample_embed only: the table piece gathered for the drawn token (embed.wgsl's descriptor)
    emb_kind: u32,       // format code (kind | group shift << 4)
    emb_first: u32,      // first id of the piece
    emb_rows: u32,       // ids emb_first .. emb_first + emb_rows are in the piece
    emb_base: u32,       // word offset of the piece in `table`
    emb_dim: u32,        // elements per row
    emb_out: u32,        // element of `out` that receives element 0
    emb_accumulate: u32, // 1: out += row, 0: out = row
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> tokens: array<u32>;
//#if EMBED
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
//#include "common/table.wgsl"
//#else
@group(0) @binding(2) var<uniform> p: Params;
//#endif

// Radix histograms, replicated 8 times (copy = lane % 8) so that the many equal digits of the
// first rounds (logits share their top exponent bits) do not all hit one shared-memory word.
var<workgroup> hist: array<atomic<u32>, 2048>;
var<workgroup> cnt: array<u32, 256>;   // per-bin counts of a round
var<workgroup> gsum: array<u32, 16>;   // per 16-bin group sums
var<workgroup> sel: vec3<u32>;         // chosen digit, remaining, its bin count
var<workgroup> red_s: array<f32, 256>;
var<workgroup> red_k: array<u32, 256>;
var<workgroup> red_i: array<u32, 256>;
var<workgroup> red2_s: array<f32, 16>;
var<workgroup> red2_k: array<u32, 16>;
var<workgroup> red2_i: array<u32, 16>;

const NONE: u32 = 0xffffffffu;
// Elements per thread per loop trip: 4 independent loads issued back to back (indices
// i0 + WG j, j < 4) before any of them is used, so that each thread keeps 4 loads in flight.
const STEP: u32 = 4u * WG;
const_assert WG == 256u;

var<private> row_base: u32;

// Logit i of this row, clamped into the row (callers ignore i >= n).
fn ld(i: u32) -> f32 {
    return logits[row_base + min(i, p.n - 1u)];
}

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

// (score, key, index) ordering: larger score, then larger key, then lower index; NONE loses.
// A total order, so the reduction order does not matter.
fn better(os: f32, ok: u32, oi: u32, ms: f32, mk: u32, mi: u32) -> bool {
    if (oi == NONE) { return false; }
    if (mi == NONE) { return true; }
    return os > ms || (os == ms && (ok > mk || (ok == mk && oi < mi)));
}

// The best of the 256 (score, key, index) triples in red_*: 16 threads reduce 16 each, then
// thread 0 the 16 results. Returns the index in thread 0 (other threads: unspecified).
fn reduce_best(l: u32) -> u32 {
    workgroupBarrier();
    if (l < 16u) {
        var bs = red_s[16u * l];
        var bk = red_k[16u * l];
        var bi = red_i[16u * l];
        for (var j = 16u * l + 1u; j < 16u * l + 16u; j++) {
            if (better(red_s[j], red_k[j], red_i[j], bs, bk, bi)) {
                bs = red_s[j];
                bk = red_k[j];
                bi = red_i[j];
            }
        }
        red2_s[l] = bs;
        red2_k[l] = bk;
        red2_i[l] = bi;
    }
    workgroupBarrier();
    var bs = red2_s[0];
    var bk = red2_k[0];
    var bi = red2_i[0];
    if (l == 0u) {
        for (var j = 1u; j < 16u; j++) {
            if (better(red2_s[j], red2_k[j], red2_i[j], bs, bk, bi)) {
                bs = red2_s[j];
                bk = red2_k[j];
                bi = red2_i[j];
            }
        }
    }
    return bi;
}

// Thread 0: the bin where the count from the top reaches `remaining` -> sel.
fn select_bin(remaining: u32) {
    var above = 0u;
    var g = 15u;
    loop {
        if (g == 0u || above + gsum[g] >= remaining) { break; }
        above += gsum[g];
        g -= 1u;
    }
    var b = 16u * g + 15u;
    loop {
        let c = cnt[b];
        if (b == 16u * g || above + c >= remaining) {
            sel = vec3<u32>(b, remaining - above, c);
            break;
        }
        above += c;
        b -= 1u;
    }
}

struct Row4 {
    x0: f32, x1: f32, x2: f32, x3: f32,
}

fn load4(i0: u32) -> Row4 {
    return Row4(ld(i0), ld(i0 + WG), ld(i0 + 2u * WG), ld(i0 + 3u * WG));
}

fn greedy_step(bk: ptr<function, u32>, bi: ptr<function, u32>, i: u32, x: f32) {
    let k = okey(x);
    if (i < p.n && better(0.0, k, i, 0.0, *bk, *bi)) {
        *bk = k;
        *bi = i;
    }
}

// Count element i in histogram copy `copy` if it matches the prefix found so far.
fn hist_step(i: u32, x: f32, radix_round: u32, pk: u32, mk: u32, pi: u32, mi: u32, copy: u32) {
    if (i >= p.n) { return; }
    let k = okey(x);
    let shift = 24u - 8u * (radix_round & 3u);
    if (radix_round < 4u) {
        if ((k & mk) == pk) { atomicAdd(&hist[copy + ((k >> shift) & 255u)], 1u); }
    } else {
        let ni = ~i;
        if (k == pk && (ni & mi) == pi) { atomicAdd(&hist[copy + ((ni >> shift) & 255u)], 1u); }
    }
}

fn gumbel_step(bs: ptr<function, f32>, bi: ptr<function, u32>, i: u32, x: f32, pk: u32, pi: u32, counter: u32) {
    let k = okey(x);
    // k == 0 is NaN: never a candidate, so scores are never NaN.
    if (i < p.n && k != 0u && (k > pk || (k == pk && ~i >= pi))) {
        let s = x * p.inv_temp - log(exp_noise(i, counter));
        if (better(s, 0u, i, *bs, 0u, *bi)) {
            *bs = s;
            *bi = i;
        }
    }
}

// The token of `row`, valid in invocation 0 (unspecified elsewhere). Sampling with p.draws > 0
// writes its draws itself and returns NONE. Called in uniform control flow (it has barriers).
fn choose(row: u32, l: u32) -> u32 {
    row_base = p.logits_offset + row * p.row_stride;
    let n = p.n;

    if (p.greedy != 0u) {
        var bk = 0u;
        var bi = NONE;
        for (var i0 = l; i0 < n; i0 += STEP) {
            let r = load4(i0);
            greedy_step(&bk, &bi, i0, r.x0);
            greedy_step(&bk, &bi, i0 + WG, r.x1);
            greedy_step(&bk, &bi, i0 + 2u * WG, r.x2);
            greedy_step(&bk, &bi, i0 + 3u * WG, r.x3);
        }
        red_s[l] = 0.0;
        red_k[l] = bk;
        red_i[l] = bi;
        return reduce_best(l);
    }

    // Radix select of the k-th largest composite key (okey(logit), ~i), 8 bits per round.
    var pk = 0u;   // key prefix found so far (unresolved low bits zero)
    var pi = 0u;   // ~index prefix (rounds 4..7)
    var mk = 0u;   // mask of resolved key bits
    var mi = 0u;   // mask of resolved ~index bits
    var remaining = p.top_k;
    let copy = (l % 8u) * 256u;
    if (p.top_k != 0u && p.top_k < n) {
        for (var h = 0u; h < 8u; h++) { atomicStore(&hist[h * 256u + l], 0u); }
        workgroupBarrier();
        for (var radix_round = 0u; radix_round < 8u; radix_round++) {
            for (var i0 = l; i0 < n; i0 += STEP) {
                let r = load4(i0);
                hist_step(i0, r.x0, radix_round, pk, mk, pi, mi, copy);
                hist_step(i0 + WG, r.x1, radix_round, pk, mk, pi, mi, copy);
                hist_step(i0 + 2u * WG, r.x2, radix_round, pk, mk, pi, mi, copy);
                hist_step(i0 + 3u * WG, r.x3, radix_round, pk, mk, pi, mi, copy);
            }
            workgroupBarrier();
            // Bin l's count over the copies; zero them for the next round.
            var c = 0u;
            for (var h = 0u; h < 8u; h++) {
                c += atomicLoad(&hist[h * 256u + l]);
                atomicStore(&hist[h * 256u + l], 0u);
            }
            cnt[l] = c;
            workgroupBarrier();
            if (l < 16u) {
                var g = 0u;
                for (var b = 16u * l; b < 16u * l + 16u; b++) { g += cnt[b]; }
                gsum[l] = g;
            }
            workgroupBarrier();
            if (l == 0u) { select_bin(remaining); }
            let chosen = workgroupUniformLoad(&sel);
            let shift = 24u - 8u * (radix_round & 3u);
            if (radix_round < 4u) {
                pk |= chosen.x << shift;
                mk |= 255u << shift;
            } else {
                pi |= chosen.x << shift;
                mi |= 255u << shift;
            }
            remaining = chosen.y;
            // Every element of the chosen bin is needed: the threshold with zero low bits is exact.
            if (chosen.z == remaining) { break; }
        }
    }

    // Many draws from one row: thread d computes draw d alone, a sequential pass over the row.
    if (p.draws != 0u) {
        if (l < p.draws) {
            let counter = p.counter + row * p.draws + l;
            var bs = 0.0;
            var bi = NONE;
            for (var i = 0u; i < n; i++) {
                gumbel_step(&bs, &bi, i, ld(i), pk, pi, counter);
            }
            tokens[p.out_index + row * p.draws + l] = bi;
        }
        return NONE;
    }

    // Gumbel-max over the set {(okey, ~i) >= (pk, pi)}.
    let counter = p.counter + row;
    var bs = 0.0;
    var bi = NONE;
    for (var i0 = l; i0 < n; i0 += STEP) {
        let r = load4(i0);
        gumbel_step(&bs, &bi, i0, r.x0, pk, pi, counter);
        gumbel_step(&bs, &bi, i0 + WG, r.x1, pk, pi, counter);
        gumbel_step(&bs, &bi, i0 + 2u * WG, r.x2, pk, pi, counter);
        gumbel_step(&bs, &bi, i0 + 3u * WG, r.x3, pk, pi, counter);
    }
    red_s[l] = bs;
    red_k[l] = 0u;
    red_i[l] = bi;
    return reduce_best(l);
}

@compute @workgroup_size(WG)
fn sample(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= p.rows) { return; }
    let l = lid3.x;
    let best = choose(row, l);
    if (l == 0u) {
        if (p.greedy != 0u) {
            let draws = max(p.draws, 1u);
            for (var d = 0u; d < draws; d++) { tokens[p.out_index + row * draws + d] = best; }
        } else if (p.draws == 0u) {
            tokens[p.out_index + row] = best;
        }
    }
}

//#if EMBED
var<workgroup> chosen: u32;

// One row (p.rows = 1, p.draws = 0): the token as `sample` writes it, then
// out[p.emb_out + d] (= or +=) table row (token − p.emb_first) of the piece p.emb_*, d < p.emb_dim
// (zero when the token is outside [emb_first, emb_first + emb_rows)), the sum as embed_sum forms it.
@compute @workgroup_size(WG)
fn sample_embed(@builtin(local_invocation_id) lid3: vec3<u32>) {
    let l = lid3.x;
    let best = choose(0u, l);
    if (l == 0u) {
        tokens[p.out_index] = best;
        chosen = best;
    }
    let r = workgroupUniformLoad(&chosen) - p.emb_first; // wraps to a huge value below emb_first
    let st = vec4<u32>(p.emb_kind << 24u, p.emb_first, p.emb_rows, p.emb_base);
    for (var d = l; d < p.emb_dim; d += WG) {
        var x = 0.0;
        if (r < p.emb_rows) {
            x = table_element(st, r * p.emb_dim + d, p.emb_dim);
        }
        if (p.emb_accumulate != 0u) {
            x += out[p.emb_out + d];
        }
        out[p.emb_out + d] = x;
    }
}
//#endif
