// rvq.wgsl: residual vector quantization for Mimi (spec §1.8): encode (nearest-codebook search,
// level by level) and decode (gather-sum of codebook rows).
//
// Layouts (all f32 unless stated):
//   cb       codebooks [levels, bins, dc] row-major (bound as vec4: dc % 4 == 0, dc <= 1024)
//   x        encoder input, element (t, d) at x[p.io_offset + t * p.io_t_stride + d * p.io_d_stride]
//            ([T, dc] time-major: t_stride dc, d_stride 1; Mimi's [dc, T]: t_stride 1, d_stride T)
//   residual [T, dc] scratch; after the last level it holds x - Σ_l E_l[code_l]
//   dist     [T, bins] scratch: squared distances of the current level
//   codes    u32, code (l, t) at codes[p.code_offset + l * p.code_l_stride + t * p.code_t_stride]
//            (the [n_levels, T] layout: l_stride T, t_stride 1)
//   out      decoder output, element (t, d) at out[p.io_offset + t * p.io_t_stride + d * p.io_d_stride]
//
// Encode, per level l (two launches, in order): r = x at level 0, else residual.
//   rvq_dist   dist[t, j] = Σ_d (r[t, d] - E_l[j, d])²   computed directly (no ||E||² - 2 r·E
//              expansion, so there is no cancellation, and every row goes through the very same
//              operations in the same order: identical rows give bit-identical distances).
//              @workgroup_size(256): 16 bins x 16 lanes; lane i accumulates the vec4 columns
//              i, i + 16, … of its bin, then a fixed shared-memory tree adds the 16 partials.
//              Grid [ceil(bins / 16), T, 1].
//   rvq_argmin code = argmin_j dist[t, j], ties (equal f32 distances) -> lowest j; NaN distances
//              are never chosen (all-NaN -> 0). Writes codes(l, t) and residual[t] = r[t] - E_l[code].
//              @workgroup_size(256), one workgroup per frame: grid [T, 1, 1].
// Bindings (encode, group 0):
//   0 x:        array<f32>, read
//   1 cb:       array<vec4<f32>>, read
//   2 residual: array<f32>, read_write
//   3 dist:     array<f32>, read_write
//   4 codes:    array<u32>, read_write
//   5 p:        Params (uniform, dynamic offset)
//
// Decode (define DECODE):
//   rvq_decode out(t, d) = Σ_{l < p.levels} E_l[codes(l, t), d], summed in level order in f32;
//              a code >= bins (e.g. 0xFFFFFFFF) contributes zero.
//              @workgroup_size(256), one invocation per (t, d): grid [ceil(dc / 256), T, 1].
// Bindings (decode, group 0):
//   0 cb:    array<f32>, read
//   1 codes: array<u32>, read
//   2 out:   array<f32>, read_write
//   3 p:     Params (uniform, dynamic offset)

struct Params {
    t: u32,             // frames
    dc: u32,            // codebook dimension
    bins: u32,          // codebook size
    level: u32,         // encode: the level of this launch
    levels: u32,        // decode: levels summed
    io_offset: u32,     // x (encode) / out (decode) element offset
    io_t_stride: u32,
    io_d_stride: u32,
    code_offset: u32,
    code_l_stride: u32,
    code_t_stride: u32,
    _pad: u32,
}

//#if DECODE
@group(0) @binding(0) var<storage, read> cb: array<f32>;
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256)
fn rvq_decode(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let d = wid.x * 256u + lid.x;
    let t = wid.y;
    if (d >= p.dc) { return; }
    var acc = 0.0;
    for (var l = 0u; l < p.levels; l++) {
        let c = codes[p.code_offset + l * p.code_l_stride + t * p.code_t_stride];
        if (c < p.bins) {
            acc += cb[(l * p.bins + c) * p.dc + d];
        }
    }
    out[p.io_offset + t * p.io_t_stride + d * p.io_d_stride] = acc;
}
//#else
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> cb: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> residual: array<f32>;
@group(0) @binding(3) var<storage, read_write> dist: array<f32>;
@group(0) @binding(4) var<storage, read_write> codes: array<u32>;
@group(0) @binding(5) var<uniform> p: Params;

var<workgroup> rs: array<vec4<f32>, 256>;
var<workgroup> part: array<f32, 256>;
var<workgroup> part_i: array<u32, 256>;

// The residual entering level p.level, element (t, d).
fn r_at(t: u32, d: u32) -> f32 {
    if (p.level == 0u) {
        return x[p.io_offset + t * p.io_t_stride + d * p.io_d_stride];
    }
    return residual[t * p.dc + d];
}

@compute @workgroup_size(256)
fn rvq_dist(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wid.y;
    let dv = p.dc / 4u;
    for (var i = lid.x; i < dv; i += 256u) {
        let d = 4u * i;
        rs[i] = vec4<f32>(r_at(t, d), r_at(t, d + 1u), r_at(t, d + 2u), r_at(t, d + 3u));
    }
    workgroupBarrier();
    let j = wid.x * 16u + lid.x / 16u;
    let lane = lid.x % 16u;
    var acc = 0.0;
    if (j < p.bins) {
        let base = (p.level * p.bins + j) * dv;
        for (var i = lane; i < dv; i += 16u) {
            let e = rs[i] - cb[base + i];
            acc += dot(e, e);
        }
    }
    part[lid.x] = acc;
    workgroupBarrier();
    for (var off = 8u; off > 0u; off >>= 1u) {
        if (lane < off) {
            part[lid.x] = part[lid.x] + part[lid.x + off];
        }
        workgroupBarrier();
    }
    if (lane == 0u && j < p.bins) {
        dist[t * p.bins + j] = part[lid.x];
    }
}

@compute @workgroup_size(256)
fn rvq_argmin(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wid.x;
    let none = 0xffffffffu;
    var bd = bitcast<f32>(0x7f800000u); // +inf
    var bi = none;
    for (var j = lid.x; j < p.bins; j += 256u) {
        let d = dist[t * p.bins + j];
        // j grows, so a strict < keeps the lowest index among equal distances; NaN never wins.
        if (d < bd || (d == bd && bi == none)) {
            bd = d;
            bi = j;
        }
    }
    part[lid.x] = bd;
    part_i[lid.x] = bi;
    workgroupBarrier();
    for (var off = 128u; off > 0u; off >>= 1u) {
        if (lid.x < off) {
            let od = part[lid.x + off];
            let oi = part_i[lid.x + off];
            let md = part[lid.x];
            let mi = part_i[lid.x];
            // (distance, index) lexicographic minimum; `none` (no candidate) loses to anything.
            if (oi != none && (mi == none || od < md || (od == md && oi < mi))) {
                part[lid.x] = od;
                part_i[lid.x] = oi;
            }
        }
        workgroupBarrier();
    }
    var c = part_i[0];
    if (c == none) { c = 0u; }
    if (lid.x == 0u) {
        codes[p.code_offset + p.level * p.code_l_stride + t * p.code_t_stride] = c;
    }
    let row = (p.level * p.bins + c) * (p.dc / 4u);
    for (var d = lid.x; d < p.dc; d += 256u) {
        residual[t * p.dc + d] = r_at(t, d) - cb[row + d / 4u][d % 4u];
    }
}
//#endif
