//! Linear (and embedding) weights in their published layouts, whatever the file format:
//! [`linear_weight`] returns a [`LinearTensor`] that the GPU side writes into its buffers in row
//! chunks ([`LinearTensor::row_chunks`], `rows.rs`) or repacks whole with
//! [`LinearTensor::into_host`] (no format branches in model code).

use half::bf16;

use super::quant::{self, MlxAffine};
use super::{companion, DType, HostLinear, RawTensor, TensorSource, WeightFormat, WeightsError};

/// A `[rows, k]` weight as published (rows = outputs or vocabulary entries, k = inputs / dim).
#[derive(Debug, Clone, PartialEq)]
pub enum LinearTensor {
    /// f32 values (also F16 files, converted exactly).
    F32(Vec<f32>),
    /// bf16 little-endian bytes.
    Bf16(Vec<u8>),
    /// ggml Q8_0 blocks (34 bytes per 32 weights along k).
    Q8_0(Vec<u8>),
    /// MLX affine quantization: u32 code words `[rows, k·bits/32]` (low bits first), bf16
    /// scales and biases `[rows, k/group]`, all as little-endian bytes; `w = s·q + β`.
    MlxAffine {
        bits: u32,
        group: u32,
        codes: Vec<u8>,
        scales: Vec<u8>,
        biases: Vec<u8>,
    },
    /// PyTorch int8 row-wise (bitsandbytes, `moshi/utils/quantize.py`): int8 codes `[rows, k]`
    /// as bytes and the f32 `weight_scb` `[rows]` (each row's absmax); `w = q·scb/127`.
    Int8Row { codes: Vec<u8>, scb: Vec<f32> },
}

fn words(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

fn halves(b: &[u8]) -> impl Iterator<Item = u16> + '_ {
    b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]))
}

impl LinearTensor {
    /// The GPU weight format of this layout.
    pub fn format(&self) -> WeightFormat {
        match self {
            Self::F32(_) => WeightFormat::F32,
            Self::Bf16(_) => WeightFormat::Bf16,
            Self::Q8_0(_) => WeightFormat::Q8_0,
            Self::MlxAffine { bits, group, .. } => WeightFormat::Affine {
                bits: *bits,
                group: *group,
            },
            Self::Int8Row { .. } => WeightFormat::Int8Row,
        }
    }

    /// Bytes of the published layout (what the GPU holds: the affine scale and bias of a group
    /// share one u32, so that is the same size too).
    pub fn bytes(&self) -> u64 {
        match self {
            Self::F32(v) => 4 * v.len() as u64,
            Self::Bf16(b) | Self::Q8_0(b) => b.len() as u64,
            Self::MlxAffine {
                codes,
                scales,
                biases,
                ..
            } => (codes.len() + scales.len() + biases.len()) as u64,
            Self::Int8Row { codes, scb } => (codes.len() + 4 * scb.len()) as u64,
        }
    }

    /// The f32 weights, row-major `[rows, k]` (dequantized in f32: `d·q`, `s·q + β`,
    /// `(q·scb)·(1/127)` as bitsandbytes does).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Self::F32(v) => v.clone(),
            Self::Bf16(b) => halves(b).map(|h| bf16::from_bits(h).to_f32()).collect(),
            Self::Q8_0(b) => quant::q8_0_dequantize(b),
            Self::MlxAffine {
                bits,
                group,
                codes,
                scales,
                biases,
            } => {
                let per_word = (32 / bits) as usize;
                let mask = (1u32 << bits) - 1;
                let s: Vec<f32> = halves(scales)
                    .map(|h| bf16::from_bits(h).to_f32())
                    .collect();
                let b: Vec<f32> = halves(biases)
                    .map(|h| bf16::from_bits(h).to_f32())
                    .collect();
                let mut out = Vec::with_capacity(codes.len() / 4 * per_word);
                for (i, w) in words(codes).enumerate() {
                    for j in 0..per_word {
                        let g = (i * per_word + j) / *group as usize;
                        let q = (w >> (*bits as usize * j)) & mask;
                        out.push(s[g] * q as f32 + b[g]);
                    }
                }
                out
            }
            Self::Int8Row { codes, scb } => {
                let k = if scb.is_empty() {
                    0
                } else {
                    codes.len() / scb.len()
                };
                quant::int8_row_dequantize(codes, scb, k)
            }
        }
    }

    /// bf16 bytes of the weights (f32 and dequantized values rounded to nearest even; bf16 kept).
    /// For embedding tables the GPU gathers from bf16 (a quantized table dequantized at load:
    /// 2 bytes per weight instead of 1.06 (Q8_0/q8) or 0.63 (q4)).
    pub fn to_bf16_bytes(&self) -> Vec<u8> {
        match self {
            Self::Bf16(b) => b.clone(),
            _ => self
                .to_f32()
                .iter()
                .flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes())
                .collect(),
        }
    }

    /// Quantize (or round) an f32/bf16 weight with `k` inputs per row into `target` (a `--quant`
    /// format, [`super::quant_format`]); `None` keeps the weight as it is. A weight already
    /// quantized in another format is an error: `--quant` applies to bf16 (or f32) checkpoints.
    pub fn quantized(self, target: Option<WeightFormat>, k: usize) -> Result<Self, WeightsError> {
        let Some(target) = target else {
            return Ok(self);
        };
        if self.format() == target {
            return Ok(self);
        }
        if !matches!(self, Self::F32(_) | Self::Bf16(_)) {
            return Err(WeightsError::Config(format!(
                "--quant {} applies to bf16 or f32 checkpoints; this one is already {}",
                target.name(),
                self.format().name()
            )));
        }
        let w = self.to_f32();
        let k32 = k as u32;
        let mlx = |bits: u32, group: u32| -> Result<Self, WeightsError> {
            let m = quant::mlx_quantize(&w, k32, bits, group)?;
            Ok(Self::MlxAffine {
                bits,
                group,
                codes: m.weight.iter().flat_map(|w| w.to_le_bytes()).collect(),
                scales: m.scales.iter().flat_map(|h| h.to_le_bytes()).collect(),
                biases: m.biases.iter().flat_map(|h| h.to_le_bytes()).collect(),
            })
        };
        Ok(match target {
            WeightFormat::F32 => Self::F32(w),
            WeightFormat::Bf16 => Self::Bf16(self.to_bf16_bytes()),
            WeightFormat::Q8_0 => Self::Q8_0(quant::q8_0_quantize(&w, k32)?),
            WeightFormat::Affine { bits, group } => mlx(bits, group)?,
            WeightFormat::Int8Row => {
                let (codes, scb) = quant::int8_row_quantize(&w, k32)?;
                Self::Int8Row { codes, scb }
            }
        })
    }

    /// The GPU layout of this `[rows, k]` weight (the GPU side uploads it as it is).
    pub fn into_host(self, rows: usize, k: usize) -> Result<HostLinear, WeightsError> {
        let (r, kk) = (rows as u32, k as u32);
        match self {
            Self::F32(v) => HostLinear::from_f32(&v, r, kk),
            Self::Bf16(b) => HostLinear::from_bf16_bytes(&b, r, kk),
            Self::Q8_0(b) => HostLinear::from_q8_0_blocks(&b, r, kk),
            Self::MlxAffine {
                bits,
                group,
                codes,
                scales,
                biases,
            } => HostLinear::from_mlx(
                &MlxAffine {
                    bits,
                    group,
                    weight: words(&codes).collect(),
                    scales: halves(&scales).collect(),
                    biases: halves(&biases).collect(),
                },
                r,
                kk,
            ),
            Self::Int8Row { codes, scb } => HostLinear::from_int8_row(&codes, &scb, r, kk),
        }
    }
}

/// An MLX-quantized weight from its code tensor `t` (U32 `[rows, k·bits/32]`) and the
/// `scales` / `biases` companions of `name` in `src`. Bits 2, 4 or 8; any group dividing `k`.
pub(crate) fn mlx_from_raw<S: TensorSource + ?Sized>(
    src: &S,
    name: &str,
    t: RawTensor,
    rows: usize,
    k: usize,
) -> Result<LinearTensor, WeightsError> {
    let file = src.file();
    let fmt = |message: String| WeightsError::Format {
        file: file.clone(),
        message,
    };
    let cols = match t.shape.as_slice() {
        [r, c] if *r == rows => *c,
        _ => {
            return Err(WeightsError::Shape {
                file: file.clone(),
                tensor: name.into(),
                found: t.shape.clone(),
                expected: vec![rows, k],
            })
        }
    };
    let bits = match cols.checked_mul(32) {
        Some(c) if k > 0 && c.is_multiple_of(k) => c / k,
        _ => 0,
    };
    if !matches!(bits, 2 | 4 | 8) {
        return Err(fmt(format!(
            "'{name}' holds U32 codes [{rows}, {cols}] (MLX quantized), which is not 2, 4 or 8 bits for {k} inputs"
        )));
    }
    let comp = |what: &str| -> Result<RawTensor, WeightsError> {
        let n = companion(name, what);
        let c = src.raw(&n).map_err(|e| match e {
            WeightsError::Missing { .. } => fmt(format!(
                "'{name}' holds U32 codes (MLX quantized) but its companion '{n}' is missing"
            )),
            e => e,
        })?;
        if c.dtype != DType::BF16 {
            return Err(WeightsError::DType {
                file: file.clone(),
                tensor: n,
                found: c.dtype.name().into(),
                expected: "BF16 (MLX scales and biases)".into(),
            });
        }
        Ok(c)
    };
    let scales = comp("scales")?;
    let biases = comp("biases")?;
    let groups = match scales.shape.as_slice() {
        [r, g] if *r == rows && *g > 0 && k.is_multiple_of(*g) => *g,
        s => {
            return Err(fmt(format!(
                "'{}' has shape {s:?}; expected [{rows}, G] with G dividing {k}",
                companion(name, "scales")
            )))
        }
    };
    if biases.shape != scales.shape {
        return Err(WeightsError::Shape {
            file,
            tensor: companion(name, "biases"),
            found: biases.shape,
            expected: scales.shape,
        });
    }
    Ok(LinearTensor::MlxAffine {
        bits: bits as u32,
        group: (k / groups) as u32,
        codes: t.bytes,
        scales: scales.bytes,
        biases: biases.bytes,
    })
}

/// The name of the `weight_scb` companion of a PyTorch int8 weight `name`: `X.weight` →
/// `X.weight_scb` (canonical `in_proj_weight` → `in_proj_weight_scb`, moshi's own stacked name).
pub fn scb_companion(name: &str) -> String {
    format!("{name}_scb")
}

/// A PyTorch int8 row-wise weight from its code tensor `t` (I8 `[rows, k]`, shape already
/// checked) and the `weight_scb` companion of `name` in `src` (F32 `[rows]`, finite, ≥ 0).
pub(crate) fn int8_from_raw<S: TensorSource + ?Sized>(
    src: &S,
    name: &str,
    t: RawTensor,
    rows: usize,
) -> Result<LinearTensor, WeightsError> {
    let file = src.file();
    let n = scb_companion(name);
    let c = src.raw(&n).map_err(|e| match e {
        WeightsError::Missing { .. } => WeightsError::Format {
            file: file.clone(),
            message: format!(
                "'{name}' holds int8 codes (PyTorch bitsandbytes row-wise) but its companion '{n}' (F32 [{rows}], one absmax per row) is missing"
            ),
        },
        e => e,
    })?;
    if c.dtype != DType::F32 {
        return Err(WeightsError::DType {
            file,
            tensor: n,
            found: c.dtype.name().into(),
            expected: "F32 (bitsandbytes weight_scb, one absmax per row)".into(),
        });
    }
    if c.shape != [rows] {
        return Err(WeightsError::Shape {
            file,
            tensor: n,
            found: c.shape,
            expected: vec![rows],
        });
    }
    let scb: Vec<f32> = bytemuck::pod_collect_to_vec(&c.bytes);
    if let Some((r, v)) = scb
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite() || **v < 0.0)
    {
        return Err(WeightsError::Format {
            file,
            message: format!(
                "'{n}' row {r} is {v}; a row absmax must be finite and ≥ 0. Download the checkpoint again."
            ),
        });
    }
    Ok(LinearTensor::Int8Row {
        codes: t.bytes,
        scb,
    })
}

/// The `[rows, k]` weight `name` of `src` in its published layout: f32 (or F16, converted),
/// bf16, Q8_0 blocks, MLX affine codes with their `scales` / `biases` companions, or PyTorch int8
/// codes with their `weight_scb` companion ([`scb_companion`]). Checks the
/// (logical) shape and that the GPU kernels support the quantization (MLX: 4 or 8 bits, group 32
/// or 64; K a multiple of the block). Errors name the file, the tensor and the expected shape.
pub fn linear_weight(
    src: &dyn TensorSource,
    name: &str,
    rows: usize,
    k: usize,
) -> Result<LinearTensor, WeightsError> {
    let t = weight(src, name, rows, k)?;
    if let LinearTensor::MlxAffine { bits, group, .. } = &t {
        if !matches!((bits, group), (4 | 8, 32 | 64)) {
            return Err(WeightsError::Format {
                file: src.file(),
                message: format!(
                    "'{name}' is MLX {bits}-bit with group {group}; parle's kernels take 4 or 8 bits with group 32 or 64"
                ),
            });
        }
    }
    Ok(t)
}

/// An embedding table `[rows = vocabulary, dim]` in its published layout (same forms as
/// [`linear_weight`]; any MLX group and 2/4/8 bits, since tables are gathered, not multiplied).
pub fn embedding_table(
    src: &dyn TensorSource,
    name: &str,
    rows: usize,
    dim: usize,
) -> Result<LinearTensor, WeightsError> {
    weight(src, name, rows, dim)
}

fn weight(
    src: &dyn TensorSource,
    name: &str,
    rows: usize,
    k: usize,
) -> Result<LinearTensor, WeightsError> {
    if src.is_generator() {
        return Ok(LinearTensor::F32(src.f32(name, &[rows, k])?));
    }
    let expected = [rows, k];
    if let Some((dtype, shape)) = src.info(name) {
        if dtype != DType::U32 && shape != expected {
            return Err(WeightsError::Shape {
                file: src.file(),
                tensor: name.into(),
                found: shape,
                expected: expected.to_vec(),
            });
        }
    }
    let t = src.raw(name).map_err(|e| e.expecting(&expected))?;
    if t.dtype == DType::U32 {
        return mlx_from_raw(src, name, t, rows, k);
    }
    if t.shape != expected {
        return Err(WeightsError::Shape {
            file: src.file(),
            tensor: name.into(),
            found: t.shape,
            expected: expected.to_vec(),
        });
    }
    Ok(match t.dtype {
        DType::F32 => LinearTensor::F32(bytemuck::pod_collect_to_vec(&t.bytes)),
        DType::F16 => LinearTensor::F32(
            halves(&t.bytes)
                .map(|h| half::f16::from_bits(h).to_f32())
                .collect(),
        ),
        DType::BF16 => LinearTensor::Bf16(t.bytes),
        DType::Q8_0 => LinearTensor::Q8_0(t.bytes),
        DType::I8 => int8_from_raw(src, name, t, rows)?,
        d => {
            return Err(WeightsError::DType {
                file: src.file(),
                tensor: name.into(),
                found: d.name().into(),
                expected: "F32, F16, BF16, Q8_0, MLX U32 codes or int8 codes with weight_scb"
                    .into(),
            })
        }
    })
}
