//! `parle info --model DIR`: what a model directory holds: the LM file's container, naming and
//! quantization (detected from its contents), tensor counts, file and GPU bytes (native).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::{
    companion, ContainerKind, DType, ModelFiles, Naming, SafetensorsHeader, TensorSource,
    WeightsError,
};

/// A description of a model directory.
#[derive(Debug, Clone)]
pub struct ModelReport {
    pub files: ModelFiles,
    pub container: ContainerKind,
    pub naming: Naming,
    /// e.g. `bf16`, `Q8_0`, `MLX affine 4-bit, group 32`, `PyTorch int8 (bitsandbytes row-wise)`.
    pub quantization: String,
    /// Tensors stored in the LM file.
    pub stored_tensors: usize,
    /// Canonical tensors they provide (copies counted once, stacked tensors split).
    pub canonical_tensors: usize,
    /// Stored dtype → number of canonical tensors.
    pub dtypes: BTreeMap<String, usize>,
    pub file_bytes: u64,
    /// Bytes the LM weights take on the GPU in their published layouts (norm vectors as f32).
    pub gpu_bytes: u64,
    /// Of which embedding tables (gathered rows)…
    pub embedding_bytes: u64,
    /// … which would take this many bytes dequantized to bf16.
    pub embedding_bf16_bytes: u64,
    /// Mimi: tensor count and file bytes.
    pub mimi: Option<(usize, u64)>,
}

fn is_embedding(name: &str) -> bool {
    let base = name
        .strip_suffix(".weight")
        .or_else(|| name.strip_suffix(".scales"))
        .or_else(|| name.strip_suffix(".biases"));
    base.is_some_and(|b| {
        b == "text_emb"
            || b == "depformer_text_emb"
            || b.strip_prefix("emb.")
                .or_else(|| b.strip_prefix("depformer_emb."))
                .is_some_and(|i| i.bytes().all(|c| c.is_ascii_digit()))
    })
}

/// MLX bits and group of a U32 code tensor `[rows, cols]` with `k` inputs and `groups` groups
/// per row.
fn mlx_bits_group(cols: usize, groups: usize, k: usize) -> Option<(usize, usize)> {
    let c = cols.checked_mul(32)?;
    (k > 0 && groups > 0 && c.is_multiple_of(k) && k.is_multiple_of(groups))
        .then(|| (c / k, k / groups))
}

/// Describe the model directory (or LM file) `path`.
pub fn describe(path: &Path) -> Result<ModelReport, WeightsError> {
    let files = ModelFiles::resolve(path)?;
    let ck = files.open_lm()?;
    let file_bytes = std::fs::metadata(&files.lm).map(|m| m.len()).unwrap_or(0);
    let names = ck.names();
    // The model dim, from the final norm (its length) — the input size of most linears.
    let dim = ck
        .info("out_norm.alpha")
        .and_then(|(_, s)| s.last().copied());
    // MLX bits and group, from a tensor whose input size is the model dim.
    let mlx = ["text_linear.weight", "text_emb.weight"]
        .iter()
        .find_map(|n| {
            let (d, codes) = ck.info(n)?;
            let (_, s) = ck.info(&companion(n, "scales"))?;
            (d == DType::U32).then_some(())?;
            mlx_bits_group(*codes.last()?, *s.last()?, dim?)
        });
    let mut dtypes: BTreeMap<String, usize> = BTreeMap::new();
    let (mut gpu, mut emb, mut emb_bf16) = (0u64, 0u64, 0u64);
    for n in &names {
        let Some((dtype, shape)) = ck.info(n) else {
            continue;
        };
        let is_companion = ["scales", "biases"].iter().any(|w| {
            let base = n.strip_suffix(w).unwrap_or("");
            !base.is_empty()
                && ck
                    .info(&format!("{base}weight"))
                    .is_some_and(|(d, _)| d == DType::U32)
        });
        let is_scb = n
            .strip_suffix("_scb")
            .is_some_and(|base| ck.info(base).is_some_and(|(d, _)| d == DType::I8));
        let key = if is_companion {
            "MLX scales/biases".to_string()
        } else if is_scb {
            "int8 weight_scb".to_string()
        } else if dtype == DType::I8 {
            "int8-quantized".to_string()
        } else if dtype == DType::U32 {
            "MLX-quantized".to_string()
        } else {
            dtype.name().to_string()
        };
        *dtypes.entry(key).or_default() += 1;
        let numel: u64 = shape.iter().map(|&d| d as u64).product();
        let bytes = dtype.nbytes(&shape).unwrap_or(0);
        // Norm vectors ([1, 1, D] or [D]) are kept in f32.
        let is_vector = shape.iter().filter(|&&d| d > 1).count() <= 1;
        let b = if is_vector && dtype.is_float() {
            4 * numel
        } else {
            bytes
        };
        gpu += b;
        if is_embedding(n) {
            emb += b;
            if n.ends_with("weight") {
                let rows = shape.first().copied().unwrap_or(0) as u64;
                let cols = shape.last().copied().unwrap_or(0) as u64;
                let k = match (dtype, mlx) {
                    (DType::U32, Some((bits, _))) => cols.saturating_mul(32) / bits as u64,
                    _ => cols,
                };
                emb_bf16 += 2 * rows * k;
            }
        }
    }
    let count = |d: DType| dtypes.get(d.name()).copied().unwrap_or(0);
    let quantization = if dtypes.contains_key("MLX-quantized") {
        match mlx {
            Some((bits, group)) => format!("MLX affine {bits}-bit, group {group}"),
            None => "MLX affine (bits and group not determined)".into(),
        }
    } else if dtypes.contains_key("int8-quantized") {
        "PyTorch int8 (bitsandbytes row-wise)".into()
    } else if count(DType::Q8_0) > 0 {
        "Q8_0".into()
    } else if count(DType::BF16) >= count(DType::F32).max(count(DType::F16)) {
        "bf16".into()
    } else if count(DType::F16) > count(DType::F32) {
        "f16".into()
    } else {
        "f32".into()
    };
    let mimi = match &files.mimi {
        Some(p) => {
            let h = SafetensorsHeader::read_file(p)?;
            let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            Some((h.tensors.len(), len))
        }
        None => None,
    };
    Ok(ModelReport {
        container: ck.container().kind(),
        naming: ck.naming(),
        quantization,
        stored_tensors: ck.stored_count(),
        canonical_tensors: names.len(),
        dtypes,
        file_bytes,
        gpu_bytes: gpu,
        embedding_bytes: emb,
        embedding_bf16_bytes: emb_bf16,
        mimi,
        files,
    })
}

fn size(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB ({b} bytes)", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.1} MiB ({b} bytes)", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{b} bytes")
    }
}

impl fmt::Display for ModelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string())
        };
        writeln!(f, "model: {}", self.files.dir.display())?;
        match &self.files.config {
            Some(p) => writeln!(f, "  config: {}", name(p))?,
            None => writeln!(f, "  config: none (Moshi 7B defaults)")?,
        }
        write!(f, "  LM: {}", name(&self.files.lm))?;
        if !self.files.lm_others.is_empty() {
            let o: Vec<String> = self.files.lm_others.iter().map(|p| name(p)).collect();
            write!(f, " (also present: {})", o.join(", "))?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "    format: {} with {} names; quantization: {}",
            self.container.name(),
            self.naming.name(),
            self.quantization
        )?;
        let d: Vec<String> = self
            .dtypes
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        writeln!(
            f,
            "    tensors: {} stored, {} canonical ({})",
            self.stored_tensors,
            self.canonical_tensors,
            d.join(", ")
        )?;
        writeln!(f, "    file: {}", size(self.file_bytes))?;
        writeln!(
            f,
            "    GPU: {} (embedding tables {}; {} if dequantized to bf16)",
            size(self.gpu_bytes),
            size(self.embedding_bytes),
            size(self.embedding_bf16_bytes)
        )?;
        match (&self.files.mimi, self.mimi) {
            (Some(p), Some((n, b))) => {
                writeln!(f, "  Mimi: {} ({n} tensors, {})", name(p), size(b))?
            }
            _ => writeln!(f, "  Mimi: not found")?,
        }
        match &self.files.tokenizer {
            Some(p) => write!(f, "  text tokenizer: {}", name(p)),
            None => write!(f, "  text tokenizer: not found"),
        }
    }
}
