//! The user's sampling settings over the model's defaults: the one place where the defaults
//! (`Sampling::default`, PyTorch `LMGen`'s, then the model's `lm_gen_config` through
//! [`super::ModelConfig::sampling`]) meet what the CLI flags and the page's options change.

use serde::Deserialize;

use super::Sampling;

/// Sampling settings a front end gives; each `None` keeps the model's value. The JS API's names
/// (`greedy`, `seed`, `textTemperature`, `textTopK`, `audioTemperature`, `audioTopK`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SamplingSettings {
    /// Always the likeliest token (both temperatures 0).
    pub greedy: Option<bool>,
    pub seed: Option<u32>,
    pub text_temperature: Option<f32>,
    pub text_top_k: Option<u32>,
    pub audio_temperature: Option<f32>,
    pub audio_top_k: Option<u32>,
}

impl From<Sampling> for SamplingSettings {
    /// Every value given: the model's defaults do not matter.
    fn from(s: Sampling) -> Self {
        Self {
            greedy: None,
            seed: Some(s.seed),
            text_temperature: Some(s.text_temperature),
            text_top_k: Some(s.text_top_k),
            audio_temperature: Some(s.audio_temperature),
            audio_top_k: Some(s.audio_top_k),
        }
    }
}

impl SamplingSettings {
    /// `base` with these settings applied. A temperature must be a finite number ≥ 0 and a
    /// top-k at least 1; the error names the setting.
    pub fn apply(&self, base: Sampling) -> Result<Sampling, String> {
        let mut s = base;
        for (name, v) in [
            ("textTemperature", self.text_temperature),
            ("audioTemperature", self.audio_temperature),
        ] {
            if let Some(t) = v.filter(|t| !(t.is_finite() && *t >= 0.0)) {
                return Err(format!("{name} must be a number ≥ 0, got {t}"));
            }
        }
        for (name, v) in [
            ("textTopK", self.text_top_k),
            ("audioTopK", self.audio_top_k),
        ] {
            if v == Some(0) {
                return Err(format!("{name} must be at least 1, got 0"));
            }
        }
        s.text_temperature = self.text_temperature.unwrap_or(s.text_temperature);
        s.audio_temperature = self.audio_temperature.unwrap_or(s.audio_temperature);
        s.text_top_k = self.text_top_k.unwrap_or(s.text_top_k);
        s.audio_top_k = self.audio_top_k.unwrap_or(s.audio_top_k);
        s.seed = self.seed.unwrap_or(s.seed);
        if self.greedy == Some(true) {
            s.text_temperature = 0.0;
            s.audio_temperature = 0.0;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_override_the_model() {
        let model = Sampling {
            text_temperature: 0.5,
            ..Sampling::default()
        };
        assert_eq!(SamplingSettings::default().apply(model), Ok(model));
        let s = SamplingSettings {
            audio_top_k: Some(10),
            seed: Some(3),
            ..Default::default()
        }
        .apply(model)
        .unwrap();
        assert_eq!((s.text_temperature, s.audio_top_k, s.seed), (0.5, 10, 3));
        let g = SamplingSettings {
            greedy: Some(true),
            text_temperature: Some(1.0),
            ..Default::default()
        };
        assert_eq!(g.apply(model).unwrap().text_temperature, 0.0);
        let all = SamplingSettings::from(Sampling::greedy());
        assert_eq!(all.apply(model), Ok(Sampling::greedy()));
        let bad = SamplingSettings {
            audio_temperature: Some(-1.0),
            ..Default::default()
        };
        assert!(bad.apply(model).unwrap_err().contains("audioTemperature"));
        let bad = SamplingSettings {
            text_top_k: Some(0),
            ..Default::default()
        };
        assert!(bad.apply(model).unwrap_err().contains("textTopK"));
    }
}
