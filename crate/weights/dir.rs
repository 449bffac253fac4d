//! A model directory as published on Hugging Face (spec §4.1): an optional `config.json`, the LM
//! checkpoint under one of its published names, Mimi and the SentencePiece model (native): the
//! directory's file names handed to [`resolve_layout`].

use std::path::{Path, PathBuf};

use super::config::config_object;
use super::{resolve_layout, schedule_from_config, Checkpoint, ConfigFiles, Layout, WeightsError};

/// The files of one model directory.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    /// `config.json`, when there is one (absent: the Moshi 7B config, spec §2.1).
    pub config: Option<PathBuf>,
    /// Its parsed top-level object (parsed once, here; the typed config is read from it).
    pub config_json: Option<serde_json::Map<String, serde_json::Value>>,
    /// The LM checkpoint.
    pub lm: PathBuf,
    /// Other LM checkpoints found under published names but not chosen.
    pub lm_others: Vec<PathBuf>,
    pub mimi: Option<PathBuf>,
    pub tokenizer: Option<PathBuf>,
    /// The resolver's verdict: which name plays which part, and why.
    pub layout: Layout,
}

fn cfg_err(m: String) -> WeightsError {
    WeightsError::Config(m)
}

impl ModelFiles {
    /// Find the files of `path`: a model directory, or an LM checkpoint file (whose directory
    /// holds the rest). Which file plays which part is [`resolve_layout`]'s decision over the
    /// directory's file names and `config.json`'s names (the rule the browser's store follows
    /// too). In a directory that holds Mimi alone, `lm` is that checkpoint and `mimi` is `None`.
    pub fn resolve(path: &Path) -> Result<Self, WeightsError> {
        let (dir, lm_file) = if path.is_file() {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (
                dir,
                path.file_name().map(|n| n.to_string_lossy().into_owned()),
            )
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
                let obj = config_object(&text).map_err(|e| match e {
                    WeightsError::Config(m) => cfg_err(format!(
                        "{}: {}",
                        p.display(),
                        m.trim_start_matches("config.json ")
                    )),
                    e => e,
                })?;
                Some(obj)
            }
            None => None,
        };
        let names = match &config_json {
            Some(obj) => ConfigFiles::from_object(obj)?,
            None => ConfigFiles::default(),
        };
        let mut present: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| WeightsError::Io {
                file: dir.display().to_string(),
                message: e.to_string(),
            })?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        present.sort();
        let refs: Vec<&str> = present.iter().map(String::as_str).collect();
        let layout = resolve_layout(&refs, &names, lm_file.as_deref()).map_err(|e| match e {
            WeightsError::MissingFiles(m) => {
                WeightsError::MissingFiles(format!("{}: {m}", dir.display()))
            }
            e => e,
        })?;
        // Mimi alone: `lm` is its checkpoint and `mimi` is `None`, as for an LM without Mimi
        // (`layout` tells them apart).
        let (lm, mimi) = match (&layout.lm, &layout.mimi) {
            (Some(l), m) => (dir.join(&l.name), m.as_ref().map(|m| dir.join(&m.name))),
            (None, Some(m)) => (dir.join(&m.name), None),
            (None, None) => {
                return Err(WeightsError::MissingFiles(format!(
                    "{}: no model weights found",
                    dir.display()
                )))
            }
        };
        Ok(Self {
            lm,
            lm_others: layout.lm_others.iter().map(|n| dir.join(n)).collect(),
            mimi,
            tokenizer: layout.tokenizer.as_ref().map(|p| dir.join(&p.name)),
            dir,
            config,
            config_json,
            layout,
        })
    }

    /// The config's `depformer_weights_per_step_schedule` (slice → weight set), if any.
    pub fn schedule(&self) -> Result<Option<Vec<usize>>, WeightsError> {
        match &self.config_json {
            Some(c) => schedule_from_config(&serde_json::Value::Object(c.clone())),
            None => Ok(None),
        }
    }

    /// Open the LM checkpoint under canonical names.
    pub fn open_lm(&self) -> Result<Checkpoint, WeightsError> {
        Checkpoint::open(&self.lm, self.schedule()?.as_deref())
    }
}
