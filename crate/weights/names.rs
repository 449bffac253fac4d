//! Name maps: every published naming of the Moshi LM (spec §4.8) presented under one canonical
//! set of names and shapes, so that the LM code never branches on the file format.
//!
//! Canonical names are PyTorch's published names (spec §2.7) with two changes:
//! * the depformer attention is asked per weight set `j`:
//!   `depformer.layers.{l}.self_attn.in_projs.{j}.weight` `[3·Dd, Dd]` and
//!   `depformer.layers.{l}.self_attn.out_projs.{j}.weight` `[Dd, Dd]` (a PyTorch file's stacked
//!   `in_proj_weight [n·3·Dd, Dd]` serves row block `j`, without a copy of the rest);
//! * MLX-quantized weights keep their companions: `X.scales` / `X.biases` next to `X.weight`
//!   (`in_proj_scales` next to the temporal `in_proj_weight`; see [`super::companion`]);
//!   PyTorch int8 weights their `X.weight_scb` (`[rows]`), named and split like the weight
//!   (`in_proj_weight_scb`, `in_projs.{j}.weight_scb`; see [`super::scb_companion`]).
//!
//! Norms are `X.alpha` `[1, 1, D]` in every format (MLX stores `X.weight` `[D]`).
//!
//! MLX (`depformer.slices.{k}`) and candle (`depformer.{k}`) store the depformer per codebook
//! slice `k`; slice `k` uses weight set `j = schedule[k]` (identity without a
//! `depformer_weights_per_step_schedule`):
//! `linear_in` → `depformer_in.{j}`, `linear_out` → `linears.{k}`, `emb` → `depformer_text_emb`
//! (k = 0) or `depformer_emb.{k−1}`, the slice's attention and gating → weight set `j`, its norms
//! → the shared `depformer.layers.{l}.norm{1,2}.alpha` (copied into every slice by the
//! converters). Several stored tensors may thus serve one canonical tensor (the norm copies,
//! slices sharing a weight set): the first is read and all count as used.

use std::collections::BTreeMap;

use super::TensorEntry;

/// Which published naming a checkpoint uses (detected from its tensor names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// Kyutai's PyTorch names (spec §2.7); also the split `in_projs.{i}` form of newer packages.
    PyTorch,
    /// `moshi_mlx` names (spec §4.4): `audio_embs`, `depformer.slices.{k}`, norms `[D]`.
    Mlx,
    /// candle names (spec §4.6): PyTorch temporal names, `depformer.{k}` slices.
    Candle,
}

impl Naming {
    pub fn name(self) -> &'static str {
        match self {
            Self::PyTorch => "PyTorch",
            Self::Mlx => "MLX",
            Self::Candle => "candle",
        }
    }

    /// The naming of a checkpoint holding tensors `names`: MLX if any MLX-only name is present
    /// (`audio_embs.*`, `depformer.slices.*`), candle if any name starts with `depformer.{digit}`,
    /// PyTorch otherwise.
    pub fn detect<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut candle = false;
        for n in names {
            if n.starts_with("audio_embs.") || n.starts_with("depformer.slices.") {
                return Self::Mlx;
            }
            if let Some(r) = n.strip_prefix("depformer.") {
                candle |= r.starts_with(|c: char| c.is_ascii_digit());
            }
        }
        if candle {
            Self::Candle
        } else {
            Self::PyTorch
        }
    }
}

/// How a canonical tensor is made from a stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transform {
    /// As stored.
    Identity,
    /// Rows `index·R/count .. (index+1)·R/count` of a stored `[R, …]` tensor.
    RowBlock { index: usize, count: usize },
    /// Same bytes, another shape (MLX norms `[D]` → `[1, 1, D]`).
    Reshape(Vec<usize>),
}

impl Transform {
    /// The canonical shape of a stored tensor of shape `stored`.
    pub fn shape(&self, stored: &[usize]) -> Vec<usize> {
        match self {
            Self::Identity => stored.to_vec(),
            Self::RowBlock { count, .. } => {
                let mut s = stored.to_vec();
                if let Some(r) = s.first_mut() {
                    *r /= count;
                }
                s
            }
            Self::Reshape(s) => s.clone(),
        }
    }

    /// The bytes this reads of a stored tensor of `len` bytes: (offset, length).
    pub fn range(&self, len: u64) -> (u64, u64) {
        match self {
            Self::RowBlock { index, count } => {
                let block = len / *count as u64;
                (*index as u64 * block, block)
            }
            _ => (0, len),
        }
    }
}

/// One stored tensor serving a canonical one.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub name: String,
    pub transform: Transform,
}

/// The canonical names and shapes of one checkpoint.
#[derive(Debug, Clone)]
pub struct NameMap {
    pub naming: Naming,
    /// Canonical name → stored tensors (the first is read; the others are copies).
    pub map: BTreeMap<String, Vec<Stored>>,
}

fn num(s: &str) -> Option<usize> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `prefix{n}.rest` → `(n, rest)`.
fn indexed<'a>(name: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let r = name.strip_prefix(prefix)?;
    let (n, rest) = r.split_once('.')?;
    Some((num(n)?, rest))
}

fn norm_shape(shape: &[usize]) -> Transform {
    match shape {
        [d] => Transform::Reshape(vec![1, 1, *d]),
        _ => Transform::Identity,
    }
}

/// PyTorch names (published stacked form and the split form).
fn pytorch(name: &str, shape: &[usize]) -> Vec<(String, Transform)> {
    let id = || vec![(name.to_string(), Transform::Identity)];
    if let Some((l, rest)) = indexed(name, "depformer.layers.") {
        let Some(attn) = rest.strip_prefix("self_attn.") else {
            return id();
        };
        let (rows, cols) = match shape {
            [r, c] if *c > 0 => (*r, *c),
            _ => return id(),
        };
        let (kind, per) = match attn {
            "in_proj_weight" | "in_proj.weight" => ("in_projs", cols.saturating_mul(3)),
            "out_proj.weight" => ("out_projs", cols),
            _ => return id(),
        };
        if rows == 0 || !rows.is_multiple_of(per) {
            return id();
        }
        let count = rows / per;
        return (0..count)
            .map(|j| {
                (
                    format!("depformer.layers.{l}.self_attn.{kind}.{j}.weight"),
                    Transform::RowBlock { index: j, count },
                )
            })
            .collect();
    }
    if let Some((l, rest)) = indexed(name, "transformer.layers.") {
        let canon = match rest {
            "self_attn.in_projs.0.weight" | "self_attn.in_proj.weight" => {
                "self_attn.in_proj_weight"
            }
            "self_attn.out_projs.0.weight" => "self_attn.out_proj.weight",
            _ => return id(),
        };
        return vec![(
            format!("transformer.layers.{l}.{canon}"),
            Transform::Identity,
        )];
    }
    id()
}

/// A depformer slice `k`'s tensor `rest` (MLX `depformer.slices.{k}.rest`, candle
/// `depformer.{k}.rest`).
fn slice(
    k: usize,
    rest: &str,
    shape: &[usize],
    schedule: Option<&[usize]>,
) -> Option<(String, Transform)> {
    let j = match schedule {
        Some(s) => *s.get(k)?,
        None => k,
    };
    let id = |n: String| Some((n, Transform::Identity));
    if let Some(s) = rest.strip_prefix("linear_in.") {
        return id(format!("depformer_in.{j}.{s}"));
    }
    if let Some(s) = rest.strip_prefix("linear_out.") {
        return id(format!("linears.{k}.{s}"));
    }
    if let Some(s) = rest.strip_prefix("emb.") {
        return id(if k == 0 {
            format!("depformer_text_emb.{s}")
        } else {
            format!("depformer_emb.{}.{s}", k - 1)
        });
    }
    let (l, r) = indexed(rest, "transformer.layers.")?;
    let p = format!("depformer.layers.{l}");
    if let Some(s) = r.strip_prefix("self_attn.in_proj.") {
        return id(format!("{p}.self_attn.in_projs.{j}.{s}"));
    }
    if r == "self_attn.in_proj_weight" {
        return id(format!("{p}.self_attn.in_projs.{j}.weight"));
    }
    if let Some(s) = r.strip_prefix("self_attn.out_proj.") {
        return id(format!("{p}.self_attn.out_projs.{j}.{s}"));
    }
    if let Some(s) = r.strip_prefix("gating.") {
        return id(format!("{p}.gating.{j}.{s}"));
    }
    for n in ["norm1", "norm2"] {
        if r == format!("{n}.weight") {
            return Some((format!("{p}.{n}.alpha"), norm_shape(shape)));
        }
        if r == format!("{n}.alpha") {
            return id(format!("{p}.{n}.alpha"));
        }
    }
    None
}

/// MLX names. `layer_norm`: the norms have biases (LayerNorm), so `norm.weight` stays as is.
fn mlx(
    name: &str,
    shape: &[usize],
    schedule: Option<&[usize]>,
    layer_norm: bool,
) -> (String, Transform) {
    let id = || (name.to_string(), Transform::Identity);
    if layer_norm
        && (name.ends_with("norm.weight")
            || name.ends_with("norm1.weight")
            || name.ends_with("norm2.weight"))
    {
        return id();
    }
    if name == "out_norm.weight" {
        return ("out_norm.alpha".into(), norm_shape(shape));
    }
    if let Some((k, rest)) = indexed(name, "audio_embs.") {
        return (format!("emb.{k}.{rest}"), Transform::Identity);
    }
    if let Some((k, rest)) = indexed(name, "depformer.slices.") {
        return slice(k, rest, shape, schedule).unwrap_or_else(id);
    }
    if let Some((l, rest)) = indexed(name, "transformer.layers.") {
        let p = format!("transformer.layers.{l}");
        for n in ["norm1", "norm2"] {
            if rest == format!("{n}.weight") {
                return (format!("{p}.{n}.alpha"), norm_shape(shape));
            }
        }
        if let Some(s) = rest.strip_prefix("self_attn.in_proj.") {
            return (format!("{p}.self_attn.in_proj_{s}"), Transform::Identity);
        }
    }
    id()
}

/// The canonical tensors a stored tensor `name` of shape `shape` provides (RMSNorm models).
pub fn to_canonical(
    naming: Naming,
    name: &str,
    shape: &[usize],
    schedule: Option<&[usize]>,
) -> Vec<(String, Transform)> {
    canonical(naming, name, shape, schedule, false)
}

/// [`to_canonical`]; `layer_norm`: the file's norms are LayerNorms (`X.weight` + `X.bias`),
/// which keep their names in every format.
fn canonical(
    naming: Naming,
    name: &str,
    shape: &[usize],
    schedule: Option<&[usize]>,
    layer_norm: bool,
) -> Vec<(String, Transform)> {
    match naming {
        Naming::PyTorch => pytorch(name, shape),
        Naming::Mlx => vec![mlx(name, shape, schedule, layer_norm)],
        Naming::Candle => {
            if let Some((k, rest)) = indexed(name, "depformer.") {
                if let Some(c) = slice(k, rest, shape, schedule) {
                    return vec![c];
                }
                return vec![(name.to_string(), Transform::Identity)];
            }
            pytorch(name, shape)
        }
    }
}

/// Where a canonical tensor would be stored in `naming` (for error messages; `None` when the
/// name is stored as is).
pub fn stored_hint(naming: Naming, canonical: &str, schedule: Option<&[usize]>) -> Option<String> {
    let slice_of = |j: usize| -> usize {
        match schedule {
            Some(s) => s.iter().position(|&x| x == j).unwrap_or(j),
            None => j,
        }
    };
    let sp = |k: usize| match naming {
        Naming::Mlx => format!("depformer.slices.{k}"),
        _ => format!("depformer.{k}"),
    };
    let hint = match naming {
        Naming::PyTorch => {
            let (l, rest) = indexed(canonical, "depformer.layers.")?;
            let r = rest.strip_prefix("self_attn.")?;
            let (kind, j) = indexed(r, "in_projs.")
                .map(|(j, _)| ("in_proj_weight", j))
                .or_else(|| indexed(r, "out_projs.").map(|(j, _)| ("out_proj.weight", j)))?;
            format!("row block {j} of depformer.layers.{l}.self_attn.{kind}")
        }
        Naming::Mlx | Naming::Candle => {
            let mlx = naming == Naming::Mlx;
            if let Some((j, s)) = indexed(canonical, "depformer_in.") {
                format!("{}.linear_in.{s}", sp(slice_of(j)))
            } else if let Some((k, s)) = indexed(canonical, "linears.") {
                format!("{}.linear_out.{s}", sp(k))
            } else if let Some(s) = canonical.strip_prefix("depformer_text_emb.") {
                format!("{}.emb.{s}", sp(0))
            } else if let Some((k, s)) = indexed(canonical, "depformer_emb.") {
                format!("{}.emb.{s}", sp(k + 1))
            } else if let Some((l, rest)) = indexed(canonical, "depformer.layers.") {
                let t = |k: usize, r: &str| format!("{}.transformer.layers.{l}.{r}", sp(k));
                if let Some((j, s)) = rest
                    .strip_prefix("self_attn.in_projs.")
                    .and_then(|r| indexed(r, ""))
                {
                    let s = if mlx {
                        format!("in_proj.{s}")
                    } else {
                        "in_proj_weight".to_string()
                    };
                    t(slice_of(j), &format!("self_attn.{s}"))
                } else if let Some((j, s)) = rest
                    .strip_prefix("self_attn.out_projs.")
                    .and_then(|r| indexed(r, ""))
                {
                    t(slice_of(j), &format!("self_attn.out_proj.{s}"))
                } else if let Some((j, s)) = indexed(rest, "gating.") {
                    t(slice_of(j), &format!("gating.{s}"))
                } else if let Some(n) = rest.strip_suffix(".alpha") {
                    t(0, &format!("{n}.{}", if mlx { "weight" } else { "alpha" }))
                } else {
                    return None;
                }
            } else if !mlx {
                return None;
            } else if let Some((k, s)) = indexed(canonical, "emb.") {
                format!("audio_embs.{k}.{s}")
            } else if canonical == "out_norm.alpha" {
                "out_norm.weight".into()
            } else if let Some((l, rest)) = indexed(canonical, "transformer.layers.") {
                if let Some(n) = rest.strip_suffix(".alpha") {
                    format!("transformer.layers.{l}.{n}.weight")
                } else if let Some(s) = rest.strip_prefix("self_attn.in_proj_") {
                    format!("transformer.layers.{l}.self_attn.in_proj.{s}")
                } else {
                    return None;
                }
            } else {
                return None;
            }
        }
    };
    (hint != canonical).then_some(hint)
}

impl NameMap {
    /// The canonical names of the stored tensors `entries` in `naming`. Fails when copies of one
    /// canonical tensor disagree in dtype or shape.
    pub fn build(
        naming: Naming,
        entries: &BTreeMap<String, TensorEntry>,
        schedule: Option<&[usize]>,
    ) -> Result<Self, String> {
        let mut map: BTreeMap<String, Vec<Stored>> = BTreeMap::new();
        // Numeric order of slice indices, so that slice 0's copy is the one read.
        let mut names: Vec<&String> = entries.keys().collect();
        names.sort_by_key(|n| natural_key(n));
        let layer_norm = entries.contains_key("out_norm.bias");
        for name in names {
            let e = &entries[name];
            for (canon, transform) in scb_canonical(naming, name, entries, schedule)
                .unwrap_or_else(|| canonical(naming, name, &e.shape, schedule, layer_norm))
            {
                let list = map.entry(canon.clone()).or_default();
                if let Some(first) = list.first() {
                    let f = &entries[&first.name];
                    let (a, b) = (first.transform.shape(&f.shape), transform.shape(&e.shape));
                    if f.dtype != e.dtype || a != b {
                        return Err(format!(
                            "tensors '{}' ({} {a:?}) and '{name}' ({} {b:?}) both stand for '{canon}' but differ",
                            first.name,
                            f.dtype.name(),
                            e.dtype.name()
                        ));
                    }
                }
                list.push(Stored {
                    name: name.clone(),
                    transform,
                });
            }
        }
        Ok(Self { naming, map })
    }
}

/// A PyTorch int8 `X_scb` (bitsandbytes row absmax, `[rows]`) follows its weight `X`: the
/// canonical names of `X` with `_scb` appended, with the same row blocks (moshi's load hook
/// splits a stacked `in_proj_weight_scb` like `in_proj_weight`). `None` when `name` is not an
/// `_scb` beside a stored weight.
fn scb_canonical(
    naming: Naming,
    name: &str,
    entries: &BTreeMap<String, TensorEntry>,
    schedule: Option<&[usize]>,
) -> Option<Vec<(String, Transform)>> {
    if naming == Naming::Mlx {
        return None;
    }
    let base = name.strip_suffix("_scb")?;
    let w = entries.get(base)?;
    Some(
        canonical(naming, base, &w.shape, schedule, false)
            .into_iter()
            .map(|(c, t)| (format!("{c}_scb"), t))
            .collect(),
    )
}

/// Sort key comparing runs of digits numerically (`slices.2` before `slices.10`).
fn natural_key(s: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                out.push((
                    std::mem::take(&mut text),
                    digits.parse().unwrap_or(u64::MAX),
                ));
                digits.clear();
            }
            text.push(c);
        }
    }
    out.push((text, digits.parse().unwrap_or(0)));
    out
}
