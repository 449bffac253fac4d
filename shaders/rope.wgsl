// rope.wgsl: interleaved rotary position embedding, in place on q (and k) heads of a row buffer.
//
// Layout: x is row-major [rows, row_stride] f32; row t holds q at [q_offset, q_offset + H*Dh) and
// (when parts = 2) k at [k_offset, k_offset + H*Dh), head h at columns [h*Dh, h*Dh + Dh) of each
// (e.g. the fused qkv output of in_proj: row_stride 3*H*Dh, q_offset 0, k_offset H*Dh).
// Row t is at absolute position pos = pos0 + t. Pair i (elements 2i, 2i+1) of every head:
//   theta = f32(pos) * freqs[i]        (f32 product, rounded: it goes through workgroup memory so
//                                       that no compiler fuses it into the range reduction)
//   out[2i]   = x[2i] cos(theta) - x[2i+1] sin(theta)
//   out[2i+1] = x[2i] sin(theta) + x[2i+1] cos(theta)
// cos/sin are computed here, not with the builtins (whose accuracy WGSL leaves unbounded outside
// [-pi, pi]): Cody-Waite reduction by pi/2 with a three-part constant, then minimax polynomials on
// [-pi/4, pi/4] (~1 ulp); theta up to ~1e4 reduces exactly, beyond with ~1e-7 absolute error.
// Bindings (group 0):
//   0 freqs: array<f32>, read        ([Dh/2] inverse frequencies max_period^(-2i/Dh), from the CPU)
//   1 x: array<f32>, read_write      (rotated in place)
//   2 p: Params (uniform)
// Dispatch: @workgroup_size(WG) (WG injected from the launcher); each workgroup rotates WG pairs
// of one row: with groups_per_row = ceil(parts*H*(Dh/2) / WG) and g = wid.y * nwg.x + wid.x,
// row = g / groups_per_row and pair index j = (g % groups_per_row) * WG + lid, j -> (part, head, i)
// with i fastest.

struct Params {
    rows: u32,
    heads: u32,
    half: u32,          // Dh / 2
    row_stride: u32,
    q_offset: u32,
    k_offset: u32,
    parts: u32,         // 1: q only, 2: q and k
    pos0: u32,
    groups_per_row: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> freqs: array<f32>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> ang: array<f32, WG>;

//#include "common/rope.wgsl"

@compute @workgroup_size(WG)
fn entry(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.y * nwg.x + wid.x;
    let row = g / p.groups_per_row;
    if (row >= p.rows) {
        return;
    }
    let j = (g % p.groups_per_row) * WG + lid;
    let per_part = p.heads * p.half;
    let live = j < p.parts * per_part;
    let i = j % p.half;
    let pos = f32(p.pos0 + row);
    if (live) {
        ang[lid] = pos * freqs[i];
    }
    workgroupBarrier();
    if (!live) {
        return;
    }
    let cs = cos_sin(ang[lid]);
    let part = j / per_part;
    let h = (j % per_part) / p.half;
    let off = select(p.q_offset, p.k_offset, part == 1u);
    let idx = row * p.row_stride + off + h * 2u * p.half + 2u * i;
    let x0 = x[idx];
    let x1 = x[idx + 1u];
    x[idx] = x0 * cs.x - x1 * cs.y;
    x[idx + 1u] = x0 * cs.y + x1 * cs.x;
}
