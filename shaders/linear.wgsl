// linear.wgsl: y[m, y_col + n] (=, +=, or += scale ·) Σ_k X[m, k] · W[row_offset + n, k] (+ bias[y_col + n]),
// n < p.n, for small M (gemv / thin gemm), one kernel body for every weight format (picked by a define)
// and every input transform (picked by a define): X = x, RMSNorm(x), LayerNorm(x), silu(x_g)·x_u or
// GELU(x), computed as x is loaded (norm statistics per batch row inside each workgroup, in f32).
// (y_col / y_stride let a weight split into several buffers write one output; usually y_col = 0 and
// y_stride = p.n.)
//
// Layouts (all row-major, little-endian u32 words):
//   x    [M, x_stride] f32: [M, K] (x_stride = K), or [M, 2K] for IN_SILU (x_stride = 2K: gate
//        columns [0, K), up columns [K, 2K)).     y [M, y_stride] f32.     bias, scale [y_stride] f32.
//   nw, nb [K] f32: the norm's weight (RMSNorm alpha / LayerNorm weight) and LayerNorm bias.
//   W    [rows, K] in the format's GPU layout; the kernel reads rows row_offset .. row_offset + p.n - 1
//        (a row block of a stacked weight, without copying). A row is K / E steps of E weights
//        (E = 4 for f32, 8 otherwise), each one element of w's binding type; K is a multiple of
//        4 (f32), 8 (bf16), 32 (Q8_0) or the group size (affine).
//   W_F32     w: array<vec4<u32>>, K/4 per row: f32 bit patterns.                        (no s)
//   W_BF16    w: array<vec4<u32>>, K/8 per row; element 2i in the low 16 bits of word i, 2i+1 in the
//             high 16 bits; bf16 -> f32 is a 16-bit shift.                                (no s)
//   W_Q8_0    w: array<vec2<u32>>, K/8 per row: int8 codes, byte j of word i = element 4i + j (two's
//             complement); block b (32 weights along K) of row r = words (r·K/32 + b)·8 .. +7.
//             s: the f16 block scales d, two per u32: flat block f = r·K/32 + b lives in word f/2,
//             low half if f is even (read with unpack2x16float). w = d · q.
//   W_AFF8    w: array<vec2<u32>>, K/8 per row: MLX affine 8-bit codes, byte j of word i = element
//             4i + j, unsigned.
//   W_AFF4    w: array<u32>, K/8 per row: MLX affine 4-bit codes, nibble j (bits 4j..4j+3) of word i
//             = element 8i + j, unsigned.
//             s (both affine formats): one u32 per group of G = 32 << p.group_shift weights along K:
//             low 16 bits = bf16 scale, high 16 bits = bf16 bias; group g of row r at word r·K/G + g.
//             w = scale · q + bias.
//   W_I8ROW   w: array<vec2<u32>>, K/8 per row: PyTorch int8 (bitsandbytes row-wise) codes, byte j of
//             word i = element 4i + j (two's complement); row r at words r·K/4 .. (no blocks).
//             s: one f32 per row (its bit pattern): scb[r], the row's absmax. y = scb[r]/127 · Σ q·x
//             (the row scale multiplies the reduced sum, before bias and output mode).
// Input transforms (one define): IN_PLAIN X = x. IN_RMS X = x·nw / sqrt(mean_k(x²) + eps) (the sum of
//   squares is accumulated in the main loop, which reads every x element of the row exactly once per
//   workgroup, and reduced with the dot products; the 1/rms factor is applied to the sums). IN_LAYER
//   X = (x − mean)·rstd·nw + nb, rstd = 1/sqrt(var + eps) (biased variance), mean and variance in one
//   pass over the batch rows before the main loop, shifted by each row's first element (no
//   cancellation for rows with a large mean). IN_SILU X = silu(x[:, :K])·x[:, K:]. IN_GELU
//   X = 0.5·x·(1 + erf(x/√2)) (erf as elementwise.wgsl, |error| < 1.2e-7).
// IN_ATTN (m = 1, no bias): X = the attention output of one query over a short ring KV cache,
//   computed by every workgroup into workgroup memory before the main loop: q = x[0, 0 .. K)
//   (K = kv_hd = heads · kv_head_dim, kv_head_dim a multiple of 8; the qkv row of the fused
//   in-projection), keys and values at positions pk in [lo, kv_pos0], lo = max(0, kv_pos0 + 1 −
//   min(attn_window, kv_capacity)), slot pk % kv_capacity of `kvc` [2, capacity, K] (K slots then V;
//   KV16: half pairs in u32 words, else f32), scores q·k · eps (eps = 1/√head_dim here), softmax
//   with the max subtracted, X[h·Dh + d] = Σ p·v / Σ p. For the depformer (≤ 16 keys): heads ·
//   keys ≤ 256 scores, K ≤ 1024.
// QKV_ATTN (entry point qkv_attention instead of linear; KV_OUT's bindings, y = the attention
//   output [m, kv_hd], m ≤ MT; no bias, store only): one workgroup per head computes its q, k, v
//   rows of the in-projection, appends k (RoPE) and v to the ring as KV_OUT does, and writes its
//   head's attention output (the visible keys of attention.wgsl); see the entry point below.
// Output (p.out_mode): 0 store y = v, 1 accumulate y += v, 2 y += scale[col]·v, v = Σ + bias.
// KV_OUT (a fused attention in-projection, store mode, no bias): y = v as in mode 0, and the
//   columns [kv_k_offset, +kv_hd) (k) and [kv_v_offset, +kv_hd) (v) of batch row m are also
//   written into ring slot (kv_pos0 + m) % kv_capacity of `cache` [2, capacity, kv_hd] (K slots
//   then V slots; head dim kv_head_dim, unpadded: a multiple of 8), k rotated by interleaved RoPE
//   at position kv_pos0 + m when kv_rope = 1, exactly as attention.wgsl's kv_append (theta =
//   f32(pos) · freqs[d / 2] rounded through workgroup memory). KV16: half pairs in u32 words
//   (pack2x16float), else vec2<f32>. Column pairs (2i, 2i + 1) are written together by one
//   invocation after a workgroup barrier (y_col, both offsets and kv_hd even).
// Bindings (group 0):
//   0 w:     weight codes / values, read (type per format, above)
//   1 s:     array<u32>, read           (scales: Q8_0 f16 pairs, affine bf16 scale|bias, int8-row f32
//                                        scb per row; unused otherwise)
//   2 x:     array<vec4<f32>>, read     (activations)
//   3 bias:  array<f32>, read           (read only when p.has_bias != 0)
//   4 y:     array<f32>, read_write     (output [M, y_stride]; a different buffer from every other binding)
//   5 nw:    array<vec4<f32>>, read     (IN_RMS, IN_LAYER)
//   6 nb:    array<vec4<f32>>, read     (IN_LAYER)
//   7 scale: array<f32>, read           (out_mode 2)
//   8 p:     Params (uniform, dynamic offset)
// IN_ATTN replaces binding 3: kvc: array<vec4<u32>> (KV16) or array<vec4<f32>>, read.
// KV_OUT replaces two bindings: 3 freqs: array<f32>, read (RoPE inverse frequencies [Dh/2]; bound
//   but unread without RoPE), 7 cache: read_write (array<u32> with KV16, else array<vec2<f32>>).
// Unused bindings are bound to x by the launcher.
// Dispatch: @workgroup_size(WG) (WG = 64, R and MAX_MT injected from the launcher). A workgroup
// computes R = 4 consecutive output rows n0 .. n0+3 for MT
// consecutive batch rows (MT = 1, 2, 4 or 8 by define MT2/MT4/MT8): the row tile is
// t = wid.y · nwg.x + wid.x (2-D grid when more than 65535 tiles), n0 = 4t, and the batch tile is
// wid.z (m0 = MT · wid.z). Invocation l takes steps l, l + 64, … of the 4 rows (coalesced loads;
// every weight byte is read once per dispatch), keeps 4 × MT partial sums, and the workgroup reduces
// them with subgroupAdd + one shared slot per subgroup (SUBGROUPS) or a shared-memory tree.
// Rows past N and batch rows past M are clamped on load and skipped on store.

//#include "common/linear_core.wgsl"

@compute @workgroup_size(WG)
fn linear(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
//#if SUBGROUPS
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
//#endif
) {
    let n0 = (wid.y * nwg.x + wid.x) * R;
    if (n0 >= p.n) { return; } // uniform over the workgroup
    let m0 = wid.z * MT;

    // Weight rows of this workgroup (rows past N are clamped: computed, never stored).
    let rw = min(vec4<u32>(n0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u)) + vec4<u32>(p.row_offset);
    var acc: array<vec4<f32>, MT>;
    for (var i = 0u; i < MT; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    let inv_k = 1.0 / f32(p.k);
//#if IN_ATTN
    attend(lid);
//#endif

//#if IN_LAYER
//#if SUBGROUPS
    norm_stats(m0, lid, lane, sg_size);
//#else
    norm_stats(m0, lid);
//#endif
//#endif

    // Invocation l takes steps l, l + WG, l + 2·WG, …: consecutive invocations read consecutive
    // steps, so every load is coalesced. Four independent steps per iteration keep more loads in
    // flight (the kernel is bound by memory latency and bandwidth).
    let cs = p.chunks;
    var c = lid;
    for (; c + 3u * WG < cs; c += 4u * WG) {
        step(c, rw, m0, &acc);
        step(c + WG, rw, m0, &acc);
        step(c + 2u * WG, rw, m0, &acc);
        step(c + 3u * WG, rw, m0, &acc);
    }
    for (; c < cs; c += WG) {
        step(c, rw, m0, &acc);
    }

//#if IN_RMS
    // 1 / rms of each batch row: every x element was loaded once by one invocation of the group.
    var ssv: array<vec4<f32>, MT>;
    for (var i = 0u; i < MT; i++) {
        ssv[i] = vec4<f32>(aux[i].z, 0.0, 0.0, 0.0);
    }
//#if SUBGROUPS
    let ss = wg_sum(ssv, lid, lane, sg_size);
//#else
    let ss = wg_sum(ssv, lid);
//#endif
//#endif

//#if SUBGROUPS
    // Sum within each subgroup; its first invocation stores the sum in the subgroup's slot, then
    // the slots are added in order (deterministic). Subgroups are taken to be consecutive
    // invocations (local_invocation_index = subgroup id · subgroup_size + subgroup_invocation_id),
    // as on every WebGPU backend for one-dimensional workgroups; any subgroup size works.
    let nsub = (WG + sg_size - 1u) / sg_size;
    for (var i = 0u; i < MT; i++) {
        let v = subgroupAdd(acc[i]);
        if (lane == 0u) {
            red[i * WG + lid / sg_size] = v;
        }
    }
    workgroupBarrier();
    if (lid < MT * R) {
        let i = lid / R;
        let r = lid % R;
        var t = 0.0;
        for (var j = 0u; j < nsub; j++) {
            t += red[i * WG + j][r];
        }
//#else
    for (var i = 0u; i < MT; i++) {
        red[i * WG + lid] = acc[i];
    }
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
        if (lid < st) {
            for (var i = 0u; i < MT; i++) {
                red[i * WG + lid] += red[i * WG + lid + st];
            }
        }
        workgroupBarrier();
    }
    if (lid < MT * R) {
        let i = lid / R;
        let r = lid % R;
        var t = red[i * WG][r];
//#endif
        let n = n0 + r;
        let m = m0 + i;
        if (n < p.n && m < p.m) {
//#if IN_RMS
            t *= 1.0 / sqrt(ss[i].x * inv_k + p.eps);
//#endif
//#if W_I8ROW
            // bitsandbytes' 1/127 (int8_vectorwise_dequant), rounded to f32.
            t *= bitcast<f32>(s[p.row_offset + n]) * 0.007874015718698502;
//#endif
            let col = p.y_col + n;
            let yi = m * p.y_stride + col;
//#if KV_OUT
            fin[lid] = t;
//#else
//#if IN_ATTN
//#else
            if (p.has_bias != 0u) {
                t += bias[col];
            }
//#endif
            if (p.out_mode == 1u) {
                t += y[yi];
            } else if (p.out_mode == 2u) {
                t = y[yi] + scale[col] * t;
            }
//#endif
            y[yi] = t;
        }
    }
//#if KV_OUT
    // k and v into the ring cache: invocation l < 2·MT takes column pair n0 + 2·(l % 2) of batch
    // row m0 + l / 2.
    let pr = 2u * (lid % 2u);
    let pi = lid / 2u;
    let kcol = p.y_col + n0 + pr;
    let is_k = kcol >= p.kv_k_offset && kcol < p.kv_k_offset + p.kv_hd;
    let is_v = kcol >= p.kv_v_offset && kcol < p.kv_v_offset + p.kv_hd;
    let e = kcol - select(p.kv_v_offset, p.kv_k_offset, is_k); // even element of the cache row
    let pos = p.kv_pos0 + m0 + pi;
    let rot = lid < 2u * MT && is_k && p.kv_rope != 0u;
    if (rot) {
        ang[lid] = f32(pos) * freqs[(e % p.kv_head_dim) / 2u];
    }
    workgroupBarrier();
    if (lid < 2u * MT && (is_k || is_v) && n0 + pr + 1u < p.n && m0 + pi < p.m) {
        var v = vec2<f32>(fin[pi * R + pr], fin[pi * R + pr + 1u]);
        if (rot) {
            v = rotate(v, cos_sin(ang[lid]));
        }
        let slot = pos % p.kv_capacity;
        let dst = (select(1u, 0u, is_k) * p.kv_capacity + slot) * (p.kv_hd / 2u) + e / 2u;
//#if KV16
        cache[dst] = pack2x16float(v);
//#else
        cache[dst] = v;
//#endif
    }
//#endif
}
