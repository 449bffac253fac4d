// common/table.wgsl: one element of an embedding-table piece, dequantized exactly in f32 (the
// layout of crate/weights/table.rs, described in embed.wgsl). The including file declares
// `table: array<u32>` and the constant ALIGN_WORDS. Shared by embed.wgsl and sampling.wgsl
// (the sampler's fused embedding gather).

// f16 bits -> f32, exact (subnormals are m·2^-24, normal in f32).
fn f16_bits_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        return bitcast<f32>(bitcast<u32>(f32(m) * 5.9604644775390625e-8) | sign);
    }
    if (e == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// Signed byte (two's complement) as f32.
fn i8_value(c: u32) -> f32 {
    return f32(bitcast<i32>(c << 24u) >> 24u);
}

// Element i (piece-local flat index) of the piece `st` (descriptor as embed.wgsl's streams) of
// rows of `dim` elements.
fn table_element(st: vec4<u32>, i: u32, dim: u32) -> f32 {
    let kind = (st.x >> 24u) & 15u;
    let base = st.w;
    if (kind == 0u) {
        return bitcast<f32>(table[base + i]);
    }
    if (kind == 1u) {
        let u = table[base + (i >> 1u)];
        return bitcast<f32>(select(u << 16u, u & 0xffff0000u, (i & 1u) != 0u));
    }
    let bits = select(8u, 4u, kind == 3u);
    let per = 32u / bits;
    let code = (table[base + i / per] >> ((i % per) * bits)) & ((1u << bits) - 1u);
    let data_words = (st.z * dim + per - 1u) / per;
    let sbase = base + ((data_words + ALIGN_WORDS - 1u) & ~(ALIGN_WORDS - 1u));
    if (kind == 2u) {
        let f = i >> 5u;
        let h = (table[sbase + (f >> 1u)] >> ((f & 1u) * 16u)) & 0xffffu;
        return f16_bits_to_f32(h) * i8_value(code);
    }
    let group = 32u << ((st.x >> 28u) & 3u);
    let sb = table[sbase + i / group];
    return bitcast<f32>(sb << 16u) * f32(code) + bitcast<f32>(sb & 0xffff0000u);
}
