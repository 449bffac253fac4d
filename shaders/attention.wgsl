// attention.wgsl: ring KV-cache append and causal sliding-window attention (one query row per
// new position), f32 math; the cache holds f16 (KV16 define, set by the launcher) or f32. Optional
// interleaved RoPE (p.rope = 1): kv_append rotates k as it writes it, attention rotates q as it
// loads it, exactly as rope.wgsl (theta = f32(pos) * freqs[i] rounded through workgroup memory, the
// same cos/sin polynomials), so no separate RoPE dispatch is needed.
//
// Tensors (counts in elements; Dh = head_dim (any 1..256), Dp = Dh rounded up to a multiple of 8,
// HD = heads * Dh, HDp = heads * Dp):
//   qkv   [T, row_stride] f32, row t = new position pos0 + t: q at q_offset, k at k_offset, v at
//         v_offset (HD each; head h = columns [h*Dh, h*Dh + Dh)); e.g. the fused in_proj output.
//   cache [2, capacity, HDp]: K slots then V slots; position pos lives in slot pos % capacity; head h
//         of a slot = elements [h*Dp, h*Dp + Dh), then Dp - Dh zeros (written by kv_append), so
//         the attention loops run over whole vec4/vec8 groups of Dp for any Dh.
//         KV16: IEEE half, two per u32 (pack2x16float / unpack2x16float); else f32.
//   freqs [Dh/2] f32 RoPE inverse frequencies (kernels::rope::Rope); bound but unread without RoPE.
//   out   [T, HD] f32.
//   part  [T, heads, splits, Dp + 2] f32 (split mode only): per key range, the running max m,
//         the sum l of exp(score - m), then the Dp unnormalised sums of exp(score - m) * v.
// Visible keys of the query at pq = pos0 + t: pk in [lo, pq] with
//   lo = max(0, pq + 1 - window, pos0 + T - capacity)
// (0 <= pq - pk < window, causal inside the T new rows, and only positions the ring still holds;
// with capacity = window and T > 1 the first queries lose their oldest keys, as PyTorch's ring).
// Scores q.k / sqrt(Dh) (scale from p.scale), softmax in f32 with the max subtracted.
//
// Entry points (one per define):
// KV_APPEND  kv_append: bindings 0 qkv (read), 1 cache (read_write), 2 freqs (read), 3 p.
//            @workgroup_size(WG), one invocation per two adjacent elements (one RoPE pair) of
//            a padded K or V cache row: j = (wid.y * nwg.x + wid.x) * WG + lid, j < 2 * T * HDp/2,
//            i.e. which (0 = K, 1 = V) = j / (T*HDp/2), t = rem / (HDp/2), element
//            e = 2 * (rem % (HDp/2)) of the padded row (head e / Dp, dim e % Dp).
// ATTEND     attention: bindings 0 qkv (read), 1 cache (read), 2 out (read_write), 3 freqs (read),
//            [SPLIT: 4 part (read_write), 5 p] else 4 p.
//            @workgroup_size(WG), workgroup (split s = wid.x, head h = wid.y, query t = wid.z).
//            The padded head dim Dp is also the pipeline-override constant DH (constant loop trip
//            counts). Keys go in chunks of WG; split s takes chunks [s*cps, (s+1)*cps) of its
//            query's range (cps = chunks_per_split). Per chunk: invocation i scores key i of the
//            chunk (its whole K row, 16-byte loads), the chunk max is reduced across the workgroup
//            (subgroups or shared memory), the running max/sums are rescaled (online softmax),
//            p = exp(score - max) goes to shared memory, then the workgroup is viewed as
//            (WG / (Dp/8)) key groups x (Dp/8) lanes: lane owns 8 output dims, group g adds
//            keys g, g + groups, ... of the chunk (coalesced 16-byte V loads). At the end the
//            groups' vectors and the invocations' exp sums are reduced; out = acc / l (the first
//            Dh dims), or in split mode (m, l, acc) go to part.
// COMBINE    attention_combine: bindings 0 part (read), 1 out (read_write), 2 p.
//            @workgroup_size(WG), workgroup (head h = wid.x, query t = wid.y); invocation
//            d < Dh merges the splits: M = max m_s, out = sum acc_s e^(m_s-M) / sum l_s e^(m_s-M).
// Shared memory (ATTEND): q 1 KB, p 1 KB, reduction 1 KB (also the q angles), group sums 8 KB:
// 11 KB < 16 KB. Scores of a whole 3000-key window would fit too (12 KB), but not beside the 8 KB of
// group sums; chunking with an online softmax keeps any window length in 11 KB.

struct Params {
    t: u32,            // new rows (queries)
    heads: u32,
    head_dim: u32,     // Dh
    hd: u32,           // heads * Dh: one out row
    row_stride: u32,   // qkv row stride
    q_offset: u32,
    k_offset: u32,
    v_offset: u32,
    pos0: u32,         // absolute position of qkv row 0
    capacity: u32,     // ring slots
    window: u32,       // keys with pq - pk < window
    splits: u32,
    chunks_per_split: u32,
    scale: f32,        // 1 / sqrt(head_dim)
    dp: u32,           // Dp: head_dim rounded up to a multiple of 8
    hdp: u32,          // heads * Dp: one cache row
    rope: u32,         // 1: rotate q and k (freqs)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// WG (256: invocations per workgroup, keys per chunk) and MAX_HEAD_DIM (256) are injected
// from the launcher.
// Finite "minus infinity": exp(NEG - m) is 0 and NEG - NEG is 0, never NaN.
const NEG: f32 = -3.0e38;

//#include "common/rope.wgsl"

//#if KV_APPEND
@group(0) @binding(0) var<storage, read> qkv: array<f32>;
//#if KV16
@group(0) @binding(1) var<storage, read_write> cache: array<u32>;
//#else
@group(0) @binding(1) var<storage, read_write> cache: array<vec2<f32>>;
//#endif
@group(0) @binding(2) var<storage, read> freqs: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> ang: array<f32, WG>;

@compute @workgroup_size(WG)
fn kv_append(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = (wid.y * nwg.x + wid.x) * WG + lid;
    let half_row = p.hdp / 2u;
    let per = p.t * half_row;
    let live = j < 2u * per;
    let jc = min(j, 2u * per - 1u);
    let which = jc / per;
    let rem = jc % per;
    let t = rem / half_row;
    let e = 2u * (rem % half_row);
    let h = e / p.dp;
    let d = e % p.dp; // even: (d, d + 1) is RoPE pair d / 2
    let pos = p.pos0 + t;
    let rot = p.rope != 0u && which == 0u && d < p.head_dim;
    if (rot) {
        ang[lid] = f32(pos) * freqs[d / 2u];
    }
    workgroupBarrier();
    if (!live) {
        return;
    }
    let src = t * p.row_stride + select(p.k_offset, p.v_offset, which == 1u) + h * p.head_dim + d;
    var v = vec2<f32>(0.0);
    if (d + 1u < p.head_dim) {
        v = vec2<f32>(qkv[src], qkv[src + 1u]);
    } else if (d < p.head_dim) {
        v.x = qkv[src];
    }
    if (rot) {
        v = rotate(v, cos_sin(ang[lid]));
    }
    let slot = pos % p.capacity;
    let dst = (which * p.capacity + slot) * half_row + e / 2u;
//#if KV16
    cache[dst] = pack2x16float(v);
//#else
    cache[dst] = v;
//#endif
}
//#endif

//#if ATTEND
@group(0) @binding(0) var<storage, read> qkv: array<f32>;
//#if KV16
@group(0) @binding(1) var<storage, read> cache: array<vec4<u32>>;
//#else
@group(0) @binding(1) var<storage, read> cache: array<vec4<f32>>;
//#endif
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> freqs: array<f32>;
//#if SPLIT
@group(0) @binding(4) var<storage, read_write> part: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
//#else
@group(0) @binding(4) var<uniform> p: Params;
//#endif

// Padded head dimension Dp as a pipeline-override constant (one pipeline per Dp) so that the
// per-key loops have constant trip counts and compile to independent, unrolled loads.
override DH: u32 = 64u;

var<workgroup> qs: array<vec4<f32>, MAX_HEAD_DIM / 4u>; // rotated, scaled q of this head, zero-padded to Dp
var<workgroup> pb: array<f32, WG>;           // exp(score - max) of the chunk's keys
var<workgroup> red: array<f32, WG>;          // reductions; first the RoPE angles of q
var<workgroup> gsum: array<vec4<f32>, 2u * WG>; // per key group: Dp sums (groups * Dp = 8 WG floats)

//#include "common/reduce.wgsl"

// q . K[slot] for head h (q already scaled, in qs).
fn score(slot: u32, h: u32) -> f32 {
    var s0 = 0.0;
    var s1 = 0.0;
//#if KV16
    let base = (slot * p.hdp + h * DH) / 8u;
    for (var c = 0u; c < DH / 8u; c++) {
        let w = cache[base + c];
        s0 += dot(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)), qs[2u * c]);
        s1 += dot(vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)), qs[2u * c + 1u]);
    }
//#else
    let base = (slot * p.hdp + h * DH) / 4u;
    for (var c = 0u; c < DH / 4u; c += 2u) {
        s0 += dot(cache[base + c], qs[c]);
        s1 += dot(cache[base + c + 1u], qs[c + 1u]);
    }
//#endif
    return s0 + s1;
}

// Dims [8*lane, 8*lane + 8) of V[slot] for head h, as two vec4.
fn v_row(slot: u32, h: u32, lane: u32) -> array<vec4<f32>, 2> {
//#if KV16
    let v = cache[(p.capacity * p.hdp + slot * p.hdp + h * DH) / 8u + lane];
    return array<vec4<f32>, 2>(
        vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)),
        vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w)));
//#else
    let vb = (p.capacity * p.hdp + slot * p.hdp + h * DH) / 4u + 2u * lane;
    return array<vec4<f32>, 2>(cache[vb], cache[vb + 1u]);
//#endif
}

@compute @workgroup_size(WG)
fn attention(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
//#if SUBGROUPS
    @builtin(subgroup_invocation_id) sid: u32,
    @builtin(subgroup_size) ssz: u32,
//#endif
) {
    let split = wid.x;
    let h = wid.y;
    let t = wid.z;
    let dh = DH;      // padded
    let dh4 = dh / 4u;
    let pq = p.pos0 + t;
    let dq = p.head_dim;
    // RoPE angles of q's pairs (rounded to f32 through workgroup memory, as rope.wgsl).
    if (p.rope != 0u && lid < dq / 2u) {
        red[lid] = f32(pq) * freqs[lid];
    }
    workgroupBarrier();
    if (lid < dh4) {
        let e = 4u * lid;
        let b = t * p.row_stride + p.q_offset + h * dq + e;
        var q = vec4<f32>(0.0);
        if (e + 3u < dq) {
            q = vec4<f32>(qkv[b], qkv[b + 1u], qkv[b + 2u], qkv[b + 3u]);
        } else {
            for (var c = 0u; c < 4u; c++) {
                if (e + c < dq) {
                    q[c] = qkv[b + c];
                }
            }
        }
        if (p.rope != 0u) {
            if (e < dq) {
                let r = rotate(q.xy, cos_sin(red[2u * lid]));
                q.x = r.x;
                q.y = r.y;
            }
            if (e + 2u < dq) {
                let r = rotate(q.zw, cos_sin(red[2u * lid + 1u]));
                q.z = r.x;
                q.w = r.y;
            }
        }
        qs[lid] = q * p.scale;
    }

    // Visible key positions [lo, pq].
    let end = p.pos0 + p.t;
    var lo = 0u;
    if (pq + 1u > p.window) {
        lo = pq + 1u - p.window;
    }
    if (end > p.capacity) {
        lo = max(lo, end - p.capacity);
    }
    let n = pq + 1u - lo;
    let nch = (n + WG - 1u) / WG;
    let c0 = split * p.chunks_per_split;
    let c1 = min(nch, c0 + p.chunks_per_split);

    // V layout: `lanes` invocations of 8 dims cover a head; `groups` key groups.
    let lanes = dh / 8u;
    let groups = WG / lanes;
    let g = lid / lanes;
    let lane = lid % lanes;
    let v_active = g < groups;

    var m = NEG;
    var l = 0.0;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    workgroupBarrier();
    for (var c = c0; c < c1; c++) {
        let first = c * WG;
        let j = first + lid;
        let live = j < n;
        var sc = NEG;
        if (live) {
            sc = score((lo + j) % p.capacity, h);
        }
//#if SUBGROUPS
        let cm = wg_max(sc, lid, sid, ssz);
//#else
        let cm = wg_max(sc, lid);
//#endif
        let mn = max(m, cm);
        let alpha = exp(m - mn);
        m = mn;
        let pj = select(0.0, exp(sc - mn), live);
        l = l * alpha + pj;
        pb[lid] = pj;
        acc0 *= alpha;
        acc1 *= alpha;
        workgroupBarrier();
        let cnt = min(WG, n - first);
        if (v_active) {
            // Four keys per step: their loads are independent and in flight together.
            let base = lo + first;
            var k = g;
            for (; k + 3u * groups < cnt; k += 4u * groups) {
                let a = v_row((base + k) % p.capacity, h, lane);
                let b = v_row((base + k + groups) % p.capacity, h, lane);
                let c2 = v_row((base + k + 2u * groups) % p.capacity, h, lane);
                let d = v_row((base + k + 3u * groups) % p.capacity, h, lane);
                let wa = pb[k];
                let wb = pb[k + groups];
                let wc = pb[k + 2u * groups];
                let wd = pb[k + 3u * groups];
                acc0 += wa * a[0] + wb * b[0] + wc * c2[0] + wd * d[0];
                acc1 += wa * a[1] + wb * b[1] + wc * c2[1] + wd * d[1];
            }
            for (; k < cnt; k += groups) {
                let a = v_row((base + k) % p.capacity, h, lane);
                let wa = pb[k];
                acc0 += wa * a[0];
                acc1 += wa * a[1];
            }
        }
        workgroupBarrier();
    }
//#if SUBGROUPS
    let lt = wg_sum(l, lid, sid, ssz);
//#else
    let lt = wg_sum(l, lid);
//#endif
    if (v_active) {
        gsum[g * dh4 + 2u * lane] = acc0;
        gsum[g * dh4 + 2u * lane + 1u] = acc1;
    }
    workgroupBarrier();
    if (lid < dh4) {
        var o = vec4<f32>(0.0);
        for (var k = 0u; k < groups; k++) {
            o += gsum[k * dh4 + lid];
        }
//#if SPLIT
        let pbase = ((t * p.heads + h) * p.splits + split) * (dh + 2u);
        if (lid == 0u) {
            part[pbase] = m;
            part[pbase + 1u] = lt;
        }
        let ob = pbase + 2u + 4u * lid;
        part[ob] = o.x;
        part[ob + 1u] = o.y;
        part[ob + 2u] = o.z;
        part[ob + 3u] = o.w;
//#else
        o = o / lt;
        let e = 4u * lid;
        let ob = t * p.hd + h * dq + e;
        if (e + 3u < dq) {
            out[ob] = o.x;
            out[ob + 1u] = o.y;
            out[ob + 2u] = o.z;
            out[ob + 3u] = o.w;
        } else {
            for (var c = 0u; c < 4u; c++) {
                if (e + c < dq) {
                    out[ob + c] = o[c];
                }
            }
        }
//#endif
    }
}
//#endif

//#if COMBINE
@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn attention_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let dh = p.head_dim;
    if (lid >= dh) {
        return;
    }
    let stride = p.dp + 2u;
    let base = (t * p.heads + h) * p.splits * stride;
    var mx = NEG;
    for (var s = 0u; s < p.splits; s++) {
        mx = max(mx, part[base + s * stride]);
    }
    var l = 0.0;
    var o = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let b = base + s * stride;
        let f = exp(part[b] - mx);
        l += part[b + 1u] * f;
        o += part[b + 2u + lid] * f;
    }
    out[t * p.hd + h * dh + lid] = o / l;
}
//#endif
