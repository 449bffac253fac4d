//! Ring KV-cache append and causal sliding-window attention (`shaders/attention.wgsl`), with
//! optional fused RoPE.
//!
//! Layouts (element counts; `HD = heads·head_dim`; `Dp` = `head_dim` rounded up to a multiple of 8,
//! [`padded_head_dim`]):
//! * `qkv`: row-major `[T, row_stride]` f32, row `t` = new position `pos0 + t`, holding q, k and v
//!   (`HD` each, head `h` at columns `[h·Dh, (h+1)·Dh)`) at the offsets of [`QkvLayout`] — the
//!   fused `in_proj` output by default ([`QkvLayout::fused`]).
//! * `cache`: `[2, capacity, heads, Dp]`, K slots then V slots; position `pos` lives in slot
//!   `pos % capacity`; each head's `Dp − Dh` padding elements are written as zeros. Elements are
//!   f16 when the device runs shader-f16 (`ctx.caps().f16`), f32 otherwise: allocate
//!   [`AttnConfig::cache_bytes`] bytes (zero-filling is not needed).
//! * `out`: row-major `[T, HD]` f32.
//! * `scratch` (optional): f32 partial results for split key ranges, [`AttnConfig::scratch_bytes`].
//!
//! Semantics: the query at `pq = pos0 + t` attends to the keys at positions
//! `pk ∈ [max(0, pq + 1 − window, pos0 + T − capacity), pq]`: `0 ≤ pq − pk < window`, causal inside
//! the `T` new rows, and only positions the ring still holds (with `capacity = window` and `T > 1`
//! the first queries lose their oldest keys, as PyTorch's `RingKVCache`; `capacity ≥ window + T − 1`
//! gives the exact window). Scores `q·k/√Dh`, softmax in f32 (max subtracted), `out = Σ p·v`.
//! With [`AttnConfig::rope`] set, q and k are first rotated by interleaved RoPE at their absolute
//! positions exactly as [`crate::kernels::rope::Rope::apply`] would (k as `kv_append` writes it, q
//! as `attention` loads it), so the separate RoPE dispatch is not needed.
//!
//! Any head dimension `1..=256` works; multiples of 8 need no padding (Moshi 128, Mimi and the
//! depformer 64), others cost the padding's bandwidth.
//!
//! Dispatch: [`AttnConfig::kv_append`] — 256-invocation workgroups, one invocation per two
//! elements of the `T` new padded K and V rows. [`AttnConfig::attention_with`] — one
//! 256-invocation workgroup per (split, head, query); keys go in chunks of 256 with an online
//! softmax (one invocation scores one key, then the workgroup accumulates `p·v` as key groups ×
//! 8-dim lanes). When few (head, query) pairs meet many keys (Moshi's one query per step, 32
//! heads, 3000 keys) and a scratch buffer is given, the key range is split over several
//! workgroups and a second dispatch (`attention_combine`, one workgroup per (head, query)) merges
//! the parts.

use bytemuck::{Pod, Zeroable};

use super::linear::{
    AttnInput, KvAppend, QkvAttn, ATTN_MAX_HD, ATTN_MAX_SCORES, QA_MAX_HEAD_DIM, QA_MAX_KEYS,
    QA_MAX_ROWS,
};
use super::rope::Rope;
use crate::gpu::{Binding, Context, GpuError, GpuResult, Kernel, Recorder, Variant, View};

const SRC: &str = include_str!("../../shaders/attention.wgsl");
/// Invocations per workgroup of every entry point; also the keys per chunk (injected into the
/// WGSL as `WG`; a power of two for the shared-memory trees).
pub const WG: u32 = 256;
const _: () = assert!(WG.is_power_of_two() && MAX_HEAD_DIM <= WG);

/// The largest head dimension (q lives in `MAX_HEAD_DIM / 4` vec4 of shared memory; injected as
/// `MAX_HEAD_DIM`).
pub const MAX_HEAD_DIM: u32 = 256;
/// Workgroups the split path aims for (several per multiprocessor on big GPUs).
pub use crate::weights::estimate::SPLIT_TARGET_GROUPS;
/// Cache rows of each head are padded to a multiple of this many elements; `padded_head_dim`
/// rounds a head dimension up to it (the per-head stride of the cache). Both live with the
/// memory estimate, which sizes caches by the same rule.
pub use crate::weights::estimate::{padded_head_dim, HEAD_DIM_ALIGN};

const CONSTS: &[(&str, u32)] = &[("WG", WG), ("MAX_HEAD_DIM", MAX_HEAD_DIM)];

static KV_APPEND: Kernel = Kernel {
    name: "kv_append",
    source: SRC,
    entry: "kv_append",
    // qkv, cache, freqs
    bindings: &[Binding::Read, Binding::ReadWrite, Binding::Read],
    defines: &["KV_APPEND"],
    consts: CONSTS,
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};
static ATTENTION: Kernel = Kernel {
    name: "attention",
    source: SRC,
    entry: "attention",
    // qkv, cache, out, freqs
    bindings: &[
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
        Binding::Read,
    ],
    defines: &["ATTEND"],
    consts: CONSTS,
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};
static ATTENTION_SPLIT: Kernel = Kernel {
    name: "attention_split",
    source: SRC,
    entry: "attention",
    // qkv, cache, out, freqs, part
    bindings: &[
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
        Binding::Read,
        Binding::ReadWrite,
    ],
    defines: &["ATTEND", "SPLIT"],
    consts: CONSTS,
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};
static COMBINE: Kernel = Kernel {
    name: "attention_combine",
    source: SRC,
    entry: "attention_combine",
    bindings: &[Binding::Read, Binding::ReadWrite],
    defines: &["COMBINE"],
    consts: CONSTS,
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// The cache-precision variant: `KV16` when the cache holds f16 (only on shader-f16 devices).
fn cache_variant(kv16: bool) -> Variant {
    if kv16 {
        Variant::none().define("KV16")
    } else {
        Variant::none()
    }
}

/// The attention variant for padded head dim `dp` (the pipeline-override constant `DH`).
fn attend_variant(kv16: bool, dp: u32) -> Variant {
    cache_variant(kv16).constant("DH", dp as i64)
}

/// The kernel variants this module launches (for `tests/reflect.rs`): both cache precisions
/// where the device has shader-f16, and the padded head dims of Mimi, Moshi and the extremes.
pub fn variants(device: &[&str]) -> Vec<(&'static Kernel, Variant)> {
    let mut v = vec![(&COMBINE, Variant::none())];
    let kv16s: &[bool] = if device.contains(&"F16") {
        &[false, true]
    } else {
        &[false]
    };
    for &kv16 in kv16s {
        v.push((&KV_APPEND, cache_variant(kv16)));
        for dp in [HEAD_DIM_ALIGN, 64, 128, MAX_HEAD_DIM] {
            v.push((&ATTENTION, attend_variant(kv16, dp)));
            v.push((&ATTENTION_SPLIT, attend_variant(kv16, dp)));
        }
    }
    v
}

crate::params_struct! {
    #[derive(Clone, Copy, Pod, Zeroable, Default)]
    struct Params {
        t: u32,
        heads: u32,
        head_dim: u32,
        hd: u32,
        row_stride: u32,
        q_offset: u32,
        k_offset: u32,
        v_offset: u32,
        pos0: u32,
        capacity: u32,
        window: u32,
        splits: u32,
        chunks_per_split: u32,
        scale: f32,
        dp: u32,
        hdp: u32,
        rope: u32,
        _pad: [u32; 3],
    }
}

/// Bytes of one cache element on this device: 2 (f16) with shader-f16, else 4.
pub fn kv_elem_bytes(ctx: &Context) -> u64 {
    if ctx.caps().f16 {
        2
    } else {
        4
    }
}

/// Bytes of a ring KV cache (K and V) of `capacity` positions × `heads` × `head_dim` (padded to
/// [`padded_head_dim`]) in the device's cache precision (see [`AttnConfig::cache_bytes`] for a
/// layer that keeps an f32 cache).
pub fn kv_cache_bytes(ctx: &Context, capacity: u32, heads: u32, head_dim: u32) -> u64 {
    2 * capacity as u64 * heads as u64 * padded_head_dim(head_dim) as u64 * kv_elem_bytes(ctx)
}

/// Where q, k and v sit in each row of the `qkv` buffer (f32 elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QkvLayout {
    pub row_stride: u32,
    pub q_offset: u32,
    pub k_offset: u32,
    pub v_offset: u32,
}

impl QkvLayout {
    /// The fused `in_proj` output: row = `[q (H·Dh), k (H·Dh), v (H·Dh)]`.
    pub fn fused(heads: u32, head_dim: u32) -> Self {
        let hd = heads * head_dim;
        Self {
            row_stride: 3 * hd,
            q_offset: 0,
            k_offset: hd,
            v_offset: 2 * hd,
        }
    }
}

/// One attention layer's geometry: heads, head dimension, ring capacity, window, the `qkv`
/// row layout and the optional fused RoPE. Mimi: 8 × 64, window 250; Moshi: 32 × 128, window
/// 3000; depformer: 16 × 64, capacity 8 (positions = codebook step, reset each frame).
/// Cheap to clone (the RoPE table is a shared buffer handle).
#[derive(Clone, Debug)]
pub struct AttnConfig {
    pub heads: u32,
    pub head_dim: u32,
    /// Ring slots (positions the cache holds).
    pub capacity: u32,
    /// Keys with `0 ≤ pq − pk < window` are visible (the model's `context`).
    pub window: u32,
    pub qkv: QkvLayout,
    /// Workgroups the split path aims for when a scratch buffer is given
    /// ([`SPLIT_TARGET_GROUPS`] by default; 0 or 1 never splits).
    pub split_groups: u32,
    /// Keep the cache in f32 even where the device has shader-f16 (Mimi, whose reference runs
    /// in f32 throughout).
    pub f32_cache: bool,
    /// Interleaved RoPE fused into the cache write (k) and the query load (q), at absolute
    /// positions; its head dimension must be this layer's. `None`: q and k are used as given.
    pub rope: Option<Rope>,
}

/// The buffers of one [`AttnConfig::attention_with`] call.
#[derive(Clone, Copy, Debug)]
pub struct AttnBuffers<'a> {
    /// `[T, row_stride]` rows holding q (and the k, v already appended) — see [`QkvLayout`].
    pub qkv: View<'a>,
    /// The layer's ring cache, [`AttnConfig::cache_bytes`].
    pub cache: View<'a>,
    /// `[T, heads·head_dim]` f32 result.
    pub out: View<'a>,
    /// Optional split-key scratch ([`AttnConfig::scratch_bytes`]); `None` always uses one
    /// dispatch.
    pub scratch: Option<View<'a>>,
}

impl AttnConfig {
    /// A layer fed by the fused `in_proj` output.
    pub fn new(heads: u32, head_dim: u32, capacity: u32, window: u32) -> Self {
        Self {
            heads,
            head_dim,
            capacity,
            window,
            qkv: QkvLayout::fused(heads, head_dim),
            split_groups: SPLIT_TARGET_GROUPS,
            f32_cache: false,
            rope: None,
        }
    }

    /// The same layer with an f32 cache on every device.
    pub fn with_f32_cache(mut self) -> Self {
        self.f32_cache = true;
        self
    }

    /// The same layer with RoPE fused in (q and k rotated at their absolute positions by
    /// `rope`, whose head dimension must be this layer's; checked at launch).
    pub fn with_rope(mut self, rope: &Rope) -> Self {
        self.rope = Some(rope.clone());
        self
    }

    /// Cache elements per head (`head_dim` padded to a multiple of 8).
    pub fn padded_head_dim(&self) -> u32 {
        padded_head_dim(self.head_dim)
    }

    /// Whether this layer's cache holds f16 on `ctx`.
    pub fn kv16(&self, ctx: &Context) -> bool {
        ctx.caps().f16 && !self.f32_cache
    }

    fn hd(&self) -> u64 {
        self.heads as u64 * self.head_dim as u64
    }

    /// Elements of one cache row (all heads, padded).
    fn hdp(&self) -> u64 {
        self.heads as u64 * self.padded_head_dim() as u64
    }

    /// Bytes of this layer's KV cache on `ctx` (`[2, capacity, heads, Dp]`).
    pub fn cache_bytes(&self, ctx: &Context) -> u64 {
        let elem = if self.kv16(ctx) { 2 } else { 4 };
        crate::weights::estimate::kv_cache_bytes(self.capacity, self.heads, self.head_dim, elem)
    }

    /// Scratch bytes that let [`AttnConfig::attention_with`] split long key ranges for up to
    /// `max_t` queries per call (a smaller scratch just splits less).
    pub fn scratch_bytes(&self, max_t: u32) -> u64 {
        crate::weights::estimate::attention_split_bytes(
            self.heads,
            self.head_dim,
            self.split_groups,
            max_t,
        )
    }

    fn check(&self, kernel: &'static str, t: u32, pos0: u32) -> GpuResult<()> {
        let bad = |message: String| GpuError::Launch { kernel, message };
        let (dh, hd) = (self.head_dim, self.hd());
        if dh == 0 || dh > MAX_HEAD_DIM || self.heads == 0 {
            return Err(bad(format!(
                "head_dim {dh} must be in 1..={MAX_HEAD_DIM}, heads {} ≥ 1",
                self.heads
            )));
        }
        if let Some(r) = &self.rope {
            if r.head_dim() != dh {
                return Err(bad(format!(
                    "the RoPE table is for head_dim {}, the layer's is {dh}",
                    r.head_dim()
                )));
            }
            if pos0 as u64 + t as u64 > 1 << 24 {
                return Err(bad(format!(
                    "RoPE position {} is beyond f32's exact integers",
                    pos0 as u64 + t as u64
                )));
            }
        }
        if self.capacity < t.max(1) || self.window == 0 {
            return Err(bad(format!(
                "capacity {} must hold the {t} new rows and window {} must be ≥ 1",
                self.capacity, self.window
            )));
        }
        let q = &self.qkv;
        for (name, off) in [("q", q.q_offset), ("k", q.k_offset), ("v", q.v_offset)] {
            if off as u64 + hd > q.row_stride as u64 {
                return Err(bad(format!(
                    "{name} at offset {off} + {hd} exceeds the qkv row stride {}",
                    q.row_stride
                )));
            }
        }
        if 2 * self.capacity as u64 * self.hdp() > u32::MAX as u64
            || pos0 as u64 + t as u64 > u32::MAX as u64 / 2
            || t > 65535
            || self.heads > 65535
        {
            return Err(bad(format!(
                "sizes out of range (t {t}, pos0 {pos0}, capacity {}, heads {})",
                self.capacity, self.heads
            )));
        }
        Ok(())
    }

    fn params(&self, t: u32, pos0: u32) -> Params {
        Params {
            t,
            heads: self.heads,
            head_dim: self.head_dim,
            hd: self.hd() as u32,
            row_stride: self.qkv.row_stride,
            q_offset: self.qkv.q_offset,
            k_offset: self.qkv.k_offset,
            v_offset: self.qkv.v_offset,
            pos0,
            capacity: self.capacity,
            window: self.window,
            splits: 1,
            chunks_per_split: 1,
            scale: 1.0 / (self.head_dim as f32).sqrt(),
            dp: self.padded_head_dim(),
            hdp: self.hdp() as u32,
            rope: self.rope.is_some() as u32,
            _pad: [0; 3],
        }
    }

    /// The RoPE table's view, or `fallback` (bound but unread) without RoPE.
    fn freqs<'a>(&'a self, fallback: View<'a>) -> View<'a> {
        self.rope.as_ref().map_or(fallback, |r| r.freqs())
    }

    fn need(kernel: &'static str, name: &str, v: &View, bytes: u64) -> GpuResult<()> {
        if v.size < bytes {
            return Err(GpuError::Launch {
                kernel,
                message: format!("{name} has {} bytes, needs {bytes}", v.size),
            });
        }
        Ok(())
    }

    /// The fused form of [`AttnConfig::kv_append`] for the in-projection that produces `qkv`
    /// ([`crate::kernels::linear::LinearOutput::StoreKv`]): the same cache contents, written by
    /// the linear's own workgroups. `None` when the head dim needs cache padding (not a multiple
    /// of 8) or k / v sit at odd offsets: use [`AttnConfig::kv_append`] then.
    pub fn fused_append<'a>(
        &'a self,
        ctx: &Context,
        cache: View<'a>,
        pos0: u32,
    ) -> Option<KvAppend<'a>> {
        let q = &self.qkv;
        if self.padded_head_dim() != self.head_dim
            || !q.k_offset.is_multiple_of(2)
            || !q.v_offset.is_multiple_of(2)
        {
            return None;
        }
        Some(KvAppend {
            cache,
            freqs: self.rope.as_ref().map(|r| r.freqs()),
            k_offset: q.k_offset,
            v_offset: q.v_offset,
            hd: self.hd() as u32,
            head_dim: self.head_dim,
            capacity: self.capacity,
            pos0,
            kv16: self.kv16(ctx),
        })
    }

    /// The attention of one query at `pos0` as the fused input of the out-projection
    /// ([`crate::kernels::linear::LinearInput::Attention`], the qkv row as the linear's `x`): the
    /// same result as [`AttnConfig::attention_with`] without its dispatch. `None` unless this is
    /// a short-window layer without RoPE (the depformer): `t = 1`, a head dim that needs no
    /// padding, q at offset 0, heads × keys within the linear's limits.
    pub fn fused_input<'a>(
        &self,
        ctx: &Context,
        cache: View<'a>,
        t: u32,
        pos0: u32,
    ) -> Option<AttnInput<'a>> {
        let keys = self.window.min(self.capacity);
        let hd = self.hd();
        if t != 1
            || self.rope.is_some()
            || self.padded_head_dim() != self.head_dim
            || self.qkv.q_offset != 0
            || hd > ATTN_MAX_HD as u64
            || self.heads > 64
            || self.heads as u64 * keys as u64 > ATTN_MAX_SCORES as u64
        {
            return None;
        }
        Some(AttnInput {
            cache,
            kv16: self.kv16(ctx),
            head_dim: self.head_dim,
            capacity: self.capacity,
            window: self.window,
            pos0,
            scale: 1.0 / (self.head_dim as f32).sqrt(),
        })
    }

    /// The whole attention of `t` rows at `pos0` inside the in-projection, one workgroup per head
    /// ([`crate::kernels::linear::qkv_attention`]: q, k, v computed from the layer's input, k and
    /// v appended, the attention written): the result of the in-projection, then
    /// [`AttnConfig::kv_append`] and [`AttnConfig::attention_with`], in one launch. `None` unless
    /// the layer fits the kernel:
    /// the fused `[q, k, v]` row layout, a head dim that is a multiple of 8 up to
    /// [`QA_MAX_HEAD_DIM`], at most [`QA_MAX_ROWS`] rows and [`QA_MAX_KEYS`] visible keys. Only
    /// worth it with few heads (one workgroup each): callers opt in (Mimi).
    pub fn fused_qkv<'a>(
        &'a self,
        ctx: &Context,
        cache: View<'a>,
        t: u32,
        pos0: u32,
    ) -> Option<QkvAttn<'a>> {
        if self.qkv != QkvLayout::fused(self.heads, self.head_dim)
            || self.padded_head_dim() != self.head_dim
            || self.head_dim > QA_MAX_HEAD_DIM
            || t == 0
            || t > QA_MAX_ROWS
            || self.window.min(self.capacity) > QA_MAX_KEYS
        {
            return None;
        }
        Some(QkvAttn {
            cache,
            freqs: self.rope.as_ref().map(|r| r.freqs()),
            kv16: self.kv16(ctx),
            heads: self.heads,
            head_dim: self.head_dim,
            capacity: self.capacity,
            window: self.window,
            pos0,
            scale: 1.0 / (self.head_dim as f32).sqrt(),
        })
    }

    /// Write k (rotated when [`AttnConfig::rope`] is set) and v of the `t` rows of `qkv`
    /// (positions `pos0..pos0+t`) into their ring slots.
    pub fn kv_append(
        &self,
        rec: &mut Recorder,
        qkv: View,
        cache: View,
        t: u32,
        pos0: u32,
    ) -> GpuResult<()> {
        self.check(KV_APPEND.name, t, pos0)?;
        let ctx = rec.ctx();
        Self::need(KV_APPEND.name, "cache", &cache, self.cache_bytes(ctx))?;
        Self::need(
            KV_APPEND.name,
            "qkv",
            &qkv,
            t as u64 * self.qkv.row_stride as u64 * 4,
        )?;
        let p = self.params(t, pos0);
        let groups = super::grid_1d(
            (t as u64 * self.hdp()).div_ceil(WG as u64) as u32,
            ctx.caps().max_workgroups_per_dimension,
        );
        rec.launch(
            &KV_APPEND,
            &cache_variant(self.kv16(ctx)),
            &[qkv, cache, self.freqs(qkv)],
            &p,
            groups,
        )
    }

    /// Attention of the `t` query rows of `bufs.qkv` (positions `pos0..pos0+t`, q rotated when
    /// [`AttnConfig::rope`] is set) over the ring `bufs.cache`, which must already hold their own
    /// keys ([`AttnConfig::kv_append`] first). `bufs.out` is `[t, heads·head_dim]`. With
    /// `bufs.scratch`, long key ranges are split over more workgroups (two dispatches); `None`
    /// always uses one dispatch.
    pub fn attention_with(
        &self,
        rec: &mut Recorder,
        bufs: &AttnBuffers,
        t: u32,
        pos0: u32,
    ) -> GpuResult<()> {
        let AttnBuffers {
            qkv,
            cache,
            out,
            scratch,
        } = *bufs;
        self.check(ATTENTION.name, t, pos0)?;
        let ctx = rec.ctx();
        Self::need(ATTENTION.name, "cache", &cache, self.cache_bytes(ctx))?;
        Self::need(
            ATTENTION.name,
            "qkv",
            &qkv,
            t as u64 * self.qkv.row_stride as u64 * 4,
        )?;
        Self::need(ATTENTION.name, "out", &out, t as u64 * self.hd() * 4)?;
        let mut p = self.params(t, pos0);
        // Most keys any query sees, in chunks of WG.
        let max_keys = (self.window as u64)
            .min(self.capacity as u64)
            .min(pos0 as u64 + t as u64);
        let chunks = max_keys.div_ceil(WG as u64).max(1) as u32;
        let pairs = self.heads * t;
        let mut splits = 1u32;
        if let Some(s) = &scratch {
            let fit = s.size / ((self.padded_head_dim() as u64 + 2) * 4 * pairs.max(1) as u64);
            splits = self
                .split_groups
                .max(1)
                .div_ceil(pairs.max(1))
                .min(chunks)
                .min(fit.min(u32::MAX as u64) as u32);
        }
        let freqs = self.freqs(qkv);
        let variant = attend_variant(self.kv16(ctx), self.padded_head_dim());
        // For profiles: the queries and the keys and values in range, not the whole ring.
        let elem = if self.kv16(ctx) { 2 } else { 4 };
        let reads = t as u64 * self.hd() * 4 + 2 * max_keys * self.hdp() * elem;
        rec.note_reads(reads);
        if splits <= 1 {
            p.chunks_per_split = chunks;
            return rec.launch(
                &ATTENTION,
                &variant,
                &[qkv, cache, out, freqs],
                &p,
                [1, self.heads, t],
            );
        }
        let cps = chunks.div_ceil(splits);
        splits = chunks.div_ceil(cps);
        p.splits = splits;
        p.chunks_per_split = cps;
        let Some(scratch) = scratch else {
            return Err(GpuError::Launch {
                kernel: ATTENTION_SPLIT.name,
                message: "split without a scratch buffer".into(),
            });
        };
        rec.launch(
            &ATTENTION_SPLIT,
            &variant,
            &[qkv, cache, out, freqs, scratch],
            &p,
            [splits, self.heads, t],
        )?;
        rec.launch(
            &COMBINE,
            &Variant::none(),
            &[scratch, out],
            &p,
            [self.heads, t, 1],
        )
    }
}

/// Plain Rust reference (f64) for the tests: keys and values by absolute position, no ring.
pub mod reference {
    use super::AttnConfig;

    /// `k_hist[pos]`, `v_hist[pos]`: the `[H·Dh]` key/value rows of every position so far (up to
    /// `pos0 + t`), `q`: `[t, H·Dh]`. Returns `[t, H·Dh]`.
    pub fn attention(
        cfg: &AttnConfig,
        q: &[f32],
        k_hist: &[Vec<f32>],
        v_hist: &[Vec<f32>],
        t: usize,
        pos0: usize,
    ) -> Vec<f32> {
        let (h_n, dh) = (cfg.heads as usize, cfg.head_dim as usize);
        let hd = h_n * dh;
        let end = pos0 + t;
        let scale = 1.0 / (dh as f64).sqrt();
        let mut out = vec![0f32; t * hd];
        for ti in 0..t {
            let pq = pos0 + ti;
            let lo = (pq + 1)
                .saturating_sub(cfg.window as usize)
                .max(end.saturating_sub(cfg.capacity as usize));
            for h in 0..h_n {
                let qv = &q[ti * hd + h * dh..ti * hd + h * dh + dh];
                let scores: Vec<f64> = (lo..=pq)
                    .map(|pk| {
                        let kv = &k_hist[pk][h * dh..h * dh + dh];
                        qv.iter()
                            .zip(kv)
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..dh {
                    let o: f64 = (lo..=pq)
                        .zip(&e)
                        .map(|(pk, w)| w * v_hist[pk][h * dh + d] as f64)
                        .sum();
                    out[ti * hd + h * dh + d] = (o / sum) as f32;
                }
            }
        }
        out
    }

    /// Round to f16 and back (what an f16 KV cache stores).
    pub fn round_f16(x: &[f32]) -> Vec<f32> {
        x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
    }
}
