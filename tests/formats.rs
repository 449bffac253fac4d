//! Checkpoint formats (issue 7): each reader on hand-made small files (odd shapes, every dtype),
//! the name maps, detection from contents, missing/unused tensor errors, the model directory
//! resolver, and the fixture LM (`tests/fixtures/lm/formats`, made by `make_formats.py` from one
//! tiny random LM) in every published format: the same canonical tensors, with dequantized
//! values equal to what the Python reference computed from each file and within each format's
//! quantization error of the PyTorch weights.
#![cfg(not(target_arch = "wasm32"))]

mod gguf_bytes;
use gguf_bytes::Gguf;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use parle::weights::names::{to_canonical, Naming, Transform};
use parle::weights::{
    companion, config_file_name, embedding_table, inspect, linear_weight, write_gguf, Checkpoint,
    ContainerKind, DType, GgufFile, GgufHeader, GgufValue, LinearTensor, MemoryGguf, ModelFiles,
    RandomWeights, SafetensorsFile, TensorSource, UsageTracker, WeightsError,
};
use parle::weights::{quant, quant_format, HostLinear, WeightFormat};
use safetensors::tensor::{serialize, Dtype as StDtype, TensorView};

// ---------------------------------------------------------------------------------------------
// Helpers

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lm/formats")
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("parle-formats-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn st_dtype(d: DType) -> StDtype {
    match d {
        DType::F32 => StDtype::F32,
        DType::F16 => StDtype::F16,
        DType::BF16 => StDtype::BF16,
        DType::I64 => StDtype::I64,
        DType::I32 => StDtype::I32,
        DType::U32 => StDtype::U32,
        DType::U8 => StDtype::U8,
        DType::I8 => StDtype::I8,
        DType::Bool => StDtype::BOOL,
        DType::Q8_0 => panic!("no Q8_0 in safetensors"),
    }
}

/// A safetensors file of `(name, dtype, shape, bytes)`.
fn safetensors_bytes(tensors: &[(&str, DType, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.to_string(),
                TensorView::new(st_dtype(*d), s.clone(), b).unwrap(),
            )
        })
        .collect();
    serialize(views, None).unwrap()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| bf16::from_f32(x).to_bits().to_le_bytes())
        .collect()
}

fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| f16::from_f32(x).to_bits().to_le_bytes())
        .collect()
}

/// Deterministic values in about ±1 with a varied magnitude per row.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut h = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            let u = (h >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            u * (1.0 + (i % 7) as f32 * 0.3)
        })
        .collect()
}

fn mlx_parts(w: &[f32], k: usize, bits: u32, group: u32) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let m = quant::mlx_quantize(w, k as u32, bits, group).unwrap();
    (
        m.weight.iter().flat_map(|x| x.to_le_bytes()).collect(),
        m.scales.iter().flat_map(|x| x.to_le_bytes()).collect(),
        m.biases.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

fn err_text<T: std::fmt::Debug>(r: Result<T, WeightsError>) -> String {
    r.unwrap_err().to_string()
}

// ---------------------------------------------------------------------------------------------
// GGUF reader on hand-made files

/// Tensors of every dtype the GGUF reader takes, in odd shapes (1-D to 4-D, a 1-wide dim,
/// Q8_0 with one and with several blocks per row).
fn gguf_tensors() -> Vec<(String, DType, Vec<usize>, Vec<u8>)> {
    let q8 = |rows: usize, k: usize, seed| {
        quant::q8_0_quantize(&values(rows * k, seed), k as u32).unwrap()
    };
    vec![
        (
            "a.f32".into(),
            DType::F32,
            vec![3],
            f32_bytes(&values(3, 1)),
        ),
        (
            "b.f16".into(),
            DType::F16,
            vec![2, 3],
            f16_bytes(&values(6, 2)),
        ),
        (
            "c.bf16".into(),
            DType::BF16,
            vec![1, 5, 7],
            bf16_bytes(&values(35, 3)),
        ),
        ("d.q8".into(), DType::Q8_0, vec![3, 64], q8(3, 64, 4)),
        ("e.q8".into(), DType::Q8_0, vec![1, 32], q8(1, 32, 5)),
        ("f.i8".into(), DType::I8, vec![5], vec![1, 255, 3, 128, 0]),
        (
            "g.i32".into(),
            DType::I32,
            vec![2, 2],
            [1i32, -2, 3, i32::MIN]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        (
            "h.i64".into(),
            DType::I64,
            vec![1],
            (-5i64).to_le_bytes().to_vec(),
        ),
        (
            "i.4d".into(),
            DType::F32,
            vec![2, 1, 3, 2],
            f32_bytes(&values(12, 6)),
        ),
        ("j.empty".into(), DType::F32, vec![0, 4], Vec::new()),
    ]
}

fn gguf_file(alignment: u64, metadata: &[(&str, GgufValue)]) -> Vec<u8> {
    let t = gguf_tensors();
    let refs: Vec<(&str, DType, &[usize], &[u8])> = t
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice()))
        .collect();
    write_gguf(metadata, &refs, alignment)
}

fn all_scalars() -> Vec<(&'static str, GgufValue)> {
    vec![
        ("k.u8", GgufValue::U8(200)),
        ("k.i8", GgufValue::I8(-3)),
        ("k.u16", GgufValue::U16(65535)),
        ("k.i16", GgufValue::I16(-300)),
        ("k.u32", GgufValue::U32(7)),
        ("k.i32", GgufValue::I32(-7)),
        ("k.f32", GgufValue::F32(0.5)),
        ("k.bool", GgufValue::Bool(true)),
        ("k.str", GgufValue::String("héllo".into())),
        ("k.u64", GgufValue::U64(u64::MAX)),
        ("k.i64", GgufValue::I64(i64::MIN)),
        ("k.f64", GgufValue::F64(-2.25)),
    ]
}

fn check_gguf_tensors(src: &dyn TensorSource) {
    for (name, dtype, shape, bytes) in gguf_tensors() {
        let t = src.raw(&name).unwrap();
        assert_eq!(
            (t.dtype, &t.shape, &t.bytes),
            (dtype, &shape, &bytes),
            "{name}"
        );
        assert_eq!(src.info(&name), Some((dtype, shape.clone())));
        if dtype.is_float() || dtype == DType::Q8_0 {
            let v = src.f32(&name, &shape).unwrap();
            let want = match dtype {
                DType::Q8_0 => quant::q8_0_dequantize(&bytes),
                _ => parle::weights::to_f32(dtype, &bytes).unwrap(),
            };
            assert_eq!(v, want, "{name}");
        }
    }
}

#[test]
fn gguf_reads_every_dtype_odd_shapes_and_metadata() {
    for alignment in [32, 1, 8, 64, 4096] {
        let bytes = gguf_file(alignment, &all_scalars());
        let m = MemoryGguf::new("mem.gguf", bytes.clone()).unwrap();
        assert_eq!(m.header.version, 3);
        assert_eq!(m.header.alignment, alignment);
        assert_eq!(m.header.data_start % alignment, 0);
        for (k, v) in all_scalars() {
            assert_eq!(m.header.metadata.get(k), Some(&v), "{k}");
        }
        // Identity names through a checkpoint (PyTorch naming: unknown names kept as is).
        let ck = Checkpoint::from_bytes("mem.gguf", bytes.clone(), None).unwrap();
        assert_eq!(ck.container().kind(), ContainerKind::Gguf);
        check_gguf_tensors(&ck);
        // The same file on disk, read range by range.
        let d = tmp_dir(&format!("gguf{alignment}"));
        let p = d.join("x.gguf");
        std::fs::write(&p, &bytes).unwrap();
        let f = GgufFile::open(&p).unwrap();
        assert_eq!(f.header.tensors, m.header.tensors);
        check_gguf_tensors(&Checkpoint::open(&p, None).unwrap());
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn gguf_skips_arrays_and_reads_version_2() {
    let r = Gguf::arrays_v2(1);
    let mut bytes = r.0;
    let blk = quant::q8_0_quantize(&values(32, 9), 32).unwrap();
    bytes.extend(&blk);
    let m = MemoryGguf::new("v2.gguf", bytes).unwrap();
    assert_eq!(m.header.version, 2);
    assert_eq!(
        m.header.metadata["tokenizer.tokens"],
        GgufValue::Array {
            elem_type: 8,
            len: 3
        }
    );
    assert_eq!(
        m.header.metadata["nested"],
        GgufValue::Array {
            elem_type: 9,
            len: 2
        }
    );
    let e = &m.header.tensors["w"];
    assert_eq!((e.dtype, e.shape.clone()), (DType::Q8_0, vec![1, 32]));
    let ck = Checkpoint::new(Box::new(m), None).unwrap();
    assert_eq!(ck.raw("w").unwrap().bytes, blk);
}

#[test]
fn gguf_damaged_headers_are_errors_with_messages() {
    let good = gguf_file(32, &[("k", GgufValue::U32(1))]);
    let tensor_info = |ty: u32, dims: &[u64], offset: u64| {
        let mut r = Gguf::new(3, 1, 0).str("t").u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ty).u64(offset).pad(32).bytes(&[0; 64]).0
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "needs 4 bytes"),
        ("magic", b"GGUG\x03\0\0\0".to_vec(), "not \"GGUF\""),
        ("v1", Gguf::new(1, 0, 0).0, "version 1"),
        (
            "big-endian",
            Gguf::new(3u32.swap_bytes(), 0, 0).0,
            "big-endian",
        ),
        ("v9", Gguf::new(9, 0, 0).0, "unknown GGUF version 9"),
        (
            "kv count",
            Gguf::new(3, 0, u64::MAX).0,
            "metadata entries do not fit",
        ),
        (
            "tensor count",
            Gguf::new(3, 1 << 40, 0).0,
            "tensors do not fit",
        ),
        (
            "long key",
            Gguf::new(3, 0, 1).u64(1 << 20).bytes(&[0; 64]).0,
            "at most 65535",
        ),
        (
            "key past end",
            Gguf::new(3, 0, 1).u64(100).bytes(&[b'a'; 20]).0,
            "only 20 remain",
        ),
        (
            "bad value type",
            Gguf::new(3, 0, 1).str("k").u32(13).bytes(&[0; 8]).0,
            "unknown value type 13",
        ),
        (
            "bool 2",
            Gguf::new(3, 0, 1).str("k").u32(7).bytes(&[2]).0,
            "bool value 2",
        ),
        (
            "array too long",
            Gguf::new(3, 0, 1).str("k").u32(9).u32(10).u64(1 << 60).0,
            "needs",
        ),
        (
            "strings too many",
            Gguf::new(3, 0, 1).str("k").u32(9).u32(8).u64(1 << 40).0,
            "strings does not fit",
        ),
        (
            "alignment",
            Gguf::new(3, 0, 1).str("general.alignment").u32(4).u32(3).0,
            "power of two",
        ),
        (
            "not utf8",
            Gguf::new(3, 0, 1)
                .u64(2)
                .bytes(&[0xff, 0xfe])
                .u32(0)
                .bytes(&[0])
                .0,
            "not UTF-8",
        ),
        (
            "duplicate key",
            {
                let mut r = Gguf::new(3, 0, 2);
                for _ in 0..2 {
                    r = r.str("k").u32(0).bytes(&[1]);
                }
                r.0
            },
            "appears twice",
        ),
        (
            "5 dims",
            tensor_info(0, &[1, 1, 1, 1, 1], 0),
            "5 dimensions",
        ),
        ("0 dims", tensor_info(0, &[], 0), "0 dimensions"),
        ("Q4_K", tensor_info(12, &[256], 0), "ggml type 12 (Q4_K)"),
        (
            "Q8_0 row",
            tensor_info(8, &[31], 0),
            "not whole Q8_0 blocks",
        ),
        (
            "unaligned",
            tensor_info(0, &[1], 4),
            "not a multiple of the alignment",
        ),
        ("past end", tensor_info(0, &[17], 0), "truncated"),
        (
            "huge dims",
            tensor_info(0, &[u64::MAX, u64::MAX], 0),
            "too large",
        ),
        (
            "offset overflow",
            tensor_info(0, &[1], u64::MAX - 31),
            "offset",
        ),
        (
            "truncated file",
            good[..good.len() - 1].to_vec(),
            "truncated",
        ),
    ];
    for (what, bytes, want) in cases {
        let e = match MemoryGguf::new("bad.gguf", bytes) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("bad.gguf"), "{what}: {e}");
        assert!(e.contains(want), "{what}: {e}");
    }
    // Duplicate tensor names and overlapping tensors.
    let dup = write_gguf(
        &[],
        &[
            ("t", DType::F32, &[1], &[0; 4]),
            ("t", DType::F32, &[1], &[0; 4]),
        ],
        32,
    );
    assert!(err_text(MemoryGguf::new("d.gguf", dup)).contains("appears twice"));
    let r = Gguf::new(3, 2, 0)
        .str("a")
        .u32(1)
        .u64(8)
        .u32(0)
        .u64(0)
        .str("b")
        .u32(1)
        .u64(1)
        .u32(0)
        .u64(0)
        .pad(32)
        .bytes(&[0; 32]);
    assert!(err_text(MemoryGguf::new("o.gguf", r.0)).contains("overlap"));
}

// ---------------------------------------------------------------------------------------------
// safetensors readers

#[test]
fn safetensors_raw_every_dtype_and_odd_shapes() {
    let tensors: Vec<(&str, DType, Vec<usize>, Vec<u8>)> = vec![
        ("f32", DType::F32, vec![3, 5, 7], f32_bytes(&values(105, 1))),
        ("f16", DType::F16, vec![1], f16_bytes(&[0.25])),
        (
            "bf16",
            DType::BF16,
            vec![1, 1, 9],
            bf16_bytes(&values(9, 2)),
        ),
        (
            "i64",
            DType::I64,
            vec![2],
            [i64::MAX, -1]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        ("i32", DType::I32, vec![], (-9i32).to_le_bytes().to_vec()),
        (
            "u32",
            DType::U32,
            vec![2, 1],
            [1u32, u32::MAX]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        ("u8", DType::U8, vec![0], vec![]),
        ("i8", DType::I8, vec![3], vec![0x80, 0x7f, 1]),
        ("bool", DType::Bool, vec![2], vec![0, 1]),
    ];
    let bytes = safetensors_bytes(&tensors);
    let d = tmp_dir("st");
    let p = d.join("x.safetensors");
    std::fs::write(&p, &bytes).unwrap();
    let file = SafetensorsFile::open(&p).unwrap();
    let ck = Checkpoint::from_bytes("x.safetensors", bytes, None).unwrap();
    assert_eq!(ck.container().kind(), ContainerKind::Safetensors);
    for src in [&file as &dyn TensorSource, &ck] {
        let mut names = src.names();
        names.sort();
        let mut want: Vec<String> = tensors.iter().map(|t| t.0.to_string()).collect();
        want.sort();
        assert_eq!(names, want);
        for (n, dt, shape, b) in &tensors {
            let t = src.raw(n).unwrap();
            assert_eq!((t.dtype, &t.shape, &t.bytes), (*dt, shape, b), "{n}");
        }
        assert_eq!(src.f32("f16", &[1]).unwrap(), vec![0.25]);
        let e = err_text(src.f32("f32", &[3, 5, 8]));
        assert!(
            e.contains("'f32' has shape [3, 5, 7], expected [3, 5, 8]"),
            "{e}"
        );
        let e = err_text(src.f32("nope", &[4, 2]));
        assert!(
            e.contains("'nope' is missing (expected shape [4, 2])"),
            "{e}"
        );
        assert!(e.contains("x.safetensors"), "{e}");
        let e = err_text(src.f32("i8", &[3]));
        assert!(e.contains("dtype I8"), "{e}");
    }
    std::fs::remove_dir_all(d).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Name maps and detection

#[test]
fn detection_uses_contents_not_file_names() {
    assert_eq!(
        Naming::detect(["emb.0.weight", "text_emb.weight"]),
        Naming::PyTorch
    );
    assert_eq!(Naming::detect(["audio_embs.0.weight"]), Naming::Mlx);
    assert_eq!(
        Naming::detect(["depformer.slices.3.emb.weight"]),
        Naming::Mlx
    );
    // LayerNorm models have `out_norm.weight` in PyTorch naming too.
    assert_eq!(
        Naming::detect(["out_norm.weight", "out_norm.bias", "emb.0.weight"]),
        Naming::PyTorch
    );
    assert_eq!(
        Naming::detect(["emb.0.weight", "depformer.0.linear_in.weight"]),
        Naming::Candle
    );
    assert_eq!(
        Naming::detect(["depformer.layers.0.norm1.alpha"]),
        Naming::PyTorch
    );
    // A GGUF file under a safetensors name (and the reverse) is read as what it is.
    let d = tmp_dir("detect");
    let g = d.join("model.safetensors");
    std::fs::write(&g, gguf_file(32, &[])).unwrap();
    assert_eq!(
        Checkpoint::open(&g, None).unwrap().container().kind(),
        ContainerKind::Gguf
    );
    let s = d.join("model.q8.gguf");
    std::fs::write(
        &s,
        safetensors_bytes(&[("a", DType::F32, vec![1], vec![0; 4])]),
    )
    .unwrap();
    assert_eq!(
        Checkpoint::open(&s, None).unwrap().container().kind(),
        ContainerKind::Safetensors
    );
    std::fs::write(&s, b"neither\0\0\0\0\0\0\0\0").unwrap();
    let e = err_text(Checkpoint::open(&s, None));
    assert!(e.contains("not a safetensors file"), "{e}");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn name_maps_of_each_naming() {
    let c = |n: Naming, name: &str, shape: &[usize], sched: Option<&[usize]>| {
        to_canonical(n, name, shape, sched)
    };
    let id = |s: &str| vec![(s.to_string(), Transform::Identity)];
    // PyTorch: stacked depformer attention -> row blocks; temporal split form -> legacy names.
    let v = c(
        Naming::PyTorch,
        "depformer.layers.1.self_attn.in_proj_weight",
        &[2 * 3 * 4, 4],
        None,
    );
    assert_eq!(
        v,
        vec![
            (
                "depformer.layers.1.self_attn.in_projs.0.weight".into(),
                Transform::RowBlock { index: 0, count: 2 }
            ),
            (
                "depformer.layers.1.self_attn.in_projs.1.weight".into(),
                Transform::RowBlock { index: 1, count: 2 }
            ),
        ]
    );
    assert_eq!(
        c(
            Naming::PyTorch,
            "depformer.layers.0.self_attn.out_proj.weight",
            &[12, 4],
            None
        )
        .len(),
        3
    );
    assert_eq!(
        c(
            Naming::PyTorch,
            "depformer.layers.0.self_attn.in_projs.2.weight",
            &[12, 4],
            None
        ),
        id("depformer.layers.0.self_attn.in_projs.2.weight")
    );
    assert_eq!(
        c(
            Naming::PyTorch,
            "transformer.layers.3.self_attn.in_projs.0.weight",
            &[12, 4],
            None
        ),
        id("transformer.layers.3.self_attn.in_proj_weight")
    );
    assert_eq!(
        c(
            Naming::PyTorch,
            "transformer.layers.3.self_attn.out_projs.0.weight",
            &[4, 4],
            None
        ),
        id("transformer.layers.3.self_attn.out_proj.weight")
    );
    // MLX.
    let sched: &[usize] = &[0, 1, 1];
    for (name, shape, want, t) in [
        (
            "out_norm.weight",
            vec![8],
            "out_norm.alpha",
            Transform::Reshape(vec![1, 1, 8]),
        ),
        (
            "audio_embs.5.scales",
            vec![3, 1],
            "emb.5.scales",
            Transform::Identity,
        ),
        (
            "transformer.layers.0.norm2.weight",
            vec![8],
            "transformer.layers.0.norm2.alpha",
            Transform::Reshape(vec![1, 1, 8]),
        ),
        (
            "transformer.layers.0.self_attn.in_proj.weight",
            vec![24, 1],
            "transformer.layers.0.self_attn.in_proj_weight",
            Transform::Identity,
        ),
        (
            "transformer.layers.0.self_attn.in_proj.biases",
            vec![24, 1],
            "transformer.layers.0.self_attn.in_proj_biases",
            Transform::Identity,
        ),
        (
            "transformer.layers.0.gating.linear_in.weight",
            vec![4, 1],
            "transformer.layers.0.gating.linear_in.weight",
            Transform::Identity,
        ),
        (
            "depformer.slices.0.emb.weight",
            vec![4, 1],
            "depformer_text_emb.weight",
            Transform::Identity,
        ),
        (
            "depformer.slices.0.emb.low_rank.weight",
            vec![4, 1],
            "depformer_text_emb.low_rank.weight",
            Transform::Identity,
        ),
        (
            "depformer.slices.2.emb.scales",
            vec![4, 1],
            "depformer_emb.1.scales",
            Transform::Identity,
        ),
        (
            "depformer.slices.2.linear_in.weight",
            vec![4, 1],
            "depformer_in.1.weight",
            Transform::Identity,
        ),
        (
            "depformer.slices.2.linear_out.weight",
            vec![4, 1],
            "linears.2.weight",
            Transform::Identity,
        ),
        (
            "depformer.slices.2.transformer.layers.1.self_attn.in_proj.scales",
            vec![4, 1],
            "depformer.layers.1.self_attn.in_projs.1.scales",
            Transform::Identity,
        ),
        (
            "depformer.slices.2.transformer.layers.1.self_attn.out_proj.weight",
            vec![4, 1],
            "depformer.layers.1.self_attn.out_projs.1.weight",
            Transform::Identity,
        ),
        (
            "depformer.slices.2.transformer.layers.1.gating.linear_out.biases",
            vec![4, 1],
            "depformer.layers.1.gating.1.linear_out.biases",
            Transform::Identity,
        ),
        (
            "depformer.slices.2.transformer.layers.1.norm1.weight",
            vec![8],
            "depformer.layers.1.norm1.alpha",
            Transform::Reshape(vec![1, 1, 8]),
        ),
        // A slice beyond the schedule keeps its name (and will be reported unused).
        (
            "depformer.slices.3.linear_in.weight",
            vec![4, 1],
            "depformer.slices.3.linear_in.weight",
            Transform::Identity,
        ),
    ] {
        assert_eq!(
            c(Naming::Mlx, name, &shape, Some(sched)),
            vec![(want.to_string(), t)],
            "{name}"
        );
    }
    // candle.
    for (name, want) in [
        ("depformer.1.linear_in.weight", "depformer_in.1.weight"),
        ("depformer.0.emb.weight", "depformer_text_emb.weight"),
        ("depformer.7.emb.weight", "depformer_emb.6.weight"),
        ("depformer.7.linear_out.weight", "linears.7.weight"),
        (
            "depformer.4.transformer.layers.0.self_attn.in_proj_weight",
            "depformer.layers.0.self_attn.in_projs.4.weight",
        ),
        (
            "depformer.4.transformer.layers.0.self_attn.out_proj.weight",
            "depformer.layers.0.self_attn.out_projs.4.weight",
        ),
        (
            "depformer.4.transformer.layers.0.norm2.alpha",
            "depformer.layers.0.norm2.alpha",
        ),
        (
            "depformer.4.transformer.layers.0.gating.linear_in.weight",
            "depformer.layers.0.gating.4.linear_in.weight",
        ),
        (
            "transformer.layers.0.norm1.alpha",
            "transformer.layers.0.norm1.alpha",
        ),
        ("emb.3.weight", "emb.3.weight"),
    ] {
        assert_eq!(
            c(Naming::Candle, name, &[1, 1, 8], None),
            id(want),
            "{name}"
        );
    }
}

/// A tiny depformer-only checkpoint in one naming: 3 slices with schedule [0, 1, 1], one layer,
/// dim 4 (f32), so every map and copy can be checked by value.
fn tiny_depformer(naming: Naming) -> Vec<(String, DType, Vec<usize>, Vec<u8>)> {
    let sched = [0usize, 1, 1];
    let v = |n: usize, s: u64| f32_bytes(&values(n, s));
    let mut t: Vec<(String, DType, Vec<usize>, Vec<u8>)> = Vec::new();
    let norm = v(4, 100);
    match naming {
        Naming::PyTorch => {
            for j in 0..2 {
                t.push((
                    format!("depformer_in.{j}.weight"),
                    DType::F32,
                    vec![4, 4],
                    v(16, j as u64),
                ));
            }
            let mut qkv = Vec::new();
            for j in 0..2 {
                qkv.extend(v(48, 10 + j));
            }
            t.push((
                "depformer.layers.0.self_attn.in_proj_weight".into(),
                DType::F32,
                vec![24, 4],
                qkv,
            ));
            t.push((
                "depformer.layers.0.norm1.alpha".into(),
                DType::F32,
                vec![1, 1, 4],
                norm,
            ));
        }
        Naming::Mlx | Naming::Candle => {
            let sp = |k: usize| match naming {
                Naming::Mlx => format!("depformer.slices.{k}"),
                _ => format!("depformer.{k}"),
            };
            for (k, &j) in sched.iter().enumerate() {
                t.push((
                    format!("{}.linear_in.weight", sp(k)),
                    DType::F32,
                    vec![4, 4],
                    v(16, j as u64),
                ));
                let attn = if naming == Naming::Mlx {
                    "in_proj.weight"
                } else {
                    "in_proj_weight"
                };
                t.push((
                    format!("{}.transformer.layers.0.self_attn.{attn}", sp(k)),
                    DType::F32,
                    vec![12, 4],
                    v(48, 10 + j as u64),
                ));
                let (nn, shape) = if naming == Naming::Mlx {
                    ("norm1.weight", vec![4])
                } else {
                    ("norm1.alpha", vec![1, 1, 4])
                };
                t.push((
                    format!("{}.transformer.layers.0.{nn}", sp(k)),
                    DType::F32,
                    shape,
                    norm.clone(),
                ));
            }
        }
    }
    t
}

/// Canonical name → (shape, f32 values).
type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

#[test]
fn every_naming_gives_the_same_canonical_tensors() {
    let sched: &[usize] = &[0, 1, 1];
    let mut reference: Option<Tensors> = None;
    for naming in [Naming::PyTorch, Naming::Mlx, Naming::Candle] {
        let t = tiny_depformer(naming);
        let refs: Vec<(&str, DType, Vec<usize>, Vec<u8>)> = t
            .iter()
            .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
            .collect();
        let sched = (naming != Naming::PyTorch).then_some(sched);
        let st = Checkpoint::from_bytes("t.safetensors", safetensors_bytes(&refs), sched).unwrap();
        let grefs: Vec<(&str, DType, &[usize], &[u8])> = t
            .iter()
            .map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice()))
            .collect();
        let gg = Checkpoint::from_bytes("t.gguf", write_gguf(&[], &grefs, 32), sched).unwrap();
        for ck in [st, gg] {
            assert_eq!(ck.naming(), naming);
            let got: Tensors = ck
                .names()
                .into_iter()
                .map(|n| {
                    let (_, s) = ck.info(&n).unwrap();
                    let v = ck.f32(&n, &s).unwrap();
                    (n, (s, v))
                })
                .collect();
            let want: BTreeSet<&str> = [
                "depformer_in.0.weight",
                "depformer_in.1.weight",
                "depformer.layers.0.self_attn.in_projs.0.weight",
                "depformer.layers.0.self_attn.in_projs.1.weight",
                "depformer.layers.0.norm1.alpha",
            ]
            .into();
            assert_eq!(
                got.keys().map(|s| s.as_str()).collect::<BTreeSet<_>>(),
                want,
                "{naming:?}"
            );
            assert_eq!(got["depformer.layers.0.norm1.alpha"].0, vec![1, 1, 4]);
            assert_eq!(
                got["depformer.layers.0.self_attn.in_projs.1.weight"].0,
                vec![12, 4]
            );
            match &reference {
                None => reference = Some(got),
                Some(r) => assert_eq!(&got, r, "{naming:?}"),
            }
            // Copies (norms of every slice, slices 1 and 2 sharing weight set 1) count as used.
            let u = UsageTracker::new(&ck);
            for n in ck.names() {
                let (_, s) = ck.info(&n).unwrap();
                u.f32(&n, &s).unwrap();
            }
            u.finish().unwrap();
            if naming == Naming::Mlx {
                assert_eq!(
                    ck.stored("depformer.layers.0.norm1.alpha").unwrap(),
                    vec![
                        "depformer.slices.0.transformer.layers.0.norm1.weight",
                        "depformer.slices.1.transformer.layers.0.norm1.weight",
                        "depformer.slices.2.transformer.layers.0.norm1.weight"
                    ]
                );
            }
        }
    }
}

#[test]
fn copies_that_disagree_are_an_error() {
    let t = vec![
        (
            "depformer.0.transformer.layers.0.norm1.alpha",
            DType::F32,
            vec![1, 1, 4],
            vec![0; 16],
        ),
        (
            "depformer.1.transformer.layers.0.norm1.alpha",
            DType::F32,
            vec![1, 1, 5],
            vec![0; 20],
        ),
    ];
    let e = err_text(Checkpoint::from_bytes(
        "c.safetensors",
        safetensors_bytes(&t),
        None,
    ));
    assert!(
        e.contains("both stand for 'depformer.layers.0.norm1.alpha'"),
        "{e}"
    );
}

#[test]
fn missing_and_unused_tensors_name_file_tensor_and_shape() {
    let t = tiny_depformer(Naming::Mlx);
    let refs: Vec<(&str, DType, Vec<usize>, Vec<u8>)> = t
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
        .collect();
    let ck =
        Checkpoint::from_bytes("model.q4.safetensors", safetensors_bytes(&refs), None).unwrap();
    // Without the schedule slice 2 is weight set 2.
    let u = UsageTracker::new(&ck);
    let e = linear_weight(&u, "depformer_in.3.weight", 4, 4)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("model.q4.safetensors:"), "{e}");
    assert!(
        e.contains("'depformer_in.3.weight (MLX name: depformer.slices.3.linear_in.weight)' is missing (expected shape [4, 4])"),
        "{e}"
    );
    let e = err_text(u.f32("depformer.layers.0.self_attn.in_projs.7.weight", &[12, 4]));
    assert!(
        e.contains("depformer.slices.7.transformer.layers.0.self_attn.in_proj.weight"),
        "{e}"
    );
    assert!(e.contains("expected shape [12, 4]"), "{e}");
    let e = err_text(linear_weight(&u, "depformer_in.0.weight", 4, 8));
    assert!(
        e.contains("'depformer_in.0.weight' has shape [4, 4], expected [4, 8]"),
        "{e}"
    );
    u.f32("depformer_in.0.weight", &[4, 4]).unwrap();
    let e = u.finish().unwrap_err().to_string();
    assert!(e.starts_with("model.q4.safetensors: 6 tensor(s)"), "{e}");
    assert!(
        e.contains("'depformer.layers.0.self_attn.in_projs.2.weight (stored as depformer.slices.2.transformer.layers.0.self_attn.in_proj.weight)'"),
        "{e}"
    );
    assert!(!e.contains("'depformer_in.0.weight'"), "{e}");
    // PyTorch: a missing weight set names the stacked tensor it would come from.
    let t = tiny_depformer(Naming::PyTorch);
    let refs: Vec<(&str, DType, Vec<usize>, Vec<u8>)> = t
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
        .collect();
    let ck = Checkpoint::from_bytes("model.safetensors", safetensors_bytes(&refs), None).unwrap();
    let e = err_text(ck.f32("depformer.layers.0.self_attn.in_projs.5.weight", &[12, 4]));
    assert!(
        e.contains("row block 5 of depformer.layers.0.self_attn.in_proj_weight"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// linear_weight: every published layout

#[test]
fn linear_weight_every_layout() {
    let (rows, k) = (3usize, 64usize);
    let w = values(rows * k, 42);
    let (c4, s4, b4) = mlx_parts(&w, k, 4, 32);
    let (c8, s8, b8) = mlx_parts(&w, k, 8, 64);
    let (c2, s2, b2) = mlx_parts_2bit(&w, k);
    let q8 = quant::q8_0_quantize(&w, k as u32).unwrap();
    let mut t: Vec<(&str, DType, Vec<usize>, Vec<u8>)> = vec![
        ("f32.weight", DType::F32, vec![rows, k], f32_bytes(&w)),
        ("f16.weight", DType::F16, vec![rows, k], f16_bytes(&w)),
        ("bf16.weight", DType::BF16, vec![rows, k], bf16_bytes(&w)),
        ("q4.weight", DType::U32, vec![rows, k / 8], c4.clone()),
        ("q4.scales", DType::BF16, vec![rows, k / 32], s4.clone()),
        ("q4.biases", DType::BF16, vec![rows, k / 32], b4.clone()),
        ("q8.weight", DType::U32, vec![rows, k / 4], c8.clone()),
        ("q8.scales", DType::BF16, vec![rows, 1], s8.clone()),
        ("q8.biases", DType::BF16, vec![rows, 1], b8.clone()),
        ("q2.weight", DType::U32, vec![rows, k / 16], c2),
        ("q2.scales", DType::BF16, vec![rows, k / 64], s2),
        ("q2.biases", DType::BF16, vec![rows, k / 64], b2),
        ("nocomp.weight", DType::U32, vec![rows, k / 8], c4.clone()),
        ("f32comp.weight", DType::U32, vec![rows, k / 8], c4.clone()),
        (
            "f32comp.scales",
            DType::F32,
            vec![rows, k / 32],
            vec![0; rows * 2 * 4],
        ),
        (
            "f32comp.biases",
            DType::F32,
            vec![rows, k / 32],
            vec![0; rows * 2 * 4],
        ),
        (
            "int.weight",
            DType::I32,
            vec![rows, k],
            vec![0; rows * k * 4],
        ),
    ];
    t.sort_by_key(|x| x.0);
    let ck = Checkpoint::from_bytes("lw.safetensors", safetensors_bytes(&t), None).unwrap();
    let check = |name: &str, want: LinearTensor, format: WeightFormat| {
        let got = linear_weight(&ck, name, rows, k).unwrap();
        assert_eq!(got, want, "{name}");
        assert_eq!(got.format(), format);
        // The GPU layout dequantizes to the same values.
        let h = got.clone().into_host(rows, k).unwrap();
        assert_eq!(h.format, format);
        assert_eq!(h.dequantize(), got.to_f32(), "{name}");
        // f32() dequantizes the same way.
        assert_eq!(ck.f32(name, &[rows, k]).unwrap(), got.to_f32(), "{name}");
    };
    check(
        "f32.weight",
        LinearTensor::F32(w.clone()),
        WeightFormat::F32,
    );
    let w16: Vec<f32> = w.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
    check("f16.weight", LinearTensor::F32(w16), WeightFormat::F32);
    check(
        "bf16.weight",
        LinearTensor::Bf16(bf16_bytes(&w)),
        WeightFormat::Bf16,
    );
    let mlx = |bits, group, codes: &Vec<u8>, scales: &Vec<u8>, biases: &Vec<u8>| {
        LinearTensor::MlxAffine {
            bits,
            group,
            codes: codes.clone(),
            scales: scales.clone(),
            biases: biases.clone(),
        }
    };
    check("q4.weight", mlx(4, 32, &c4, &s4, &b4), WeightFormat::MLX_Q4);
    check("q8.weight", mlx(8, 64, &c8, &s8, &b8), WeightFormat::MLX_Q8);
    // Q8_0 from a GGUF.
    let g = write_gguf(&[], &[("x.weight", DType::Q8_0, &[rows, k], &q8)], 32);
    let gk = Checkpoint::from_bytes("lw.gguf", g, None).unwrap();
    let got = linear_weight(&gk, "x.weight", rows, k).unwrap();
    assert_eq!(got, LinearTensor::Q8_0(q8.clone()));
    assert_eq!(
        got.clone().into_host(rows, k).unwrap().dequantize(),
        got.to_f32()
    );
    assert_eq!(got.to_f32(), quant::q8_0_dequantize(&q8));
    // Dequantized values match MLX's formula (bf16 scales and biases, w = s·q + β).
    let deq4 = linear_weight(&ck, "q4.weight", rows, k).unwrap().to_f32();
    let step = |g: &[f32]| {
        (g.iter().cloned().fold(f32::MIN, f32::max) - g.iter().cloned().fold(f32::MAX, f32::min))
            / 15.0
    };
    for (gi, (a, b)) in w.chunks(32).zip(deq4.chunks(32)).enumerate() {
        let tol = step(a) + 0.01 * a.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "group {gi}: {x} vs {y} (tol {tol})");
        }
    }
    // Errors.
    let e = err_text(linear_weight(&ck, "q2.weight", rows, k));
    assert!(
        e.contains("'q2.weight' is MLX 2-bit with group 64; parle's kernels take 4 or 8 bits"),
        "{e}"
    );
    // …but a 2-bit table can still be gathered (dequantized at load).
    let t2 = embedding_table(&ck, "q2.weight", rows, k).unwrap();
    assert_eq!(t2.to_f32().len(), rows * k);
    let e = err_text(linear_weight(&ck, "nocomp.weight", rows, k));
    assert!(e.contains("companion 'nocomp.scales' is missing"), "{e}");
    let e = err_text(linear_weight(&ck, "f32comp.weight", rows, k));
    assert!(
        e.contains("'f32comp.scales' has dtype F32, expected one of BF16"),
        "{e}"
    );
    let e = err_text(linear_weight(&ck, "q4.weight", rows, 96));
    assert!(e.contains("not 2, 4 or 8 bits for 96 inputs"), "{e}");
    let e = err_text(linear_weight(&ck, "q4.weight", rows + 1, k));
    assert!(e.contains("expected [4, 64]"), "{e}");
    let e = err_text(linear_weight(&ck, "int.weight", rows, k));
    assert!(e.contains("dtype I32"), "{e}");
    // Random weights (benchmarks) come as f32.
    let r = linear_weight(&RandomWeights { seed: 1 }, "x.weight", rows, k).unwrap();
    assert_eq!(r.format(), WeightFormat::F32);
}

/// MLX 2-bit, group 64, quantized by hand (the kernels' quantizer takes 4 and 8 bits).
fn mlx_parts_2bit(w: &[f32], k: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut codes = Vec::new();
    let (mut s, mut b) = (Vec::new(), Vec::new());
    for g in w.chunks(64) {
        let lo = g.iter().cloned().fold(f32::MAX, f32::min);
        let hi = g.iter().cloned().fold(f32::MIN, f32::max);
        let sc = bf16::from_f32((hi - lo) / 3.0);
        let bi = bf16::from_f32(lo);
        s.extend(sc.to_bits().to_le_bytes());
        b.extend(bi.to_bits().to_le_bytes());
        for word in g.chunks(16) {
            let mut x = 0u32;
            for (j, v) in word.iter().enumerate() {
                let q = ((v - bi.to_f32()) / sc.to_f32()).round().clamp(0.0, 3.0) as u32;
                x |= q << (2 * j);
            }
            codes.extend(x.to_le_bytes());
        }
    }
    assert_eq!(codes.len() * 4, w.len() * 2 * 4 / 8 / k * k);
    (codes, s, b)
}

#[test]
fn quant_at_load() {
    let (rows, k) = (4usize, 64usize);
    let w = values(rows * k, 7);
    let bf = LinearTensor::Bf16(bf16_bytes(&w));
    let wb: Vec<f32> = w.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
    assert_eq!(bf.clone().quantized(None, k).unwrap(), bf);
    assert_eq!(
        bf.clone().quantized(Some(WeightFormat::Bf16), k).unwrap(),
        bf
    );
    let q4 = bf.clone().quantized(Some(WeightFormat::MLX_Q4), k).unwrap();
    assert_eq!(q4.format(), WeightFormat::MLX_Q4);
    let want = HostLinear::quantize(WeightFormat::MLX_Q4, &wb, rows as u32, k as u32).unwrap();
    assert_eq!(
        q4.clone().into_host(rows, k).unwrap().dequantize(),
        want.dequantize()
    );
    let q8 = LinearTensor::F32(w.clone())
        .quantized(Some(WeightFormat::Q8_0), k)
        .unwrap();
    assert_eq!(
        q8,
        LinearTensor::Q8_0(quant::q8_0_quantize(&w, k as u32).unwrap())
    );
    let m8 = bf.clone().quantized(Some(WeightFormat::MLX_Q8), k).unwrap();
    assert_eq!(m8.format(), WeightFormat::MLX_Q8);
    let want = HostLinear::quantize(WeightFormat::MLX_Q8, &wb, rows as u32, k as u32).unwrap();
    assert_eq!(
        m8.into_host(rows, k).unwrap().dequantize(),
        want.dequantize()
    );
    assert_eq!(
        LinearTensor::F32(w.clone())
            .quantized(Some(WeightFormat::Bf16), k)
            .unwrap(),
        bf
    );
    // Already quantized: kept as is when it is the asked format, else an error.
    assert_eq!(
        q8.clone().quantized(Some(WeightFormat::Q8_0), k).unwrap(),
        q8
    );
    let e = q8
        .quantized(Some(WeightFormat::MLX_Q4), k)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already q8_0"), "{e}");
    assert_eq!(quant_format("q4"), Some(WeightFormat::MLX_Q4));
    assert_eq!(quant_format("q8"), Some(WeightFormat::MLX_Q8));
    assert_eq!(quant_format("Q8_0"), Some(WeightFormat::Q8_0));
    assert!(quant_format("q3").is_none());
}

// ---------------------------------------------------------------------------------------------
// Model directories

#[test]
fn model_directory_resolution() {
    let d = tmp_dir("dir");
    let e = ModelFiles::resolve(&d).unwrap_err().to_string();
    assert!(
        e.contains("no model weights found (looked for LM checkpoint: model.safetensors"),
        "{e}"
    );
    let st = safetensors_bytes(&[("emb.0.weight", DType::F32, vec![1, 4], vec![0; 16])]);
    std::fs::write(d.join("model.q4.safetensors"), &st).unwrap();
    std::fs::write(d.join("model.q8.gguf"), gguf_file(32, &[])).unwrap();
    std::fs::write(d.join("tokenizer_spm_32k_3.model"), b"x").unwrap();
    let f = ModelFiles::resolve(&d).unwrap();
    assert!(f.config.is_none(), "no config.json: the 7B config");
    assert_eq!(f.lm, d.join("model.q4.safetensors"));
    assert_eq!(f.lm_others, vec![d.join("model.q8.gguf")]);
    // No Mimi beside it: the checkpoint would be Mimi itself (the loopback; loading checks its
    // tensors), so no tokenizer is taken.
    assert!(f.layout.codec_only());
    assert_eq!(f.tokenizer, None);
    assert_eq!(f.mimi, None);
    assert_eq!(f.schedule().unwrap(), None);
    // A checkpoint file given directly.
    let f = ModelFiles::resolve(&d.join("model.q8.gguf")).unwrap();
    assert_eq!(f.lm, d.join("model.q8.gguf"));
    // config.json names the files.
    std::fs::write(d.join("lm.bin"), &st).unwrap();
    std::fs::write(d.join("mimi.safetensors"), &st).unwrap();
    std::fs::write(
        d.join("config.json"),
        r#"{"moshi_name": "lm.bin", "mimi_name": "hf://kyutai/x/mimi.safetensors", "depformer_weights_per_step_schedule": [0, 1, 1]}"#,
    )
    .unwrap();
    let f = ModelFiles::resolve(&d).unwrap();
    assert_eq!(f.lm, d.join("lm.bin"));
    assert_eq!(f.mimi, Some(d.join("mimi.safetensors")));
    assert_eq!(f.schedule().unwrap(), Some(vec![0, 1, 1]));
    assert_eq!(f.open_lm().unwrap().names(), vec!["emb.0.weight"]);
    std::fs::write(
        d.join("config.json"),
        r#"{"moshi_name": "absent.safetensors"}"#,
    )
    .unwrap();
    let e = ModelFiles::resolve(&d).unwrap_err().to_string();
    assert!(e.contains("moshi_name 'absent.safetensors'"), "{e}");
    std::fs::write(d.join("config.json"), "{").unwrap();
    assert!(ModelFiles::resolve(&d)
        .unwrap_err()
        .to_string()
        .contains("not valid JSON"));
    std::fs::remove_dir_all(d).unwrap();
}

/// File names from `config.json` must be plain names of the model's directory (the rule the
/// browser's store applies too): paths, `..`, hidden files and the store's own files are refused
/// with the key and the value named, before any file is looked for; good names still resolve.
#[test]
fn config_file_names_are_plain() {
    let d = tmp_dir("names");
    let st = safetensors_bytes(&[("emb.0.weight", DType::F32, vec![1, 4], vec![0; 16])]);
    std::fs::write(d.join("model.safetensors"), &st).unwrap();
    // Files a bad name would reach if it were followed.
    std::fs::write(d.join("manifest.json"), &st).unwrap();
    std::fs::write(d.join(".hidden"), &st).unwrap();
    let bad = [
        ("mimi_name", r"..\..\secret.safetensors"),
        ("mimi_name", "../secret.safetensors"),
        ("moshi_name", "manifest.json"),
        ("moshi_name", "MANIFEST.JSON"),
        ("tokenizer_name", "parle-manifest.json"),
        ("tokenizer_name", ".hidden"),
        ("mimi_name", "../x"),
        ("mimi_name", "sub/model.safetensors"),
        ("mimi_name", "/etc/passwd"),
        ("mimi_name", "hf://kyutai/x/.."),
        ("mimi_name", ""),
        ("mimi_name", "a b.safetensors"),
    ];
    for (key, value) in bad {
        let cfg = serde_json::json!({ key: value });
        std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
        let e = ModelFiles::resolve(&d)
            .expect_err(&format!("{key} = {value:?} must be refused"))
            .to_string();
        let quoted = serde_json::to_string(value).unwrap();
        assert!(
            e.contains(&format!("\"{key}\""))
                && e.contains(&quoted)
                && e.contains("not a file name"),
            "{key} = {value:?}: {e}"
        );
    }
    // Accepted: plain names (also with '@', '-', '_') and an hf:// reference's last part.
    for (value, file) in [
        ("model.safetensors", "model.safetensors"),
        ("hf://kyutai/x/model.safetensors", "model.safetensors"),
        ("Model_v1@2-x.safetensors", "Model_v1@2-x.safetensors"),
    ] {
        std::fs::write(d.join(file), &st).unwrap();
        std::fs::write(
            d.join("config.json"),
            serde_json::json!({ "moshi_name": value }).to_string(),
        )
        .unwrap();
        let f = ModelFiles::resolve(&d).unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(f.lm, d.join(file), "{value}");
    }
    assert_eq!(config_file_name("k", "x.bin").unwrap(), "x.bin");
    std::fs::remove_dir_all(d).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The fixture LM in every format

const FORMATS: &[&str] = &["pytorch_bf16", "mlx_q4", "mlx_q8", "candle_q8_gguf"];

struct Fixture {
    files: ModelFiles,
    ck: Checkpoint,
    /// The reference's metadata (`fixture` JSON).
    meta: serde_json::Value,
}

fn fixture(name: &str) -> Fixture {
    let files = ModelFiles::resolve(&fixtures().join(name)).unwrap();
    let ck = files.open_lm().unwrap();
    let r = SafetensorsFile::open(&fixtures().join(name).join("reference.safetensors")).unwrap();
    let meta = serde_json::from_str(&r.header.metadata["fixture"]).unwrap();
    Fixture { files, ck, meta }
}

impl Fixture {
    /// Every published tensor of the reference's `checksums` (`count` of them) has the sum,
    /// absolute sum (to 1e-9 relative) and first values the Python reference dequantized from
    /// this file, bit for bit.
    fn check_checksums(&self, name: &str, count: usize) {
        let sums = self.meta["checksums"].as_object().unwrap();
        assert_eq!(sums.len(), count, "{name}");
        for (pname, c) in sums {
            let shape: Vec<usize> = c["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let v = published(&self.ck, pname, &shape);
            let sum: f64 = v.iter().map(|&x| x as f64).sum();
            let abs: f64 = v.iter().map(|&x| (x as f64).abs()).sum();
            let (ws, wa) = (c["sum"].as_f64().unwrap(), c["abs_sum"].as_f64().unwrap());
            assert!(
                (sum - ws).abs() <= 1e-9 * wa.max(1.0),
                "{name} {pname}: sum {sum} vs {ws}"
            );
            assert!(
                (abs - wa).abs() <= 1e-9 * wa.max(1.0),
                "{name} {pname}: |sum| {abs} vs {wa}"
            );
            let first: Vec<f32> = c["first"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(&v[..first.len()], first.as_slice(), "{name} {pname}");
        }
    }
}

/// The published PyTorch tensor `name` (stacked depformer attention) from canonical tensors.
fn published(ck: &Checkpoint, name: &str, shape: &[usize]) -> Vec<f32> {
    if let Ok(v) = ck.f32(name, shape) {
        return v;
    }
    let (base, kind) = if let Some(b) = name.strip_suffix(".self_attn.in_proj_weight") {
        (b, "in_projs")
    } else if let Some(b) = name.strip_suffix(".self_attn.out_proj.weight") {
        (b, "out_projs")
    } else {
        panic!("{}: no canonical tensor for {name}", ck.container().file())
    };
    let cols = shape[1];
    let per = if kind == "in_projs" { 3 * cols } else { cols };
    let mut out = Vec::new();
    for j in 0..shape[0] / per {
        out.extend(
            ck.f32(&format!("{base}.self_attn.{kind}.{j}.weight"), &[per, cols])
                .unwrap(),
        );
    }
    out
}

#[test]
fn fixture_formats_are_detected() {
    let want = [
        (
            "pytorch_bf16",
            ContainerKind::Safetensors,
            Naming::PyTorch,
            "bf16",
            95,
        ),
        (
            "mlx_q4",
            ContainerKind::Safetensors,
            Naming::Mlx,
            "MLX affine 4-bit, group 32",
            379,
        ),
        (
            "mlx_q8",
            ContainerKind::Safetensors,
            Naming::Mlx,
            "MLX affine 8-bit, group 64",
            379,
        ),
        (
            "candle_q8_gguf",
            ContainerKind::Gguf,
            Naming::Candle,
            "Q8_0",
            151,
        ),
    ];
    for (name, container, naming, q, stored) in want {
        let r = inspect::describe(&fixtures().join(name)).unwrap();
        assert_eq!(
            (
                r.container,
                r.naming,
                r.quantization.as_str(),
                r.stored_tensors
            ),
            (container, naming, q, stored),
            "{name}"
        );
        assert!(r.files.config.is_some());
        assert!(r.file_bytes > 0, "{name}: {r}");
        let text = r.to_string();
        assert!(text.contains(q), "{text}");
        println!("{text}");
    }
    let f = fixture("candle_q8_gguf");
    GgufFile::open(&f.files.lm).unwrap();
    let h = GgufHeader::read_file(&f.files.lm).unwrap();
    assert_eq!(
        h.metadata["general.architecture"],
        GgufValue::String("moshi".into())
    );
    assert_eq!(
        h.metadata["parle.delays"],
        GgufValue::Array {
            elem_type: 5,
            len: 17
        }
    );
}

#[test]
fn fixture_formats_give_the_same_canonical_tensors_and_the_encoded_values() {
    let torch = fixture("pytorch_bf16");
    // Canonical weights (without MLX companions) and their logical shapes, from PyTorch.
    let canon: BTreeMap<String, Vec<usize>> = torch
        .ck
        .names()
        .into_iter()
        .map(|n| {
            let s = torch.ck.info(&n).unwrap().1;
            (n, s)
        })
        .collect();
    assert_eq!(canon.len(), 123);
    assert!(canon.contains_key("depformer.layers.1.self_attn.in_projs.7.weight"));
    assert_eq!(
        canon["depformer.layers.1.self_attn.in_projs.7.weight"],
        vec![192, 64]
    );
    assert_eq!(canon["out_norm.alpha"], vec![1, 1, 64]);
    let torch_values: BTreeMap<&String, Vec<f32>> = canon
        .iter()
        .map(|(n, s)| (n, torch.ck.f32(n, s).unwrap()))
        .collect();

    for &name in FORMATS {
        let f = fixture(name);
        // Same canonical set (MLX adds the companions of its quantized weights).
        let names: BTreeSet<String> = f.ck.names().into_iter().collect();
        let weights: BTreeSet<String> = names
            .iter()
            .filter(|n| {
                !["scales", "biases"].iter().any(|w| {
                    n.strip_suffix(w).is_some_and(|b| {
                        let weight = format!("{b}weight");
                        assert_eq!(companion(&weight, w), **n);
                        f.ck.info(&weight).is_some_and(|(d, _)| d == DType::U32)
                    })
                })
            })
            .cloned()
            .collect();
        assert_eq!(
            weights,
            canon.keys().cloned().collect::<BTreeSet<_>>(),
            "{name}"
        );
        // Every canonical tensor read once leaves nothing unused (copies included).
        let u = UsageTracker::new(&f.ck);
        for (n, s) in &canon {
            let v = u.f32(n, s).unwrap();
            // Within the format's quantization error of the PyTorch bf16 weights.
            let w = &torch_values[n];
            assert_eq!(v.len(), w.len(), "{name} {n}");
            let (block, tol): (usize, fn(&[f32]) -> f32) = match name {
                "pytorch_bf16" => (1, |_| 0.0),
                // MLX snaps the bias so that zero is on the grid: up to one step of error.
                "mlx_q4" => (32, |g| range(g) / 15.0 + amax(g) / 128.0 + range(g) / 128.0),
                "mlx_q8" => (64, |g| {
                    range(g) / 255.0 + amax(g) / 128.0 + range(g) / 128.0
                }),
                _ => (32, |g| amax(g) / 127.0 * 0.5 + amax(g) / 512.0),
            };
            let is_norm = s.len() == 3;
            for (gi, (a, b)) in w
                .chunks(block.min(w.len()))
                .zip(v.chunks(block.min(w.len())))
                .enumerate()
            {
                let t = if is_norm { 0.0 } else { tol(a) + 1e-7 };
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= t,
                        "{name} {n} block {gi}: {x} vs {y} (tol {t})"
                    );
                }
            }
        }
        u.finish().unwrap();
        // Bit-for-bit the values the Python reference dequantized from this file.
        f.check_checksums(name, 95);
        // Every linear and embedding goes to the GPU in the file's own layout.
        for (n, s) in &canon {
            if s.len() != 2 {
                continue;
            }
            let t = linear_weight(&f.ck, n, s[0], s[1]).unwrap();
            let want = match name {
                "pytorch_bf16" => WeightFormat::Bf16,
                "mlx_q4" => WeightFormat::MLX_Q4,
                "mlx_q8" => WeightFormat::MLX_Q8,
                _ => WeightFormat::Q8_0,
            };
            assert_eq!(t.format(), want, "{name} {n}");
            assert_eq!(
                t.clone().into_host(s[0], s[1]).unwrap().dequantize(),
                t.to_f32(),
                "{name} {n}"
            );
        }
    }
}

fn range(g: &[f32]) -> f32 {
    g.iter().cloned().fold(f32::MIN, f32::max) - g.iter().cloned().fold(f32::MAX, f32::min)
}

fn amax(g: &[f32]) -> f32 {
    g.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

#[test]
fn fixture_checkpoints_in_memory_match_files() {
    // The browser path: the same checkpoints from bytes in memory.
    for &name in FORMATS {
        let f = fixture(name);
        let bytes = std::fs::read(&f.files.lm).unwrap();
        let m = Checkpoint::from_bytes(name, bytes, None).unwrap();
        assert_eq!(m.names(), f.ck.names());
        for n in f.ck.names() {
            assert_eq!(m.raw(&n).unwrap(), f.ck.raw(&n).unwrap(), "{name} {n}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PyTorch int8 (bitsandbytes row-wise): `X.weight` I8 `[rows, k]` + `X.weight_scb` F32 `[rows]`

/// A hand-made int8 file: good weights in the split and stacked names, and damaged companions.
#[test]
fn int8_row_weights_and_damaged_companions() {
    let (rows, k) = (6usize, 16usize);
    let w = values(rows * k, 7);
    let (codes, scb) = quant::int8_row_quantize(&w, k as u32).unwrap();
    let t = |n: &'static str, d: DType, s: Vec<usize>, b: Vec<u8>| (n, d, s, b);
    let tensors = vec![
        t("good.weight", DType::I8, vec![rows, k], codes.clone()),
        t("good.weight_scb", DType::F32, vec![rows], f32_bytes(&scb)),
        t("short.weight", DType::I8, vec![rows, k], codes.clone()),
        t(
            "short.weight_scb",
            DType::F32,
            vec![rows - 1],
            f32_bytes(&scb[1..]),
        ),
        t("bf16scb.weight", DType::I8, vec![rows, k], codes.clone()),
        t(
            "bf16scb.weight_scb",
            DType::BF16,
            vec![rows],
            bf16_bytes(&scb),
        ),
        t("noscb.weight", DType::I8, vec![rows, k], codes.clone()),
        t("nan.weight", DType::I8, vec![rows, k], codes.clone()),
        t("nan.weight_scb", DType::F32, vec![rows], {
            let mut s = scb.clone();
            s[4] = f32::NAN;
            f32_bytes(&s)
        }),
        // The temporal attention in the package's split form, and a stacked depformer one.
        t(
            "transformer.layers.0.self_attn.in_projs.0.weight",
            DType::I8,
            vec![rows, k],
            codes.clone(),
        ),
        t(
            "transformer.layers.0.self_attn.in_projs.0.weight_scb",
            DType::F32,
            vec![rows],
            f32_bytes(&scb),
        ),
    ];
    let ck = Checkpoint::from_bytes("q8.safetensors", safetensors_bytes(&tensors), None).unwrap();
    let want = quant::int8_row_dequantize(&codes, &scb, k);
    let lt = linear_weight(&ck, "good.weight", rows, k).unwrap();
    assert_eq!(lt.format(), WeightFormat::Int8Row);
    assert_eq!(lt.to_f32(), want);
    assert_eq!(lt.clone().into_host(rows, k).unwrap().dequantize(), want);
    assert_eq!(ck.f32("good.weight", &[rows, k]).unwrap(), want);
    // Within half a step (+ the f16 rounding) of the original weights.
    for (r, (a, b)) in w.chunks(k).zip(want.chunks(k)).enumerate() {
        let amax = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= amax / 254.0 + amax / 1024.0,
                "row {r}: {x} vs {y}"
            );
        }
    }
    // The split temporal name and its companion take the canonical names.
    let canon = "transformer.layers.0.self_attn.in_proj_weight";
    assert_eq!(
        ck.info(&format!("{canon}_scb")).unwrap(),
        (DType::F32, vec![rows])
    );
    assert_eq!(linear_weight(&ck, canon, rows, k).unwrap().to_f32(), want);
    // Every damage is an error naming the companion and the cause.
    let e = err_text(linear_weight(&ck, "short.weight", rows, k));
    assert!(
        e.contains("short.weight_scb") && e.contains("[5]") && e.contains("[6]"),
        "{e}"
    );
    let e = err_text(linear_weight(&ck, "bf16scb.weight", rows, k));
    assert!(
        e.contains("bf16scb.weight_scb") && e.contains("BF16") && e.contains("F32"),
        "{e}"
    );
    let e = err_text(linear_weight(&ck, "noscb.weight", rows, k));
    assert!(
        e.contains("noscb.weight_scb") && e.contains("missing") && e.contains("int8"),
        "{e}"
    );
    let e = err_text(linear_weight(&ck, "nan.weight", rows, k));
    assert!(
        e.contains("nan.weight_scb") && e.contains("row 4") && e.contains("NaN"),
        "{e}"
    );
    let e = err_text(ck.f32("short.weight", &[rows, k]));
    assert!(e.contains("short.weight_scb"), "{e}");
    // A wrong shape of the codes is named before the companion is read.
    let e = err_text(linear_weight(&ck, "good.weight", rows, k + 8));
    assert!(e.contains("good.weight") && e.contains("[6, 24]"), "{e}");
    // The stacked depformer form (moshi's load hook splits `in_proj_weight_scb` like the weight).
    let stacked = vec![
        t(
            "depformer.layers.0.self_attn.in_proj_weight",
            DType::I8,
            vec![2 * 3 * k, k],
            {
                let (c, _) = quant::int8_row_quantize(&values(6 * k * k, 9), k as u32).unwrap();
                c
            },
        ),
        t(
            "depformer.layers.0.self_attn.in_proj_weight_scb",
            DType::F32,
            vec![6 * k],
            {
                let (_, s) = quant::int8_row_quantize(&values(6 * k * k, 9), k as u32).unwrap();
                f32_bytes(&s)
            },
        ),
    ];
    let ck = Checkpoint::from_bytes("s.safetensors", safetensors_bytes(&stacked), None).unwrap();
    let (c, s) = quant::int8_row_quantize(&values(6 * k * k, 9), k as u32).unwrap();
    let all = quant::int8_row_dequantize(&c, &s, k);
    for j in 0..2 {
        let n = format!("depformer.layers.0.self_attn.in_projs.{j}.weight");
        assert_eq!(
            ck.info(&format!("{n}_scb")).unwrap(),
            (DType::F32, vec![3 * k])
        );
        let v = linear_weight(&ck, &n, 3 * k, k).unwrap().to_f32();
        assert_eq!(v, all[j * 3 * k * k..(j + 1) * 3 * k * k], "block {j}");
    }
}

/// The fixture LM in PyTorch int8 (`pytorch_q8`: its own model seed, so compared with its own
/// reference only): detected from its contents, every linear int8 with its `weight_scb`,
/// embeddings and norms bf16, nothing unused, values bit-equal to the reference's dequantization.
#[test]
fn fixture_pytorch_int8() {
    let r = inspect::describe(&fixtures().join("pytorch_q8")).unwrap();
    assert_eq!(
        (
            r.container,
            r.naming,
            r.quantization.as_str(),
            r.stored_tensors
        ),
        (
            ContainerKind::Safetensors,
            Naming::PyTorch,
            "PyTorch int8 (bitsandbytes row-wise)",
            212
        )
    );
    assert_eq!(r.dtypes["int8-quantized"], 89);
    assert_eq!(r.dtypes["int8 weight_scb"], 89);
    println!("{r}");
    let f = fixture("pytorch_q8");
    assert_eq!(f.meta["format"], "pytorch_q8");
    let names = f.ck.names();
    assert_eq!(names.len(), 123 + 89);
    let u = UsageTracker::new(&f.ck);
    let (mut int8, mut bf16) = (0, 0);
    for n in &names {
        let Some(base) = n.strip_suffix("_scb") else {
            let s = f.ck.info(n).unwrap().1;
            if s.len() == 2 {
                let t = linear_weight(&u, n, s[0], s[1]).unwrap();
                match t.format() {
                    WeightFormat::Int8Row => int8 += 1,
                    WeightFormat::Bf16 => bf16 += 1,
                    other => panic!("{n}: {other:?}"),
                }
                assert_eq!(
                    t.clone().into_host(s[0], s[1]).unwrap().dequantize(),
                    t.to_f32(),
                    "{n}"
                );
            } else {
                u.f32(n, &s).unwrap();
            }
            continue;
        };
        assert_eq!(f.ck.info(base).unwrap().0, DType::I8, "{n}");
    }
    // 89 linears (every nn.Linear, heads and depformer inputs included); 25 embedding tables.
    assert_eq!((int8, bf16), (89, 25));
    u.finish().unwrap();
    f.check_checksums("pytorch_q8", 95);
    let bytes = std::fs::read(&f.files.lm).unwrap();
    let m = Checkpoint::from_bytes("pytorch_q8", bytes, None).unwrap();
    assert_eq!(m.names(), names);
}

/// Embedding tables stay in the file's format on the GPU: the format each fixture stores its
/// tables in is read from the tensor info alone, and the GPU bytes follow; formats the gather does
/// not read (int8 rows, MLX 2-bit or group 128) become f32. Printed: the 7B's tables (temporal
/// 16 × 2049 + 32001 rows of 4096, depformer 32001 + 7 × 2049 rows of 1024) per format, from
/// `table_bytes` (the same function the loader sizes its buffers with); MLX q4 kept as stored
/// saves over 400 MB against the tables rounded to bf16.
#[test]
fn embedding_tables_keep_their_stored_format() {
    use parle::weights::{gather_format, stored_table_format, table_bytes, table_gpu_bytes};
    let want = [
        ("pytorch_bf16", WeightFormat::Bf16),
        ("mlx_q4", WeightFormat::MLX_Q4),
        ("mlx_q8", WeightFormat::MLX_Q8),
        ("candle_q8_gguf", WeightFormat::Q8_0),
        ("pytorch_q8", WeightFormat::Bf16),
    ];
    for (name, format) in want {
        let ck = fixture(name).ck;
        for (t, rows, dim) in [
            ("text_emb.weight", 321u32, 64u32),
            ("emb.3.weight", 65, 64),
            ("depformer_emb.6.weight", 65, 64),
        ] {
            assert_eq!(
                stored_table_format(&ck, t, dim as usize),
                Some(format),
                "{name} {t}"
            );
            assert_eq!(
                table_gpu_bytes(&ck, t, rows, dim, None),
                Some(table_bytes(format, rows, dim)),
                "{name} {t}"
            );
            // Also when read: the published layout of the table is that format.
            let stored = embedding_table(&ck, t, rows as usize, dim as usize).unwrap();
            assert_eq!(stored.format(), format, "{name} {t}");
        }
    }
    assert_eq!(gather_format(WeightFormat::Int8Row, 64), WeightFormat::F32);
    assert_eq!(
        gather_format(WeightFormat::Affine { bits: 2, group: 64 }, 64),
        WeightFormat::F32
    );
    assert_eq!(
        gather_format(
            WeightFormat::Affine {
                bits: 4,
                group: 128
            },
            256
        ),
        WeightFormat::F32
    );
    assert_eq!(gather_format(WeightFormat::Q8_0, 48), WeightFormat::F32);
    assert_eq!(
        gather_format(WeightFormat::MLX_Q4, 96),
        WeightFormat::MLX_Q4
    );
    // Exact sizes of small pieces: q4 3 rows of 64 = 24 code words (padded to 64) + 6 scale
    // words, padded to 128 words; bf16 5 rows of 3 = 8 words, padded to 64.
    assert_eq!(table_bytes(WeightFormat::MLX_Q4, 3, 64), 512);
    assert_eq!(table_bytes(WeightFormat::Bf16, 5, 3), 256);
    assert_eq!(table_bytes(WeightFormat::Q8_0, 1, 96), 512);

    let seven_b = |f: WeightFormat| -> u64 {
        table_bytes(f, 32001, 4096)
            + 16 * table_bytes(f, 2049, 4096)
            + table_bytes(f, 32001, 1024)
            + 7 * table_bytes(f, 2049, 1024)
    };
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    for f in [
        WeightFormat::F32,
        WeightFormat::Bf16,
        WeightFormat::MLX_Q8,
        WeightFormat::Q8_0,
        WeightFormat::MLX_Q4,
    ] {
        println!(
            "7B embedding tables as {}: {:.1} MiB",
            f.name(),
            mib(seven_b(f))
        );
    }
    let saved = seven_b(WeightFormat::Bf16) - seven_b(WeightFormat::MLX_Q4);
    println!("7B MLX q4 tables kept as q4 instead of bf16: {saved} bytes less");
    assert!(saved > 400_000_000, "{saved}");
}
