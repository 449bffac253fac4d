//! [`LinearWeights`]: a linear layer's weight on the GPU, in one buffer set or in row ranges
//! when it exceeds the storage-binding limit, and its upload from a [`HostLinear`].

use crate::gpu::{BufferUsage, Context, GpuBuffer, GpuResult, Recorder};
use crate::weights::{HostLinear, WeightFormat};

use super::err;

/// One row range of a weight that lives in its own buffers (weights larger than the GPU's
/// storage-binding limit are split by rows).
#[derive(Debug, Clone)]
pub(super) struct Part {
    /// First row of the tensor held by this part.
    pub(super) first_row: u32,
    pub(super) rows: u32,
    pub(super) data: GpuBuffer,
    pub(super) scales: Option<GpuBuffer>,
}

/// A linear layer's weight on the GPU: format, shape, and the buffers of its streams (one set,
/// or several row ranges when the weight exceeds the storage-binding limit). Cheap to clone
/// (buffers are shared handles). Rows `row_offset .. row_offset + n` of the `[total_rows, k]`
/// tensor are used (see [`LinearWeights::rows`]).
#[derive(Debug, Clone)]
pub struct LinearWeights {
    pub(super) format: WeightFormat,
    total_rows: u32,
    pub(super) row_offset: u32,
    pub(super) n: u32,
    pub(super) k: u32,
    pub(super) parts: Vec<Part>,
}

impl LinearWeights {
    /// Wrap buffers that already hold a `[rows, k]` weight in `format`'s GPU layout (e.g. written
    /// by a streaming uploader). Checks the buffer sizes.
    pub fn new(
        format: WeightFormat,
        rows: u32,
        k: u32,
        data: GpuBuffer,
        scales: Option<GpuBuffer>,
    ) -> GpuResult<Self> {
        Self::from_parts(format, k, vec![(rows, data, scales)])
    }

    /// A weight stored as consecutive row ranges `(rows, data, scales)`, each in `format`'s GPU
    /// layout in its own buffers (the first range holds rows `0 .. rows₀`, the next the following
    /// rows, …). For Q8_0 every range but the last must have an even number of rows times K/32
    /// blocks (so that scale pairs are not split); [`LinearWeights::upload`] splits this way.
    pub fn from_parts(
        format: WeightFormat,
        k: u32,
        parts: Vec<(u32, GpuBuffer, Option<GpuBuffer>)>,
    ) -> GpuResult<Self> {
        format.check_k(k).map_err(|e| err(e.to_string()))?;
        let mut out = Vec::with_capacity(parts.len());
        let mut first_row = 0u32;
        for (rows, data, scales) in parts {
            if rows == 0 {
                return Err(err("a weight part needs at least one row"));
            }
            let need = 4 * format.data_words(rows, k);
            if data.size() < need {
                return Err(err(format!(
                    "{} weight [{rows}, {k}] needs {need} bytes, buffer '{}' has {}",
                    format.name(),
                    data.label(),
                    data.size()
                )));
            }
            let sneed = 4 * format.scale_words(rows, k);
            match (&scales, sneed) {
                (None, 0) => {}
                (Some(s), n) if n > 0 && s.size() >= n => {}
                (s, n) => {
                    return Err(err(format!(
                        "{} weight [{rows}, {k}] needs a scale buffer of {n} bytes, got {:?}",
                        format.name(),
                        s.as_ref().map(|b| b.size())
                    )))
                }
            }
            if format == WeightFormat::Q8_0
                && !out.is_empty()
                && !(out.last().map_or(0, |p: &Part| p.rows as u64) * (k as u64 / 32))
                    .is_multiple_of(2)
            {
                return Err(err(
                    "Q8_0 parts before the last need an even number of blocks (rows · K/32)",
                ));
            }
            out.push(Part {
                first_row,
                rows,
                data,
                scales,
            });
            first_row = first_row
                .checked_add(rows)
                .ok_or_else(|| err("too many rows"))?;
        }
        if out.is_empty() {
            return Err(err("a weight needs at least one part"));
        }
        Ok(Self {
            format,
            total_rows: first_row,
            row_offset: 0,
            n: first_row,
            k,
            parts: out,
        })
    }

    /// Upload both streams of `host` and wrap them as a [`LinearWeights`]. A weight larger than the device's
    /// storage-binding limit is split into row ranges (multiples of 4 rows), one buffer set each.
    pub fn upload(ctx: &Context, host: &HostLinear, label: &str) -> GpuResult<Self> {
        let max = ctx.caps().max_storage_binding;
        let per_row = (4 * host.format.data_words(1, host.k))
            .max(4 * host.format.scale_words(4, host.k).div_ceil(4));
        Self::upload_split(
            ctx,
            host,
            label,
            (max / per_row).min(u32::MAX as u64) as u32,
        )
    }

    /// [`LinearWeights::upload`] with at most `max_rows` rows per part (rounded down to a multiple
    /// of 4, at least 4).
    pub fn upload_split(
        ctx: &Context,
        host: &HostLinear,
        label: &str,
        max_rows: u32,
    ) -> GpuResult<Self> {
        let max_rows = (max_rows / 4 * 4).max(4);
        let (dw, sw) = (
            host.format.data_words(1, host.k) as usize,
            host.format.scale_words(4, host.k) as usize / 4,
        );
        let mut parts = Vec::new();
        let mut r0 = 0u32;
        while r0 < host.rows {
            let rows = max_rows.min(host.rows - r0);
            let tag = if rows == host.rows {
                String::new()
            } else {
                format!(" rows {r0}..{}", r0 + rows)
            };
            let (a, b) = (r0 as usize, (r0 + rows) as usize);
            let data = ctx.upload(&format!("{label} w{tag}"), &host.data[a * dw..b * dw])?;
            let scales = if host.scales.is_empty() {
                None
            } else {
                // Q8_0 packs two block scales per word: parts start on an even block (4 rows).
                let s = if host.format == WeightFormat::Q8_0 {
                    let nb = host.k as usize / 32;
                    &host.scales[a * nb / 2..(b * nb).div_ceil(2)]
                } else {
                    &host.scales[a * sw..b * sw]
                };
                Some(ctx.upload(&format!("{label} s{tag}"), s)?)
            };
            parts.push((rows, data, scales));
            r0 += rows;
        }
        Self::from_parts(host.format, host.k, parts)
    }

    /// Rows `start .. start + count` of this weight (relative to its current view), sharing the
    /// buffers: a block of a stacked weight without a copy.
    pub fn rows(&self, start: u32, count: u32) -> GpuResult<Self> {
        if count == 0 || start as u64 + count as u64 > self.n as u64 {
            return Err(err(format!(
                "row block {start}..{} outside the weight's {} rows",
                start as u64 + count as u64,
                self.n
            )));
        }
        let mut w = self.clone();
        w.row_offset += start;
        w.n = count;
        Ok(w)
    }

    /// One weight whose rows are the rows of `weights` in order, copied on the GPU into new
    /// buffers (e.g. the depformer's per-step input projections, computed by one launch instead
    /// of one per step; the caller drops the originals). `None` when the weights cannot share
    /// one buffer set: different formats or K, a weight in several parts or viewed by rows, a
    /// Q8_0 weight with an odd number of blocks before the last (scales are packed in pairs), or
    /// a stack larger than the storage-binding limit.
    pub fn stack(
        ctx: &Context,
        label: &str,
        weights: &[&LinearWeights],
    ) -> GpuResult<Option<Self>> {
        let Some(first) = weights.first() else {
            return Ok(None);
        };
        let (format, k) = (first.format, first.k);
        let whole = |w: &&LinearWeights| {
            w.format == format
                && w.k == k
                && w.parts.len() == 1
                && w.row_offset == 0
                && w.n == w.total_rows
        };
        let even_blocks = |w: &&LinearWeights| {
            format != WeightFormat::Q8_0 || (w.n as u64 * (k as u64 / 32)).is_multiple_of(2)
        };
        let rows: u64 = weights.iter().map(|w| w.n as u64).sum();
        let last = weights.len() - 1;
        if !weights.iter().all(whole)
            || !weights[..last].iter().all(even_blocks)
            || rows > u32::MAX as u64
        {
            return Ok(None);
        }
        let rows = rows as u32;
        let (data_bytes, scale_bytes) = (
            4 * format.data_words(rows, k),
            4 * format.scale_words(rows, k),
        );
        if data_bytes.max(scale_bytes) > ctx.caps().max_storage_binding {
            return Ok(None);
        }
        let data = ctx.create_buffer(&format!("{label} w"), data_bytes, BufferUsage::Storage)?;
        let scales = if scale_bytes > 0 {
            Some(ctx.create_buffer(&format!("{label} s"), scale_bytes, BufferUsage::Storage)?)
        } else {
            None
        };
        let mut rec = Recorder::new(ctx, "stack weights");
        let (mut at_data, mut at_scale) = (0u64, 0u64);
        for w in weights {
            let part = &w.parts[0];
            let d = 4 * format.data_words(w.n, k);
            rec.copy(part.data.slice(0, d), data.slice(at_data, d));
            at_data += d;
            if let (Some(src), Some(dst)) = (&part.scales, &scales) {
                let s = 4 * format.scale_words(w.n, k);
                rec.copy(src.slice(0, s), dst.slice(at_scale, s));
                at_scale += s;
            }
        }
        rec.submit()?;
        Self::from_parts(format, k, vec![(rows, data, scales)]).map(Some)
    }

    pub fn format(&self) -> WeightFormat {
        self.format
    }
    /// Output features (rows used).
    pub fn n(&self) -> u32 {
        self.n
    }
    /// Input features.
    pub fn k(&self) -> u32 {
        self.k
    }
    /// First row used of the underlying tensor.
    pub fn row_offset(&self) -> u32 {
        self.row_offset
    }
    /// Rows of the underlying tensor.
    pub fn total_rows(&self) -> u32 {
        self.total_rows
    }
    /// Number of buffer sets (dispatches of a full-weight [`super::linear`]).
    pub fn part_count(&self) -> usize {
        self.parts.len()
    }
    /// Bytes of weight data one [`super::linear`] call reads (for bandwidth figures).
    pub fn bytes(&self) -> u64 {
        self.format.gpu_bytes(self.n, self.k)
    }
}
