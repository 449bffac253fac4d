//! [`WeightFormat`]: how a linear layer's weight is stored, the published formats of spec §4 in
//! the layouts the linear kernel reads (the streams are described on [`super::HostLinear`]), and
//! [`quant_format`], the names `--quant` accepts.

use super::WeightsError;

/// How a linear layer's weight is stored (published formats of spec §4, in their GPU layouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// f32 `[rows, K]`; K a multiple of 4.
    F32,
    /// bf16, two per u32 (element `2i` in the low half of word `i`); K a multiple of 8.
    Bf16,
    /// ggml Q8_0: blocks of 32 along K, `w = d·q`, int8 `q`, f16 `d`; K a multiple of 32.
    Q8_0,
    /// MLX affine group quantization, `w = s·q + β` per group of `group` weights along K,
    /// unsigned `bits`-bit codes; `bits ∈ {4, 8}`, `group ∈ {32, 64}`, K a multiple of `group`.
    Affine { bits: u32, group: u32 },
}

impl WeightFormat {
    /// MLX q4 as published by Kyutai (group 32).
    pub const MLX_Q4: Self = Self::Affine { bits: 4, group: 32 };
    /// MLX q8 as published by Kyutai (group 64).
    pub const MLX_Q8: Self = Self::Affine { bits: 8, group: 64 };

    /// Short name, e.g. `bf16`, `q8_0`, `q4g32`.
    pub fn name(&self) -> String {
        match self {
            Self::F32 => "f32".into(),
            Self::Bf16 => "bf16".into(),
            Self::Q8_0 => "q8_0".into(),
            Self::Affine { bits, group } => format!("q{bits}g{group}"),
        }
    }

    /// The K granularity of the format (f32 4, bf16 8, Q8_0 32, affine the group size).
    pub fn k_multiple(&self) -> u32 {
        match self {
            Self::F32 => 4,
            Self::Bf16 => 8,
            Self::Q8_0 => 32,
            Self::Affine { group, .. } => *group,
        }
    }

    /// `k` rounded up to the format's granularity.
    pub fn padded_k(&self, k: u32) -> u32 {
        k.next_multiple_of(self.k_multiple())
    }

    /// Check that this format supports rows of `k` weights.
    pub fn check_k(&self, k: u32) -> Result<(), WeightsError> {
        if let Self::Affine { bits, group } = self {
            if !matches!(bits, 4 | 8) || !matches!(group, 32 | 64) {
                return Err(WeightsError::Layout(format!(
                    "affine weights need bits 4 or 8 and group 32 or 64, got bits {bits} group {group}"
                )));
            }
        }
        let q = self.k_multiple();
        if k == 0 || !k.is_multiple_of(q) {
            return Err(WeightsError::Layout(format!(
                "{} weights need K to be a positive multiple of {q}, got {k}",
                self.name()
            )));
        }
        Ok(())
    }

    /// u32 words of the code/value stream for `rows × k` weights.
    pub fn data_words(&self, rows: u32, k: u32) -> u64 {
        let e = rows as u64 * k as u64;
        match self {
            Self::F32 => e,
            Self::Bf16 => e / 2,
            Self::Q8_0 => e / 4,
            Self::Affine { bits, .. } => e * *bits as u64 / 32,
        }
    }

    /// u32 words of the scale stream (0 for f32 and bf16).
    pub fn scale_words(&self, rows: u32, k: u32) -> u64 {
        let e = rows as u64 * k as u64;
        match self {
            Self::F32 | Self::Bf16 => 0,
            Self::Q8_0 => (e / 32).div_ceil(2),
            Self::Affine { group, .. } => e / *group as u64,
        }
    }

    /// Bytes the GPU reads for `rows × k` weights (both streams).
    pub fn gpu_bytes(&self, rows: u32, k: u32) -> u64 {
        match self {
            // Q8_0 scales: exactly 2 bytes per block.
            Self::Q8_0 => 4 * self.data_words(rows, k) + rows as u64 * k as u64 / 16,
            _ => 4 * (self.data_words(rows, k) + self.scale_words(rows, k)),
        }
    }
}

/// The weight format a `--quant` name converts a checkpoint's linears to at load (ASCII case
/// ignored): `q4` (MLX 4-bit, group 32), `q8` (MLX 8-bit, group 64), `q8_0` (ggml), `bf16`,
/// `f32`; `None` for any other name.
pub fn quant_format(name: &str) -> Option<WeightFormat> {
    match name.to_ascii_lowercase().as_str() {
        "q4" => Some(WeightFormat::MLX_Q4),
        "q8" => Some(WeightFormat::MLX_Q8),
        "q8_0" => Some(WeightFormat::Q8_0),
        "bf16" => Some(WeightFormat::Bf16),
        "f32" => Some(WeightFormat::F32),
        _ => None,
    }
}
