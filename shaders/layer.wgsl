// layer.wgsl: transformer-layer launches built on the linear kernel family's weight formats and
// input transforms (common/linear_core.wgsl; layouts, bindings, Params and defines in linear.wgsl's
// header): mlp_split (define MLP_SPLIT), a transformer MLP split by hidden units into partial
// outputs; qkv_attention (defines KV_OUT + QKV_ATTN, with RES_IN the previous layer's partials
// summed on load), one workgroup per head: in-projection, KV append and attention; res_linear
// (RES_LINEAR + RES_IN), a linear on the residual stream summed from the last layer's partials
// (the depformer's head). Each entry
// point's dispatch geometry is documented above it and in its launcher
// (crate/kernels/linear/mlp_split.rs, qkv_attn.rs, res_linear.rs).

//#include "common/linear_core.wgsl"

// The sums over K of the 4 weight rows rw for the tile's batch rows, by QL lanes per row quad (lane
// ql takes steps ql, ql + QL, … through step(), then a shared-memory tree over the lanes), scaled
// as the linear entry point scales its sums (IN_RMS: 1/rms; int8 rows: scb/127). Called in uniform
// control flow by every invocation (the row quad of each group of QL lanes); the result is valid in
// each quad's lane 0. red is free again when it returns.
fn quad_sums(rw: vec4<u32>, ql: u32, lid: u32) -> array<vec4<f32>, MT> {
    // Zeroed explicitly: a declaration inside a loop is not re-zeroed by every compiler.
    var acc: array<vec4<f32>, MT>;
    for (var i = 0u; i < MT; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var c = ql; c < p.chunks; c += QL) {
        step(c, rw, 0u, &acc);
    }
    for (var i = 0u; i < MT; i++) {
        red[i * WG + lid] = acc[i];
    }
    workgroupBarrier();
    for (var st = QL / 2u; st > 0u; st >>= 1u) {
        if (ql < st) {
            for (var i = 0u; i < MT; i++) {
                red[i * WG + lid] += red[i * WG + lid + st];
            }
        }
        workgroupBarrier();
    }
    var out: array<vec4<f32>, MT>;
    for (var i = 0u; i < MT; i++) {
        var v = red[i * WG + lid];
//#if IN_RMS
        v *= aux[i].w;
//#endif
//#if W_I8ROW
        // bitsandbytes' 1/127, rounded to f32 (as the linear entry point).
        v *= vec4<f32>(bitcast<f32>(s[rw.x]), bitcast<f32>(s[rw.y]), bitcast<f32>(s[rw.z]),
            bitcast<f32>(s[rw.w])) * 0.007874015718698502;
//#endif
        out[i] = v;
    }
    workgroupBarrier();
    return out;
}

//#if RES_IN
// x_l = x_{l−1} + ls2 ⊙ Σ_j part[j] (the sum in order j, as residual_sum) into xr, for the m batch
// rows (x = the partials [parts, m, K], ls2 = pk's third row); with `store` (one workgroup of the
// grid) also into res at res_out for the launches after this one (res_out is never read here).
// Called in uniform control flow; ends with a barrier.
fn form_residual(lid: u32, store: bool) {
    let kq = p.k / 4u;
    for (var e = lid; e < p.m * kq; e += WG) {
        var t = vec4<f32>(0.0);
        for (var j = 0u; j < p.parts; j++) {
            t += x[j * p.m * kq + e];
        }
        let v = res[p.res_in + e] + pk[2u * kq + e % kq] * t;
        xr[e] = v;
        if (store) {
            res[p.res_out + e] = v;
        }
    }
    workgroupBarrier();
}
//#endif

//#if RES_LINEAR
// res_linear (RES_LINEAR + RES_IN, IN_PLAIN; bindings as qkv_attention_res's, y = [m, N], bias and
// scale unbound): y[i, n] = Σ_k W[row_offset + n, k] · x_l[i, k] for the m ≤ MT rows of the residual
// stream x_l that form_residual sums from the last layer's MLP partials (a head reading a split
// transformer's output without a residual_sum launch before it). Workgroup t = wid.y · nwg.x + wid.x
// computes output rows [t·RL, t·RL + RL) (RL = RL_ROWS, a multiple of 4 · WG / QL): every workgroup
// sums the partials itself (parts · m · K floats), so the tile is tall to keep the groups few;
// its RL / 4 row quads go WG / QL at a time through quad_sums (QL lanes per quad, as
// qkv_attention's in-projection). Rows past N are clamped on load and skipped on store; workgroup
// 0 also stores x_l at res_out.
const_assert RL_ROWS % (4u * WG / QL) == 0u;

@compute @workgroup_size(WG)
fn res_linear(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = wid.y * nwg.x + wid.x;
    form_residual(lid, t == 0u);
    let slot_q = lid / QL;
    let ql = lid % QL;
    for (var q0 = 0u; q0 < RL_ROWS / 4u; q0 += WG / QL) {
        let n0 = t * RL_ROWS + 4u * (q0 + slot_q);
        let rw = min(vec4<u32>(n0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u)) + vec4<u32>(p.row_offset);
        let sums = quad_sums(rw, ql, lid);
        if (ql == 0u) {
            for (var i = 0u; i < MT; i++) {
                if (i < p.m) {
                    for (var r = 0u; r < 4u; r++) {
                        if (n0 + r < p.n) {
                            y[i * p.y_stride + p.y_col + n0 + r] = sums[i][r];
                        }
                    }
                }
            }
        }
    }
}
//#endif

//#if MLP_SPLIT
// mlp_split (MLP_SPLIT; bindings: w = the MLP's first weight, s its scales, x [m, K] the input,
// w2 / s2 the second weight [N, H] in the same format, y = part [J, m, N], nw / nb the norm):
// workgroup j = wid.x (grid [J = H / MS_S, 1, 1]) computes hidden units [j·S, j·S + S) (S = MS_S)
// of the m ≤ MT batch rows. Phase 1: rows row_offset + j·S + r of w (GELU), or the gate rows
// row_offset + j·S + r and the up rows row_offset + H + j·S + r (ACT_SILU), r < S, as row quads
// exactly like qkv_attention's in-projection (norm on load, QL lanes per quad, a tree over the
// lanes) into hu, then the activation (GELU erf, or silu(g)·u: the formulas of IN_GELU / IN_SILU)
// into ha. Phase 2 (ph2 = true: step() reads w2 / s2 through wld / sld and xin reads ha): one
// invocation per row quad o of w2 sums its S / E steps of columns [j·S, j·S + S) and stores
// part[j, m, o] = Σ_{i<S} w2[o, j·S + i] · a[m, i] (times the int8-row scale of row o).
// S is a multiple of every format's block / group along K (32 or 64), so the column block is whole
// blocks / groups and the per-format scale indexing of step() holds.
var<workgroup> hu: array<f32, MT * 2u * MS_S>;        // per batch row: pre-activations (gate, up)
var<workgroup> ha: array<vec4<f32>, MT * MS_S / 4u>; // per batch row: the S activations
var<private> p_xoff: u32;                            // phase 2: first vec4 of the block along H
const_assert WG % QL == 0u;
const_assert MS_S % 64u == 0u;

@compute @workgroup_size(WG)
fn mlp_split(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
//#if SUBGROUPS
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
//#endif
) {
    let j = wid.x;
    let sq = MS_S / 4u; // quads per block
//#if IN_LAYER
//#if SUBGROUPS
    norm_stats(0u, lid, lane, sg_size);
//#else
    norm_stats(0u, lid);
//#endif
//#endif
//#if IN_RMS
//#if SUBGROUPS
    norm_stats(0u, lid, lane, sg_size);
//#else
    norm_stats(0u, lid);
//#endif
//#endif

//#if ACT_SILU
    let nq = 2u * sq;
//#else
    let nq = sq;
//#endif
    let slot_q = lid / QL;
    let ql = lid % QL;
    for (var q0 = 0u; q0 < nq; q0 += WG / QL) {
        let qi = min(q0 + slot_q, nq - 1u);
        let r0 = (qi / sq) * p.hidden + j * MS_S + 4u * (qi % sq) + p.row_offset;
        let rw = vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u);
        let sums = quad_sums(rw, ql, lid);
        if (ql == 0u && q0 + slot_q < nq) {
            for (var i = 0u; i < MT; i++) {
                let v = sums[i];
                let b = i * 2u * MS_S + 4u * qi;
                hu[b] = v.x;
                hu[b + 1u] = v.y;
                hu[b + 2u] = v.z;
                hu[b + 3u] = v.w;
            }
        }
        workgroupBarrier();
    }
    for (var e = lid; e < MT * sq; e += WG) {
        let b = (e / sq) * 2u * MS_S + 4u * (e % sq);
        let g = vec4<f32>(hu[b], hu[b + 1u], hu[b + 2u], hu[b + 3u]);
//#if ACT_SILU
        let u = vec4<f32>(hu[b + MS_S], hu[b + MS_S + 1u], hu[b + MS_S + 2u], hu[b + MS_S + 3u]);
        ha[e] = g / (1.0 + exp(-g)) * u;
//#else
        ha[e] = 0.5 * g * (1.0 + erf4(g * 0.70710678118654752));
//#endif
    }
    workgroupBarrier();

    ph2 = true;
    p_xoff = j * sq;
    let nc = MS_S * p.chunks2 / p.hidden; // steps of the block per w2 row
    let c0 = j * nc;
    for (var q = lid; 4u * q < p.n; q += WG) {
        let rw = min(vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u)) + vec4<u32>(p.row_offset2);
        var acc: array<vec4<f32>, MT>;
        // Zeroed explicitly: a declaration inside a loop is not re-zeroed by every compiler.
        for (var i = 0u; i < MT; i++) {
            acc[i] = vec4<f32>(0.0);
        }
        for (var c = c0; c < c0 + nc; c++) {
            step(c, rw, 0u, &acc);
        }
        for (var i = 0u; i < MT; i++) {
            var v = acc[i];
//#if W_I8ROW
            v *= vec4<f32>(bitcast<f32>(s2[rw.x]), bitcast<f32>(s2[rw.y]), bitcast<f32>(s2[rw.z]),
                bitcast<f32>(s2[rw.w])) * 0.007874015718698502;
//#endif
            if (i < p.m) {
                let b = (j * p.m + i) * p.n;
                for (var r = 0u; r < 4u; r++) {
                    if (4u * q + r < p.n) {
                        y[b + 4u * q + r] = v[r];
                    }
                }
            }
        }
    }
}
//#endif

//#if QKV_ATTN
// qkv_attention (QKV_ATTN with KV_OUT's bindings; y is the attention output [m, kv_hd]): workgroup
// h = wid.x computes head h's q, k and v rows of the in-projection (weight rows row_offset +
// {0, kv_hd, 2·kv_hd} + h·Dh + r, r < Dh) for the m ≤ MT batch rows into hq, as row quads: QL
// invocations per quad take steps ql, ql + QL, … of the 4 rows (step() above), WG / QL quads at
// a time, then a shared-memory tree over the QL lanes. Then k (RoPE) and v go into the ring as
// KV_OUT writes them, q is rotated and scaled, and each query's attention over its visible keys
// (read back from the cache after a storage barrier, so new keys are the stored ones) goes to
// y[m, h·Dh ..]: scores by invocation per key into qsc, max and Σ by trees over rr, then
// (WG / (Dh/2)) key groups × (Dh/2) dim pairs, summed over the groups in op.
var<workgroup> hq: array<f32, MT * 3u * QA_MAX_DH>; // per batch row: q (rotated, scaled), k, v
var<workgroup> qsc: array<f32, QA_MAX_KEYS>;         // one query's scores, then exp(score − max)
var<workgroup> qang: array<f32, MT * QA_MAX_DH / 2u>; // RoPE angles per batch row and pair
var<workgroup> rr: array<f32, WG>;
var<workgroup> op: array<vec2<f32>, WG>;
const QA_NEG: f32 = -3.0e38; // finite "minus infinity" (exp(QA_NEG − m) = 0, never NaN)
const_assert WG % QL == 0u;
const_assert 2u * WG >= QA_MAX_DH;

// Max (is_max) or sum of one f32 per invocation, returned to all (uniform control flow).
fn rr_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    rr[lid] = v;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
        if (lid < st) {
            rr[lid] = select(rr[lid] + rr[lid + st], max(rr[lid], rr[lid + st]), is_max);
        }
        workgroupBarrier();
    }
    let r = rr[0];
    workgroupBarrier();
    return r;
}

// Cache pair e (two elements) of row `row` (K rows 0 .. capacity − 1, then V rows).
fn kv_pair(row: u32, e: u32) -> vec2<f32> {
    let f = row * (p.kv_hd / 2u) + e;
//#if KV16
    return unpack2x16float(cache[f]);
//#else
    return cache[f];
//#endif
}

@compute @workgroup_size(WG)
fn qkv_attention(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
//#if SUBGROUPS
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
//#endif
) {
    let h = wid.x;
    let dh = p.kv_head_dim;
    let hd = p.kv_hd;
    let np = dh / 2u;
//#if RES_IN
    form_residual(lid, h == 0u);
//#endif
//#if IN_LAYER
//#if SUBGROUPS
    norm_stats(0u, lid, lane, sg_size);
//#else
    norm_stats(0u, lid);
//#endif
//#endif
//#if IN_RMS
//#if SUBGROUPS
    norm_stats(0u, lid, lane, sg_size);
//#else
    norm_stats(0u, lid);
//#endif
//#endif

    // The head's 3·Dh rows as 3·Dh / 4 quads (Dh a multiple of 8: no quad straddles q, k, v).
    let nq = 3u * dh / 4u;
    let slot_q = lid / QL;
    let ql = lid % QL;
    for (var q0 = 0u; q0 < nq; q0 += WG / QL) {
        let qi = min(q0 + slot_q, nq - 1u);
        let r0 = ((4u * qi) / dh) * hd + h * dh + (4u * qi) % dh + p.row_offset;
        let rw = vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u);
        let sums = quad_sums(rw, ql, lid);
        if (ql == 0u && q0 + slot_q < nq) {
            for (var i = 0u; i < MT; i++) {
                let v = sums[i];
                let b = i * 3u * dh + 4u * qi;
                hq[b] = v.x;
                hq[b + 1u] = v.y;
                hq[b + 2u] = v.z;
                hq[b + 3u] = v.w;
            }
        }
        workgroupBarrier();
    }

    // RoPE angles (rounded to f32 through workgroup memory, as kv_append and attention), then k
    // and v into ring slot (kv_pos0 + i) % capacity, q rotated and scaled in place.
    for (var j = lid; j < MT * np; j += WG) {
        if (p.kv_rope != 0u) {
            qang[j] = f32(p.kv_pos0 + j / np) * freqs[j % np];
        }
    }
    workgroupBarrier();
    for (var j = lid; j < p.m * np; j += WG) {
        let i = j / np;
        let e = j % np;
        let b = i * 3u * dh + 2u * e;
        var qv = vec2<f32>(hq[b], hq[b + 1u]);
        var kv = vec2<f32>(hq[b + dh], hq[b + dh + 1u]);
        let vv = vec2<f32>(hq[b + 2u * dh], hq[b + 2u * dh + 1u]);
        if (p.kv_rope != 0u) {
            let cs = cos_sin(qang[j]);
            qv = rotate(qv, cs);
            kv = rotate(kv, cs);
        }
        hq[b] = qv.x * p.attn_scale;
        hq[b + 1u] = qv.y * p.attn_scale;
        let dst = ((p.kv_pos0 + i) % p.kv_capacity) * (hd / 2u) + h * np + e;
//#if KV16
        cache[dst] = pack2x16float(kv);
        cache[p.kv_capacity * (hd / 2u) + dst] = pack2x16float(vv);
//#else
        cache[dst] = kv;
        cache[p.kv_capacity * (hd / 2u) + dst] = vv;
//#endif
    }
    storageBarrier();
    workgroupBarrier();

    // Query i at pq = kv_pos0 + i sees pk in [lo, pq], lo = max(0, pq + 1 − window,
    // kv_pos0 + m − capacity).
    let end = p.kv_pos0 + p.m;
    let groups = WG / np;
    let g = lid / np;
    let e = lid % np;
    for (var i = 0u; i < MT; i++) {
        if (i < p.m) {
            let pq = p.kv_pos0 + i;
            var lo = 0u;
            if (pq + 1u > p.attn_window) {
                lo = pq + 1u - p.attn_window;
            }
            if (end > p.kv_capacity) {
                lo = max(lo, end - p.kv_capacity);
            }
            let n = pq + 1u - lo;
            let qb = i * 3u * dh;
            var mx = QA_NEG;
            for (var j = lid; j < n; j += WG) {
                let row = (lo + j) % p.kv_capacity;
                var s0 = 0.0;
                for (var d = 0u; d < np; d++) {
                    s0 += dot(kv_pair(row, h * np + d), vec2<f32>(hq[qb + 2u * d], hq[qb + 2u * d + 1u]));
                }
                qsc[j] = s0;
                mx = max(mx, s0);
            }
            mx = rr_reduce(mx, lid, true);
            var l = 0.0;
            for (var j = lid; j < n; j += WG) {
                let ex = exp(qsc[j] - mx);
                qsc[j] = ex;
                l += ex;
            }
            l = rr_reduce(l, lid, false);
            var o = vec2<f32>(0.0);
            if (g < groups) {
                for (var j = g; j < n; j += groups) {
                    o += qsc[j] * kv_pair(p.kv_capacity + (lo + j) % p.kv_capacity, h * np + e);
                }
            }
            op[lid] = o;
            workgroupBarrier();
            if (lid < np) {
                var t = vec2<f32>(0.0);
                for (var k = 0u; k < groups; k++) {
                    t += op[k * np + lid];
                }
                t = t / l;
                let ob = i * hd + h * dh + 2u * lid;
                y[ob] = t.x;
                y[ob + 1u] = t.y;
            }
            workgroupBarrier();
        }
    }
}
//#endif
