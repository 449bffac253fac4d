// fill.wgsl: fill a u32 buffer with deterministic pseudo-random values in a weight format's GPU
// layout, so that benchmarks build multi-GB models at the real size without generating them on
// the CPU or reading a file.
//
// Layout: out = array<u32>, words p.first .. p.first + p.n of the bound view.
// Bindings (group 0):
//   0 out: array<u32>, read_write
//   1 p:   Params (uniform, dynamic offset)
// Dispatch: @workgroup_size(WG) (WG injected from the launcher), one invocation per word; the linear workgroup index is
// wid.y * nwg.x + wid.x (2-D grid when more than 65535 groups are needed).
// Modes (u = uniform in [0, 1) from pcg(word index, seed); v = 2u − 1):
//   0 F32:       f32 bits of p.scale · v
//   1 BF16x2:    two bf16 of p.scale · v (low and high half from two hashes)
//   2 BITS:      raw hash bits (quantized codes: every code value is valid)
//   3 F16x2POS:  two f16 of p.scale · (0.5 + 0.5 u) (Q8_0 block scales)
//   4 AFFINE:    low half bf16 p.scale · (0.5 + 0.5 u) (group scale), high half bf16
//                −p.scale · 8 · (0.5 + 0.5 u') (group bias: centres 4-bit codes around 0)

struct Params {
    n: u32,
    mode: u32,
    seed: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<uniform> p: Params;

fn hash(a: u32, b: u32) -> u32 {
    var v = a * 747796405u + 2891336453u + b * 277803737u;
    v = ((v >> ((v >> 28u) + 4u)) ^ v) * 277803737u;
    return (v >> 22u) ^ v;
}

fn unit(h: u32) -> f32 {
    return f32(h >> 8u) / 16777216.0;
}

fn bf16_bits(x: f32) -> u32 {
    return bitcast<u32>(x) >> 16u;
}

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let h0 = hash(i, p.seed);
    let h1 = hash(h0, p.seed ^ 0x9e3779b9u);
    var w = 0u;
    switch p.mode {
        case 0u: { w = bitcast<u32>(p.scale * (2.0 * unit(h0) - 1.0)); }
        case 1u: {
            w = bf16_bits(p.scale * (2.0 * unit(h0) - 1.0))
                | (bf16_bits(p.scale * (2.0 * unit(h1) - 1.0)) << 16u);
        }
        case 2u: { w = h0 ^ (h1 << 7u); }
        case 3u: {
            w = pack2x16float(vec2<f32>(p.scale * (0.5 + 0.5 * unit(h0)),
                                        p.scale * (0.5 + 0.5 * unit(h1))));
        }
        default: {
            w = bf16_bits(p.scale * (0.5 + 0.5 * unit(h0)))
                | (bf16_bits(-8.0 * p.scale * (0.5 + 0.5 * unit(h1))) << 16u);
        }
    }
    out[i] = w;
}
