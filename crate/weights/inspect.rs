//! `parle info --model DIR`: what a model directory holds: the LM file's container, naming and
//! quantization (detected from its contents), tensor counts and file bytes (native). The GPU
//! memory a load takes is [`super::estimate`]'s (the CLI prints it below this report).

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
    /// Mimi: tensor count and file bytes.
    pub mimi: Option<(usize, u64)>,
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
    for n in &names {
        let Some(dtype) = ck.dtype(n) else {
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
