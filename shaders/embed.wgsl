// embed.wgsl: embedding gather-and-sum over token streams (Moshi's input embedding, spec §2.3).
//
//   out[d] (= or +=) Σ_s table[row_s(id_s), d]      for d in [0, dim)
//   id_s     = tokens[stream_s.token]                (token ids are produced on the GPU)
//   row_s(i) = stream_s.row_offset + (i - stream_s.first_id)
//   a stream contributes nothing (a zero vector) when id_s is outside
//   [first_id, first_id + n_rows): this covers the "zero" token 0xFFFFFFFF (-1 as i32) and lets one
//   big table be split by rows over several buffers (one launch per buffer, accumulating).
//   Streams are summed in f32 by a fixed tree (slots s and s + 8, then s + 4, … for 16 slots), then added to
//   out (accumulate) or stored.
//
// Layouts:
//   table  [rows_total, dim] row-major, several tables concatenated along rows (one buffer);
//          F32: one f32 per u32 word; BF16 (flags bit 1): u32 words holding two bf16, element 2w in
//          the low 16 bits and 2w+1 in the high 16 bits (little-endian bf16 array); dim even.
//   tokens u32 ids (element index into the bound view).
//   out    f32 [dim].
// Bindings (group 0):
//   0 table:  array<u32>, read
//   1 tokens: array<u32>, read
//   2 out:    array<f32>, read_write
//   3 p:      Params (uniform, dynamic offset)
// Dispatch: @workgroup_size(WG) = WG / WORDS stream slots x WORDS table words (both injected
// from the launcher: 16 x 16); invocation l of workgroup g loads word
// w = WORDS g + l % WORDS of stream l / WORDS's row (all rows of a launch are read in parallel),
// then a shared-memory tree sums the slots. A word is one f32 element (F32) or two bf16 elements,
// out[2w] and out[2w+1] (BF16). Grid x = ceil(words / WORDS) with words = dim (F32) or dim / 2
// (BF16). The first n_streams invocations first read the token ids.

struct Params {
    dim: u32,       // elements per row
    n_streams: u32, // streams in this launch (at most 15)
    flags: u32,     // bit 0: accumulate into out; bit 1: table is bf16
    _pad: u32,
    // stream s: (token element index, row_offset, first_id, n_rows)
    streams: array<vec4<u32>, 15>,
}

@group(0) @binding(0) var<storage, read> table: array<u32>;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> rel_ids: array<u32, WG / WORDS>;
var<workgroup> part: array<vec2<f32>, WG>;

@compute @workgroup_size(WG)
fn embed_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let l = lid.x;
    if (l < p.n_streams) {
        let st = p.streams[l];
        rel_ids[l] = tokens[st.x] - st.z; // wraps to a huge value below first_id (and for -1)
    }
    workgroupBarrier();
    let s = l / WORDS;                 // stream slot
    let w = wid.x * WORDS + l % WORDS; // table word
    let bf16 = (p.flags & 2u) != 0u;
    let words = select(p.dim, p.dim / 2u, bf16);
    var v = vec2<f32>(0.0, 0.0);
    if (s < p.n_streams && w < words) {
        let st = p.streams[s];
        let rel = rel_ids[s];
        if (rel < st.w) {
            let row = st.y + rel;
            if (bf16) {
                let u = table[row * (p.dim / 2u) + w];
                v = vec2<f32>(bitcast<f32>(u << 16u), bitcast<f32>(u & 0xffff0000u));
            } else {
                v.x = bitcast<f32>(table[row * p.dim + w]);
            }
        }
    }
    part[l] = v;
    workgroupBarrier();
    for (var off = WG / 2u; off >= WORDS; off >>= 1u) {
        if (l < off) {
            part[l] = part[l] + part[l + off];
        }
        workgroupBarrier();
    }
    if (l >= WORDS || w >= words) { return; }
    var acc = part[l];
    let accumulate = (p.flags & 1u) != 0u;
    if (bf16) {
        let o = 2u * w;
        if (accumulate) {
            acc += vec2<f32>(out[o], out[o + 1u]);
        }
        out[o] = acc.x;
        out[o + 1u] = acc.y;
    } else {
        if (accumulate) {
            acc.x += out[w];
        }
        out[w] = acc.x;
    }
}
