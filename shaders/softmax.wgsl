// softmax.wgsl: numerically stable softmax over the rows of a row-major f32 matrix.
//
// Layout: x and y are row-major [rows, N] f32 (row r = [r*N, r*N + N)); N up to millions (Moshi's
// text head: 32000). y[r, i] = exp(s*x[r, i] - m) / sum_j exp(s*x[r, j] - m), m = max_j s*x[r, j],
// s = p.scale (1/temperature; 1 for a plain softmax). f32 throughout.
// Bindings (group 0):
//   out of place (default):          in place (INPLACE define):
//   0 x: array<f32>, read            0 y: array<f32>, read_write  (input, overwritten)
//   1 y: array<f32>, read_write      1 p: Params (uniform)
//   2 p: Params (uniform)
// Dispatch: @workgroup_size(WG) (WG, a power of two, injected from the launcher), one workgroup
// per row; the row index is wid.y * nwg.x + wid.x (2-D grid when rows > 65535). Two passes over the row: (1) each invocation keeps an online
// (max, sum of exp) pair over its strided elements, pairs are merged across the workgroup;
// (2) each invocation writes its elements.
// Measured (H100, Vulkan): unrolling by 8 through a private array was slower (71 vs 53 us for
// 1x32000), so the loops stay plain. One workgroup per row is latency-bound for a single
// 32000-row; split rows over several workgroups if that ever matters.
// Reductions: with SUBGROUPS, subgroupMax/subgroupAdd, one partial per subgroup in shared memory
// (subgroup k = invocations [k*size, (k+1)*size), any size 1..WG), then every subgroup merges the
// partials; without, a shared-memory tree over WG slots.

struct Params {
    rows: u32,
    n: u32,
    scale: f32,
    _pad: u32,
}

//#if INPLACE
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;
fn load(i: u32) -> f32 {
    return y[i];
}
//#else
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
fn load(i: u32) -> f32 {
    return x[i];
}
//#endif

// Finite "minus infinity": exp(NEG - m) is 0 and NEG - NEG is 0, never NaN.
const NEG: f32 = -3.0e38;
var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;

// Merge (m, s) with (m2, s2): the max, and both sums rescaled to it.
fn merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let m = max(a.x, b.x);
    return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

//#if SUBGROUPS
fn wg_merge(v: vec2<f32>, lid: u32, sid: u32, ssz: u32) -> vec2<f32> {
    let m = subgroupMax(v.x);
    let s = subgroupAdd(v.y * exp(v.x - m));
    let nsg = (WG + ssz - 1u) / ssz;
    if (sid == 0u) {
        red_m[lid / ssz] = m;
        red_s[lid / ssz] = s;
    }
    workgroupBarrier();
    var acc = vec2<f32>(NEG, 0.0);
    for (var k = 0u; k < nsg; k += ssz) {
        if (k + sid < nsg) {
            acc = merge(acc, vec2<f32>(red_m[k + sid], red_s[k + sid]));
        }
    }
    let mt = subgroupMax(acc.x);
    let st = subgroupAdd(acc.y * exp(acc.x - mt));
    workgroupBarrier();
    return vec2<f32>(mt, st);
}
//#else
fn wg_merge(v: vec2<f32>, lid: u32) -> vec2<f32> {
    red_m[lid] = v.x;
    red_s[lid] = v.y;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            let r = merge(vec2<f32>(red_m[lid], red_s[lid]), vec2<f32>(red_m[lid + k], red_s[lid + k]));
            red_m[lid] = r.x;
            red_s[lid] = r.y;
        }
        workgroupBarrier();
    }
    let total = vec2<f32>(red_m[0], red_s[0]);
    workgroupBarrier();
    return total;
}
//#endif

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
    let n = p.n;
    let base = row * n;
    let scale = p.scale;
    // Online max and sum of exp over this invocation's elements: the running sum is rescaled
    // only when the max grows.
    var m = NEG;
    var s = 0.0;
    for (var i = lid; i < n; i += WG) {
        let v = load(base + i) * scale;
        if (v > m) {
            s = s * exp(m - v) + 1.0;
            m = v;
        } else {
            s += exp(v - m);
        }
    }
//#if SUBGROUPS
    let t = wg_merge(vec2<f32>(m, s), lid, sid, ssz);
//#else
    let t = wg_merge(vec2<f32>(m, s), lid);
//#endif
    let inv = 1.0 / t.y;
    for (var i = lid; i < n; i += WG) {
        y[base + i] = exp(load(base + i) * scale - t.x) * inv;
    }
}
