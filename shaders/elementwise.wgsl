// elementwise.wgsl: pointwise activations and residual adds on flat f32 arrays.
//
// Layout: every tensor is a flat array<f32>; for per-channel ops the array is row-major
// [rows, channels] (channel fastest) unless `p.channel_stride` says otherwise (see below).
// Bindings (group 0):
//   0 a: array<f32>, read          (input x, or the residual branch r for `residual_add`)
//   1 b: array<f32>, read          (per-channel scale for `residual_add`; gate input unused otherwise)
//   2 y: array<f32>, read_write    (output; for `residual_add` y += scale ⊙ r in place)
//   3 p: Params (uniform, dynamic offset)
// Dispatch: @workgroup_size(WG) (WG injected from the launcher), one invocation per output element; the linear workgroup index is
// wid.y * nwg.x + wid.x (2-D grid when more than 65535 groups are needed).
// Entry points:
//   elu:          y[i] = a[i] > 0 ? a[i] : exp(a[i]) - 1           (alpha = 1)
//   gelu_erf:     y[i] = 0.5 a[i] (1 + erf(a[i] / sqrt 2))          (exact-erf GELU, as torch F.gelu)
//   silu_gate:    a = [rows, 2H] (g = a[:, :H], v = a[:, H:]),  y[r, j] = silu(g[r, j]) * v[r, j], y = [rows, H]
//   residual_add: y[i] += (p.use_scale != 0 ? b[channel(i)] : 1) * a[i]
//                 channel(i) = (i / p.channel_stride) % p.channels  (channel_stride 1: [T, C] layout;
//                 channel_stride T: [C, T] layout)
//   residual_sum: y[i] += (p.use_scale != 0 ? b[i % p.channels] : 1) · Σ_{j < p.parts} a[j·p.n + i]
//                 (the partial outputs of linear.wgsl's mlp_split, [parts, n], summed in order j)
//   transpose:    a = [rows = p.channels, cols = p.hidden] row-major, y = [cols, rows]: y[c * rows + r] = a[r * cols + c]
//   copy:         (COPY define: a and y are array<vec4<f32>>) y[i] = a[i] for p.n vec4s, one vec4 per
//                 invocation: the plain streaming copy that `parle bench kernels` measures every
//                 kernel's bandwidth against.

struct Params {
    n: u32,              // number of output elements
    hidden: u32,         // silu_gate: H
    channels: u32,       // residual_add: number of channels of the scale
    channel_stride: u32, // residual_add: distance between consecutive channels
    use_scale: u32,      // residual_add: 1 = multiply the branch by b[channel]
    parts: u32,          // residual_sum: partial arrays summed
    _pad1: u32,
    _pad2: u32,
}

//#if COPY
@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
//#else
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
//#endif
@group(0) @binding(3) var<uniform> p: Params;

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid.x;
}

//#if !COPY
// erf with |error| < 1.2e-7 (Numerical Recipes erfc, Chebyshev fit), evaluated in f32.
fn erf_f32(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
        t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
        t * (-0.82215223 + t * 0.17087277)))))))));
    return select(r - 1.0, 1.0 - r, x >= 0.0);
}

@compute @workgroup_size(WG)
fn elu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let x = a[i];
    y[i] = select(exp(x) - 1.0, x, x > 0.0);
}

@compute @workgroup_size(WG)
fn gelu_erf(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let x = a[i];
    y[i] = 0.5 * x * (1.0 + erf_f32(x * 0.70710678118654752));
}

@compute @workgroup_size(WG)
fn silu_gate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let row = i / p.hidden;
    let j = i % p.hidden;
    let g = a[row * 2u * p.hidden + j];
    let v = a[row * 2u * p.hidden + p.hidden + j];
    y[i] = g / (1.0 + exp(-g)) * v;
}

@compute @workgroup_size(WG)
fn residual_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    var s = 1.0;
    if (p.use_scale != 0u) {
        s = b[(i / p.channel_stride) % p.channels];
    }
    y[i] = y[i] + s * a[i];
}

@compute @workgroup_size(WG)
fn residual_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    var t = 0.0;
    for (var j = 0u; j < p.parts; j++) {
        t += a[j * p.n + i];
    }
    var s = 1.0;
    if (p.use_scale != 0u) {
        s = b[i % p.channels];
    }
    y[i] = y[i] + s * t;
}

@compute @workgroup_size(WG)
fn transpose(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    // i indexes the output [cols, rows].
    let rows = p.channels;
    let cols = p.hidden;
    let c = i / rows;
    let r = i % rows;
    y[i] = a[r * cols + c];
}
//#else
@compute @workgroup_size(WG)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[i] = a[i];
}
//#endif
