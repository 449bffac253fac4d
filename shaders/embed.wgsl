// embed.wgsl: embedding gather-and-sum over token streams (Moshi's input embedding, spec §2.3), each
// table read in the format its checkpoint stores it in and dequantized exactly in f32.
//
//   out[d] (= or +=) Σ_s table_s[id_s - first_id_s, d]      for d in [0, dim)
//   id_s = tokens[token_s]                                   (token ids are produced on the GPU)
//   a stream contributes nothing (a zero vector) when id_s is outside [first_id, first_id + n_rows):
//   this covers the "zero" token 0xFFFFFFFF (-1 as i32) and lets one big table be split by rows over
//   several buffers (one launch per buffer, accumulating). Streams are summed in f32 in a fixed order:
//   slot j (of 16) adds streams j, j + 16 in that order, then a tree over the slots (slots j and
//   j + 8, then j + 4, …); the result is added to out (accumulate) or stored.
//
// Layouts:
//   table  u32 words holding table pieces (rows first_id .. first_id + n_rows of one table) at word
//          offsets `base` (multiples of 64); within a piece, element i = r·dim + d (r = id - first_id):
//          data: element i in word base + i / (32/b) at bit b·(i mod 32/b), b = element bits;
//          scales at sbase = base + align64(ceil(n_rows·dim·b / 32)), per format (kind):
//            0 F32    b 32, f32 bit patterns.                                           w = v
//            1 BF16   b 16, bf16 (low half = even element).                             w = v
//            2 Q8_0   b 8, int8 codes; f16 d of block i/32, two per word (even low).    w = d·q
//            3 AFF4   b 4, MLX codes (unsigned); word per group i/G: bf16 s | bf16 β<<16. w = s·q + β
//            4 AFF8   b 8, idem.                                                        w = s·q + β
//          (the layout of crate/weights/table.rs; G = 32 << group shift). Every product is exact in
//          f32 (s·q: ≤ 8 × 8 significant bits, d·q: 11 × 8), so a fused multiply-add gives the same
//          bits as the reference's separate roundings, which the CPU reference test checks.
//          (PyTorch int8 rows, w = (q·scb)·(1/127), are not gathered: a compiler may reassociate
//          the two roundings, so such tables are dequantized to f32 at load.)
//   tokens u32 ids (element index into the bound view).
//   out    f32 [dim].
// Bindings (group 0):
//   0 table:  array<u32>, read
//   1 tokens: array<u32>, read
//   2 out:    array<f32>, read_write
//   3 p:      Params (uniform, dynamic offset)
// Dispatch: @workgroup_size(WG) = WG / LANES stream slots x LANES lanes (injected from the
// launcher: 16 x 16); lane j of slot s in workgroup g gathers elements 4 (16 g + j) .. +3 of
// the rows of streams s and s + 16 (the first rows of a launch are read in parallel, each in its
// own format), then a shared-memory tree sums the 16 slots. Grid x = ceil(dim / 64). The first
// n_streams invocations first read the token ids.

struct Params {
    dim: u32,       // elements per row
    n_streams: u32, // streams in this launch (at most 31)
    flags: u32,     // bit 0: accumulate into out
    _pad: u32,
    // stream s: (token element index | kind << 24 | group shift << 28, first_id, n_rows, base word)
    streams: array<vec4<u32>, 31>,
}

@group(0) @binding(0) var<storage, read> table: array<u32>;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// The slot tree and the lane arithmetic below are written for 16 slots x 16 lanes.
const_assert WG == 256u && LANES == 16u;

var<workgroup> rel_ids: array<u32, 2u * WG / LANES>;
var<workgroup> part: array<vec4<f32>, WG>;

//#include "common/table.wgsl"

@compute @workgroup_size(WG)
fn embed_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let l = lid.x;
    if (l < p.n_streams) {
        let st = p.streams[l];
        rel_ids[l] = tokens[st.x & 0xffffffu] - st.y; // wraps to a huge value below first_id (and for -1)
    }
    workgroupBarrier();
    let slot = l / 16u;                   // stream slot
    let e0 = (wid.x * 16u + l % 16u) * 4u; // first element of this lane
    var v = vec4<f32>(0.0);
    for (var s = slot; s < p.n_streams; s += 16u) {
        if (e0 < p.dim) {
            let st = p.streams[s];
            let r = rel_ids[s];
            if (r < st.z) {
                let i0 = r * p.dim + e0;
                var row = vec4<f32>(0.0);
                for (var j = 0u; j < 4u; j++) {
                    if (e0 + j < p.dim) {
                        row[j] = table_element(st, i0 + j, p.dim);
                    }
                }
                v += row;
            }
        }
    }
    part[l] = v;
    workgroupBarrier();
    for (var off = 128u; off >= 16u; off >>= 1u) {
        if (l < off) {
            part[l] = part[l] + part[l + off];
        }
        workgroupBarrier();
    }
    if (l >= 16u) { return; }
    let acc = part[l];
    let accumulate = (p.flags & 1u) != 0u;
    for (var j = 0u; j < 4u; j++) {
        let d = e0 + j;
        if (d < p.dim) {
            var x = acc[j];
            if (accumulate) {
                x += out[d];
            }
            out[d] = x;
        }
    }
}
