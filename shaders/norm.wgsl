// norm.wgsl: RMSNorm and LayerNorm over the rows of a row-major f32 matrix, f32 accumulation.
//
// Layout: x and y are row-major [rows, D] f32 (row r = x[r*D .. r*D + D)), out of place.
// Bindings (group 0):
//   rms_norm:                        layer_norm:
//   0 x: array<f32>, read            0 x: array<f32>, read        (input [rows, D])
//   1 w: array<f32>, read            1 w: array<f32>, read        (alpha / weight [D])
//   2 y: array<f32>, read_write      2 b: array<f32>, read        (bias [D])
//   3 p: Params (uniform)            3 y: array<f32>, read_write  (output [rows, D])
//                                    4 p: Params (uniform)
//   (layer_norm is compiled with the LAYER define, which adds the bias binding.)
// Dispatch: @workgroup_size(WG) (WG, a power of two, injected from the launcher), one workgroup
// per row; the row index is wid.y * nwg.x + wid.x (2-D grid when rows > 65535). Each invocation
// strides over the row by WG.
//   rms_norm:   y = x * w / sqrt(mean(x^2) + eps)
//   layer_norm: y = (x - mean) / sqrt(var + eps) * w + b   (biased variance, two passes: mean,
//               then the mean of (x - mean)^2, so large offsets do not cancel)
// Measured (H100, Vulkan): holding the row in a private array (16 per invocation) was slower
// than these plain strided loops (1x4096: 14.1 vs 11.6 us, 2x512: 11.6 vs 6.2 us per dispatch
// including ~4 us of launch overhead), so rows are simply read twice.
// Reductions: wg_sum of common/reduce.wgsl over `red` (subgroupAdd with SUBGROUPS, a
// shared-memory tree without).

struct Params {
    rows: u32,
    d: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
//#if LAYER
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
//#else
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
//#endif

var<workgroup> red: array<f32, WG>;

//#include "common/reduce.wgsl"

@compute @workgroup_size(WG)
fn entry(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
//#if SUBGROUPS
    @builtin(subgroup_invocation_id) sid: u32,
    @builtin(subgroup_size) ssz: u32,
//#endif
) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= p.rows) {
        return;
    }
    let d = p.d;
    let base = row * d;
    let inv_d = 1.0 / f32(d);
//#if LAYER
    var s1 = 0.0;
    for (var i = lid; i < d; i += WG) {
        s1 += x[base + i];
    }
//#if SUBGROUPS
    let mean = wg_sum(s1, lid, sid, ssz) * inv_d;
//#else
    let mean = wg_sum(s1, lid) * inv_d;
//#endif
    var s2 = 0.0;
    for (var i = lid; i < d; i += WG) {
        let c = x[base + i] - mean;
        s2 += c * c;
    }
//#if SUBGROUPS
    let variance = wg_sum(s2, lid, sid, ssz) * inv_d;
//#else
    let variance = wg_sum(s2, lid) * inv_d;
//#endif
    let r = inverseSqrt(variance + p.eps);
    for (var i = lid; i < d; i += WG) {
        y[base + i] = (x[base + i] - mean) * r * w[i] + b[i];
    }
//#else
    var s2 = 0.0;
    for (var i = lid; i < d; i += WG) {
        let v = x[base + i];
        s2 += v * v;
    }
//#if SUBGROUPS
    let ms = wg_sum(s2, lid, sid, ssz) * inv_d;
//#else
    let ms = wg_sum(s2, lid) * inv_d;
//#endif
    let r = 1.0 / sqrt(ms + p.eps);
    for (var i = lid; i < d; i += WG) {
        y[base + i] = x[base + i] * r * w[i];
    }
//#endif
}
