//! Hibiki's conditioning (PyPI moshi `conditioners`): each `lut` conditioner maps its value
//! (`"very_good"`, …; the `noop` tokenizer's index in `possible_values`) to a row of its
//! embedding `embed.weight [n_bins + 1, lut_dim]`, projected by `output_proj.weight
//! [dim, lut_dim]` (no bias); the fuser sums every conditioner's vector into the LM input
//! (`fuser.sum`). The vector is constant for a stream, so it is computed here once per lane, on
//! the host in f32, and gathered as one more embedding row at every step.

use super::config::LmConfig;
use crate::nn::Weights;
use crate::weights::WeightsError;

/// The condition of the guided lane (`run_inference.get_condition_tensors` for Hibiki).
pub const CONDITIONED: &str = "very_good";
/// The negative condition of the classifier-free guidance lane.
pub const NEGATIVE: &str = "very_bad";

/// `[lanes.len(), dim]` row-major: the summed condition vector of each lane's value, or `None`
/// when the model has no conditioners. Random weights give zero vectors.
pub fn lane_conditions(
    cfg: &LmConfig,
    w: &Weights,
    lanes: &[&str],
) -> crate::Result<Option<Vec<f32>>> {
    if !cfg.conditioned() {
        return Ok(None);
    }
    let d = cfg.dim;
    let mut out = vec![0f32; lanes.len() * d];
    let sum = cfg
        .fuser
        .as_ref()
        .map(|f| f.sum.clone())
        .unwrap_or_default();
    for name in &sum {
        let Some(lut) = cfg.conditioners.get(name).and_then(|c| c.lut.as_ref()) else {
            continue;
        };
        let p = format!("condition_provider.conditioners.{name}");
        let rows = lut.n_bins + 1;
        let embed = w.values(&format!("{p}.embed.weight"), &[rows, lut.dim], 0.0)?;
        let proj = w.values(&format!("{p}.output_proj.weight"), &[d, lut.dim], 0.0)?;
        // Read so that the checkpoint's use check counts it: it only replaces a missing value,
        // and every lane here has one.
        w.values(&format!("{p}.learnt_padding"), &[1, 1, d], 0.0)?;
        let values = lut.possible_values.as_deref().unwrap_or_default();
        for (lane, value) in lanes.iter().enumerate() {
            let Some(idx) = values.iter().position(|v| v == value) else {
                return Err(WeightsError::Config(format!(
                    "config.json: key \"conditioners.{name}.lut.possible_values\" does not list \"{value}\", which Kyutai's Hibiki procedure asks for"
                ))
                .into());
            };
            let e = &embed[idx * lut.dim..(idx + 1) * lut.dim];
            for (j, o) in out[lane * d..(lane + 1) * d].iter_mut().enumerate() {
                let row = &proj[j * lut.dim..(j + 1) * lut.dim];
                *o += row.iter().zip(e).map(|(a, b)| a * b).sum::<f32>();
            }
        }
    }
    Ok(Some(out))
}
