// rvq.wgsl: residual vector quantization for Mimi (spec §1.8): encode (nearest-codebook search,
// level by level) and decode (gather-sum of codebook rows).
//
// Streams: one launch runs one or two independent RVQs ("streams", Mimi's semantic and acoustic
// halves), grid z = stream s (rvq_finish: z as well). Stream s uses the codebook levels
// book_s .. book_s + levels_s − 1, reads its input / writes its output at io_offset_s and its
// codes at code_offset_s (stream 0: p.book, p.levels, p.io_offset, p.code_offset; stream 1:
// p.book1, p.levels1, p.io_offset1, p.code_offset1; p.levels1 = 0: one stream). Below, "level l"
// of a stream is its l-th level (codebook book_s + l), and the scratch row of (s, t) is
// s·T + t of R = streams·T rows.
//
// Layouts (all f32 unless stated):
//   cb       codebooks [levels, bins, dc] row-major (bound as vec4: dc % 4 == 0, dc <= 1024)
//   x        encoder input, element (t, d) at x[io_offset_s + t * p.io_t_stride + d * p.io_d_stride]
//            ([T, dc] time-major: t_stride dc, d_stride 1; Mimi's [dc, T]: t_stride 1, d_stride T)
//   residual [2, R, dc] scratch, ping-pong: r_l (the residual entering level l, l >= 1) lives in
//            slot l % 2; after the encode, slot 0 holds the final residual x - Σ_l E_l[code_l]
//   parts    [2, R, G] vec2<u32> scratch, G = ceil(bins / 16): per group of 16 codebook rows the
//            (f32 bits of the smallest distance, its row), ping-pong by level parity
//   codes    u32, code (l, t) at codes[code_offset_s + l * p.code_l_stride + t * p.code_t_stride]
//            (the [n_levels, T] layout: l_stride T, t_stride 1)
//   out      decoder output, element (t, d) at out[io_offset_s + t * p.io_t_stride + d * p.io_d_stride]
//
// Encode: launches rvq_level for l = 0 .. L-1, then rvq_finish (L + 1 launches in all, L the
// largest levels_s; a stream with fewer levels sits out the later launches).
// WG (256), ROWS (16) and MAX_DIM are injected from the launcher.
//   rvq_level (level l), @workgroup_size(WG), grid [G, T, streams], workgroup g handles rows
//   16g..16g+15 (a stream with levels_s <= l returns at once):
//     1. (l > 0) argmin over parts[(l-1) % 2, t, :] -> code c of level l-1 (every workgroup
//        redoes this small reduction, so no separate launch is needed); r_l = r_{l-1} - E_{l-1}[c]
//        into shared memory; workgroup 0 also writes code (l-1, t) and residual slot l % 2.
//        (l = 0) r_0 = x.
//     2. dist(j) = Σ_d (r_l[d] - E_l[j, d])², 16 lanes per row (lane i takes the vec4 columns
//        i, i + 16, …; lane 0 adds the 16 partials in order), then the smallest of the 16 rows
//        (lowest row on ties) -> parts[l % 2, t, g].
//   rvq_finish, @workgroup_size(WG), grid [T, 1, streams]: argmin of each stream's last level
//     (levels_s - 1) from its parts, writes its code and the final residual (slot 0).
//   Distances are computed directly, not as ||E||² - 2 r·E (no cancellation), and every row goes
//   through the same operations in the same order, so identical rows give bit-identical
//   distances; (distance, row) is compared lexicographically everywhere, so exact ties resolve to
//   the lowest row. NaN distances never win (all-NaN -> row 0).
// Bindings (encode, group 0):
//   0 x:        array<f32>, read
//   1 cb:       array<vec4<f32>>, read
//   2 residual: array<f32>, read_write
//   3 parts:    array<vec2<u32>>, read_write
//   4 codes:    array<u32>, read_write
//   5 p:        Params (uniform, dynamic offset)
//
// Decode (define DECODE):
//   rvq_decode out_s(t, d) = Σ_{l < levels_s} E_{book_s + l}[codes_s(l, t), d], summed in level
//              order in f32; a code >= bins (e.g. 0xFFFFFFFF) contributes zero.
//              @workgroup_size(WG), one invocation per (s, t, d): grid [ceil(dc / WG), T, streams].
// Bindings (decode, group 0):
//   0 cb:    array<f32>, read
//   1 codes: array<u32>, read
//   2 out:   array<f32>, read_write
//   3 p:     Params (uniform, dynamic offset)

struct Params {
    t: u32,             // frames
    dc: u32,            // codebook dimension
    bins: u32,          // codebook size
    level: u32,         // rvq_level: the (stream-local) level of this launch
    levels: u32,        // stream 0: its levels
    io_offset: u32,     // stream 0: x (encode) / out (decode) element offset
    io_t_stride: u32,
    io_d_stride: u32,
    code_offset: u32,   // stream 0: its codes' offset
    code_l_stride: u32,
    code_t_stride: u32,
    book: u32,          // stream 0: its first codebook level
    levels1: u32,       // stream 1: its levels (0: no stream 1)
    io_offset1: u32,
    code_offset1: u32,
    book1: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Stream s's levels, io offset, code offset and first codebook level.
struct Stream {
    levels: u32,
    io: u32,
    code: u32,
    book: u32,
}

fn stream(s: u32) -> Stream {
    if (s == 0u) {
        return Stream(p.levels, p.io_offset, p.code_offset, p.book);
    }
    return Stream(p.levels1, p.io_offset1, p.code_offset1, p.book1);
}

//#if DECODE
@group(0) @binding(0) var<storage, read> cb: array<f32>;
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn rvq_decode(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let d = wid.x * WG + lid.x;
    let t = wid.y;
    let st = stream(wid.z);
    if (d >= p.dc) { return; }
    var acc = 0.0;
    for (var l = 0u; l < st.levels; l++) {
        let c = codes[st.code + l * p.code_l_stride + t * p.code_t_stride];
        if (c < p.bins) {
            acc += cb[((st.book + l) * p.bins + c) * p.dc + d];
        }
    }
    out[st.io + t * p.io_t_stride + d * p.io_d_stride] = acc;
}
//#else
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> cb: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> residual: array<f32>;
@group(0) @binding(3) var<storage, read_write> parts: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read_write> codes: array<u32>;
@group(0) @binding(5) var<uniform> p: Params;

const NONE: u32 = 0xffffffffu;
// The reductions below are written for ROWS = 16 rows x 16 lanes.
const_assert WG == 256u && ROWS == 16u;

var<workgroup> rs: array<vec4<f32>, MAX_DIM / 4u>;
var<workgroup> red_d: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;
var<workgroup> red2_d: array<f32, 16>;
var<workgroup> red2_i: array<u32, 16>;
var<workgroup> chosen: u32;

fn groups() -> u32 {
    return (p.bins + ROWS - 1u) / ROWS;
}

// Rows of the scratch: streams × T.
fn scratch_rows() -> u32 {
    return select(1u, 2u, p.levels1 > 0u) * p.t;
}

// (distance, row) lexicographic order; NONE (no candidate) loses. Callers drop NaN distances.
fn less(od: f32, oi: u32, md: f32, mi: u32) -> bool {
    if (oi == NONE) { return false; }
    if (mi == NONE) { return true; }
    return od < md || (od == md && oi < mi);
}

fn is_nan(bits: u32) -> bool {
    return (bits & 0x7fffffffu) > 0x7f800000u;
}

// Argmin over parts[slot, row, :] -> the code, in every thread (uniform). Each thread takes the
// groups l, l + 256, …, then 16 threads reduce 16 threads' results each, then thread 0.
fn argmin_parts(slot: u32, row: u32, l: u32) -> u32 {
    let g = groups();
    let base = (slot * scratch_rows() + row) * g;
    var bd = 0.0;
    var bi = NONE;
    for (var i = l; i < g; i += WG) {
        let v = parts[base + i];
        if (!is_nan(v.x) && less(bitcast<f32>(v.x), v.y, bd, bi)) {
            bd = bitcast<f32>(v.x);
            bi = v.y;
        }
    }
    red_d[l] = bd;
    red_i[l] = bi;
    workgroupBarrier();
    if (l < 16u) {
        var md = red_d[16u * l];
        var mi = red_i[16u * l];
        for (var j = 16u * l + 1u; j < 16u * l + 16u; j++) {
            if (less(red_d[j], red_i[j], md, mi)) {
                md = red_d[j];
                mi = red_i[j];
            }
        }
        red2_d[l] = md;
        red2_i[l] = mi;
    }
    workgroupBarrier();
    if (l == 0u) {
        var md = red2_d[0];
        var mi = red2_i[0];
        for (var j = 1u; j < 16u; j++) {
            if (less(red2_d[j], red2_i[j], md, mi)) {
                md = red2_d[j];
                mi = red2_i[j];
            }
        }
        chosen = select(mi, 0u, mi == NONE);
    }
    return workgroupUniformLoad(&chosen);
}

// Residual of stream st entering its level `level` (>= 1 uses the ping-pong slot), element
// (t, d); `row` is its scratch row.
fn r_in(st: Stream, level: u32, t: u32, row: u32, d: u32) -> f32 {
    if (level == 0u) {
        return x[st.io + t * p.io_t_stride + d * p.io_d_stride];
    }
    return residual[((level % 2u) * scratch_rows() + row) * p.dc + d];
}

// Element d of row `row` of codebook level `book`.
fn cb_at(book: u32, row: u32, d: u32) -> f32 {
    return cb[(book * p.bins + row) * (p.dc / 4u) + d / 4u][d % 4u];
}

@compute @workgroup_size(WG)
fn rvq_level(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let l = lid.x;
    let t = wid.y;
    let st = stream(wid.z);
    let level = p.level;
    // A stream with fewer levels is done (its last level waits in the parts for rvq_finish).
    if (level >= st.levels) { return; }
    let row = wid.z * p.t + t;
    let dv = p.dc / 4u;
    let j = wid.x * ROWS + l / 16u;
    let lane = l % 16u;
    // Start the loads of this workgroup's codebook rows before the residual is known
    // (the first 4 vec4 per lane cover dc <= 256).
    let base = ((st.book + level) * p.bins + min(j, p.bins - 1u)) * dv;
    let e0 = cb[base + min(lane, dv - 1u)];
    let e1 = cb[base + min(lane + 16u, dv - 1u)];
    let e2 = cb[base + min(lane + 32u, dv - 1u)];
    let e3 = cb[base + min(lane + 48u, dv - 1u)];

    if (level == 0u) {
        for (var i = l; i < dv; i += WG) {
            let d = 4u * i;
            rs[i] = vec4<f32>(r_in(st, 0u, t, row, d), r_in(st, 0u, t, row, d + 1u), r_in(st, 0u, t, row, d + 2u), r_in(st, 0u, t, row, d + 3u));
        }
    } else {
        let prev = level - 1u;
        let c = argmin_parts(prev % 2u, row, l);
        for (var i = l; i < dv; i += WG) {
            let d = 4u * i;
            let r = vec4<f32>(r_in(st, prev, t, row, d), r_in(st, prev, t, row, d + 1u), r_in(st, prev, t, row, d + 2u), r_in(st, prev, t, row, d + 3u));
            let v = r - cb[((st.book + prev) * p.bins + c) * dv + i];
            rs[i] = v;
            if (wid.x == 0u) {
                let o = ((level % 2u) * scratch_rows() + row) * p.dc + d;
                residual[o] = v.x;
                residual[o + 1u] = v.y;
                residual[o + 2u] = v.z;
                residual[o + 3u] = v.w;
            }
        }
        if (wid.x == 0u && l == 0u) {
            codes[st.code + prev * p.code_l_stride + t * p.code_t_stride] = c;
        }
    }
    workgroupBarrier();

    var acc = 0.0;
    if (lane < dv) { let e = rs[lane] - e0; acc += dot(e, e); }
    if (lane + 16u < dv) { let e = rs[lane + 16u] - e1; acc += dot(e, e); }
    if (lane + 32u < dv) { let e = rs[lane + 32u] - e2; acc += dot(e, e); }
    if (lane + 48u < dv) { let e = rs[lane + 48u] - e3; acc += dot(e, e); }
    for (var i = lane + 64u; i < dv; i += 16u) {
        let e = rs[i] - cb[base + i];
        acc += dot(e, e);
    }
    // Lane 0 of each row adds its 16 lane partials in a fixed order, then thread 0 takes the
    // smallest of the 16 rows (scanning upwards with a strict <: lowest row on ties).
    red_d[l] = acc;
    workgroupBarrier();
    if (lane == 0u) {
        var sum = red_d[l];
        for (var k = 1u; k < 16u; k++) { sum += red_d[l + k]; }
        red2_d[l / 16u] = sum;
    }
    workgroupBarrier();
    if (l == 0u) {
        var bd = 0.0;
        var bi = NONE;
        for (var b = 0u; b < 16u; b++) {
            let row = wid.x * ROWS + b;
            let d = red2_d[b];
            if (row < p.bins && !is_nan(bitcast<u32>(d)) && less(d, row, bd, bi)) {
                bd = d;
                bi = row;
            }
        }
        parts[((level % 2u) * scratch_rows() + row) * groups() + wid.x] = vec2<u32>(bitcast<u32>(bd), bi);
    }
}

@compute @workgroup_size(WG)
fn rvq_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wid.x;
    let st = stream(wid.z);
    let row = wid.z * p.t + t;
    let last = st.levels - 1u;
    let c = argmin_parts(last % 2u, row, lid.x);
    if (lid.x == 0u) {
        codes[st.code + last * p.code_l_stride + t * p.code_t_stride] = c;
    }
    // Slot 0 gets the final residual (in place when the last level's input is slot 0 itself:
    // each element is read and written by the same invocation).
    for (var d = lid.x; d < p.dc; d += WG) {
        residual[row * p.dc + d] = r_in(st, last, t, row, d) - cb_at(st.book + last, c, d);
    }
}
//#endif
