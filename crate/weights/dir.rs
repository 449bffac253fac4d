//! A model directory as published on Hugging Face (spec §4.1): an optional `config.json`, the LM
//! checkpoint under one of its published names, Mimi and the SentencePiece model (native).

use std::path::{Path, PathBuf};

use super::{
    config_file_name, schedule_from_config, Checkpoint, WeightsError, CONFIG_FILE_KEYS,
    LM_FILE_NAMES, MIMI_FILE_NAME, TOKENIZER_FILE_NAME,
};

/// The files of one model directory.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    /// `config.json`, when there is one (absent: the Moshi 7B config, spec §2.1).
    pub config: Option<PathBuf>,
    /// Its parsed contents (the LM config keys plus `moshi_name`, `mimi_name`, …).
    pub config_json: Option<serde_json::Value>,
    /// The LM checkpoint.
    pub lm: PathBuf,
    /// Other LM checkpoints found under published names but not chosen.
    pub lm_others: Vec<PathBuf>,
    pub mimi: Option<PathBuf>,
    pub tokenizer: Option<PathBuf>,
}

fn cfg_err(m: String) -> WeightsError {
    WeightsError::Config(m)
}

impl ModelFiles {
    /// Find the files of `path`: a model directory, or an LM checkpoint file (whose directory
    /// holds the rest). The LM file is `config.json`'s `moshi_name` when given, else the first of
    /// [`LM_FILE_NAMES`] present; Mimi is `mimi_name` or [`MIMI_FILE_NAME`]; the tokenizer
    /// `tokenizer_name` or [`TOKENIZER_FILE_NAME`].
    pub fn resolve(path: &Path) -> Result<Self, WeightsError> {
        let (dir, lm_file) = if path.is_file() {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (dir, Some(path.to_path_buf()))
        } else if path.is_dir() {
            (path.to_path_buf(), None)
        } else {
            return Err(cfg_err(format!(
                "{}: no such model directory or file",
                path.display()
            )));
        };
        let config = Some(dir.join("config.json")).filter(|p| p.is_file());
        let config_json = match &config {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| WeightsError::Io {
                    file: p.display().to_string(),
                    message: e.to_string(),
                })?;
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| cfg_err(format!("{}: not valid JSON: {e}", p.display())))?;
                if !v.is_object() {
                    return Err(cfg_err(format!("{}: not a JSON object", p.display())));
                }
                Some(v)
            }
            None => None,
        };
        // Every file the config names is checked before any is looked for.
        let value = |key: &str| -> Result<Option<&str>, WeightsError> {
            match config_json.as_ref().and_then(|c| c.get(key)) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v.as_str().map(Some).ok_or_else(|| {
                    cfg_err(format!("config.json: '{key}' is {v}, expected a file name"))
                }),
            }
        };
        for key in CONFIG_FILE_KEYS {
            if let Some(s) = value(key)? {
                config_file_name(key, s)?;
            }
        }
        // A file named by the config (configs may say `hf://…/name`: its last part).
        let named = |key: &str| -> Result<Option<PathBuf>, WeightsError> {
            let Some(s) = value(key)? else {
                return Ok(None);
            };
            let name = config_file_name(key, s)?;
            let p = dir.join(name);
            if !p.is_file() {
                return Err(cfg_err(format!(
                    "config.json names {key} '{s}' but {} has no file '{name}'",
                    dir.display()
                )));
            }
            Ok(Some(p))
        };
        let found: Vec<PathBuf> = LM_FILE_NAMES
            .iter()
            .map(|n| dir.join(n))
            .filter(|p| p.is_file())
            .collect();
        let lm = match (lm_file, named("moshi_name")?) {
            (Some(f), _) => f,
            (None, Some(p)) => p,
            (None, None) => found.first().cloned().ok_or_else(|| {
                let mut here: Vec<String> = std::fs::read_dir(&dir)
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                here.sort();
                cfg_err(format!(
                    "{}: no LM checkpoint found (looked for {}); files here: {}",
                    dir.display(),
                    LM_FILE_NAMES.join(", "),
                    if here.is_empty() {
                        "none".into()
                    } else {
                        here.join(", ")
                    }
                ))
            })?,
        };
        let lm_others = found.into_iter().filter(|p| *p != lm).collect();
        let mimi = match named("mimi_name")? {
            Some(p) => Some(p),
            None => Some(dir.join(MIMI_FILE_NAME)).filter(|p| p.is_file()),
        };
        let tokenizer = match named("tokenizer_name")? {
            Some(p) => Some(p),
            None => Some(dir.join(TOKENIZER_FILE_NAME)).filter(|p| p.is_file()),
        };
        Ok(Self {
            dir,
            config,
            config_json,
            lm,
            lm_others,
            mimi,
            tokenizer,
        })
    }

    /// The config's `depformer_weights_per_step_schedule` (slice → weight set), if any.
    pub fn schedule(&self) -> Result<Option<Vec<usize>>, WeightsError> {
        match &self.config_json {
            Some(c) => schedule_from_config(c),
            None => Ok(None),
        }
    }

    /// Open the LM checkpoint under canonical names.
    pub fn open_lm(&self) -> Result<Checkpoint, WeightsError> {
        Checkpoint::open(&self.lm, self.schedule()?.as_deref())
    }
}
