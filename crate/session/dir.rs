//! A model directory as downloaded from Kyutai's Hugging Face repos (spec §4.1): an optional
//! `config.json` (LM keys at the top level, `moshi_name`, `mimi_name`, `tokenizer_name`, an
//! optional `"mimi"` key) and the files it names, or the published names when it has none.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::weights::WeightsError;

/// Published file names (the September 2024 repos have no `config.json`).
pub const LM_NAMES: &[&str] = crate::weights::LM_FILE_NAMES;
pub const MIMI_NAMES: &[&str] = &[
    "tokenizer-e351c8d8-checkpoint125.safetensors",
    "mimi.safetensors",
];
pub const TOKENIZER_NAMES: &[&str] = &["tokenizer_spm_32k_3.model", "tokenizer.model"];

/// What a model directory holds.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub dir: PathBuf,
    /// The text of `config.json`, if there is one.
    pub config: Option<String>,
    /// The LM weights, if the directory holds a Moshi model (else it is Mimi only).
    pub lm: Option<PathBuf>,
    pub mimi: PathBuf,
    pub tokenizer: Option<PathBuf>,
}

fn io(file: &Path, e: impl std::fmt::Display) -> WeightsError {
    WeightsError::Io {
        file: file.display().to_string(),
        message: e.to_string(),
    }
}

/// The file named by `key` in the config, or the first published name that exists.
fn pick(
    dir: &Path,
    cfg: Option<&Value>,
    key: &str,
    defaults: &[&str],
) -> Result<Option<PathBuf>, WeightsError> {
    if let Some(v) = cfg.and_then(|c| c.get(key)) {
        let name = v.as_str().ok_or_else(|| {
            WeightsError::Config(format!(
                "{}: \"{key}\" must be a file name, got {v}",
                dir.join("config.json").display()
            ))
        })?;
        let p = dir.join(name);
        if !p.is_file() {
            return Err(io(
                &p,
                format!("named by \"{key}\" in config.json but not found"),
            ));
        }
        return Ok(Some(p));
    }
    Ok(defaults.iter().map(|n| dir.join(n)).find(|p| p.is_file()))
}

impl ModelDir {
    /// Look at a directory: read `config.json` (a malformed one is an error naming it; only a
    /// missing one means the published config) and find the weight and tokenizer files.
    pub fn open(dir: &Path) -> Result<Self, WeightsError> {
        if !dir.is_dir() {
            return Err(io(
                dir,
                "is not a directory (pass the folder of a downloaded model)",
            ));
        }
        let cfg_path = dir.join("config.json");
        let config = match std::fs::read_to_string(&cfg_path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&cfg_path, e)),
        };
        let value = match &config {
            Some(t) => Some(serde_json::from_str::<Value>(t).map_err(|e| {
                WeightsError::Config(format!("{}: not valid JSON: {e}", cfg_path.display()))
            })?),
            None => None,
        };
        if value.as_ref().is_some_and(|v| !v.is_object()) {
            return Err(WeightsError::Config(format!(
                "{}: not a JSON object",
                cfg_path.display()
            )));
        }
        let lm = pick(dir, value.as_ref(), "moshi_name", LM_NAMES)?;
        let mimi = pick(dir, value.as_ref(), "mimi_name", MIMI_NAMES)?;
        let tokenizer = pick(dir, value.as_ref(), "tokenizer_name", TOKENIZER_NAMES)?;
        // A directory with only Mimi weights under the LM's name is the Mimi loopback (the
        // codec's own fixtures keep them in `model.safetensors`).
        let (lm, mimi) = match (lm, mimi) {
            (lm, Some(m)) => (lm, m),
            (Some(l), None) => (None, l),
            (None, None) => {
                return Err(io(
                    dir,
                    format!(
                        "holds no model weights (looked for {:?} and {:?})",
                        LM_NAMES, MIMI_NAMES
                    ),
                ))
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            lm,
            mimi,
            tokenizer,
        })
    }
}
