//! Which file of a model directory is the LM, Mimi and the text tokenizer, and why: one pure
//! function over the names present and `config.json`'s file keys ([`resolve_layout`]). The native
//! loader ([`super::ModelFiles`]) and the browser's store (`web/store.js`, through the wasm
//! export `resolveModel`) both ask it, for local folders and remote repositories alike.

use super::{ConfigFiles, WeightsError, LM_FILE_NAMES, MIMI_FILE_NAME, TOKENIZER_FILE_NAME};

/// Mimi's published names, in the order they are looked for (the 7B repos bundle the first; the
/// speech-to-text repos name the last in `config.json`).
pub const MIMI_FILE_NAMES: &[&str] = &[
    MIMI_FILE_NAME,
    "mimi.safetensors",
    "mimi-pytorch-e351c8d8@125.safetensors",
];
/// Text tokenizer names looked for when `config.json` names none.
pub const TOKENIZER_FILE_NAMES: &[&str] = &[TOKENIZER_FILE_NAME, "tokenizer.model"];

/// The part a file plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Lm,
    Mimi,
    Tokenizer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Lm, Role::Mimi, Role::Tokenizer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lm => "lm",
            Role::Mimi => "mimi",
            Role::Tokenizer => "tokenizer",
        }
    }

    /// The `config.json` key that names this part's file.
    pub fn key(self) -> &'static str {
        match self {
            Role::Lm => "moshi_name",
            Role::Mimi => "mimi_name",
            Role::Tokenizer => "tokenizer_name",
        }
    }

    /// The published names looked for when the config names none, in order.
    pub fn published(self) -> &'static [&'static str] {
        match self {
            Role::Lm => LM_FILE_NAMES,
            Role::Mimi => MIMI_FILE_NAMES,
            Role::Tokenizer => TOKENIZER_FILE_NAMES,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Role::Lm => "LM checkpoint",
            Role::Mimi => "Mimi checkpoint",
            Role::Tokenizer => "text tokenizer",
        }
    }
}

/// What to look for for one part: the name `config.json` gives (then only that one), else the
/// published names in order. A remote store probes these names, first found wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub role: Role,
    /// Set when `config.json` names the file (its key is [`Role::key`]).
    pub named: bool,
    pub names: Vec<String>,
}

/// The names to look for, per part.
pub fn lookups(files: &ConfigFiles) -> Vec<Lookup> {
    Role::ALL
        .iter()
        .map(|&role| match files.name(role.key()) {
            Some(n) => Lookup {
                role,
                named: true,
                names: vec![n.to_string()],
            },
            None => Lookup {
                role,
                named: false,
                names: role.published().iter().map(|s| s.to_string()).collect(),
            },
        })
        .collect()
}

/// One chosen file and the reason it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub name: String,
    pub why: String,
}

/// The parts of a model directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `None`: Mimi alone (the codec loopback).
    pub lm: Option<Pick>,
    /// `None` only beside an LM whose config says it is one: Mimi is missing (loading fails,
    /// naming what was looked for; `parle info` still describes the LM).
    pub mimi: Option<Pick>,
    /// Only with an LM; `None` when none was found (the transcript is then not shown).
    pub tokenizer: Option<Pick>,
    /// Other LM checkpoints present under published names, not chosen (also when the one
    /// taken is Mimi itself).
    pub lm_others: Vec<String>,
}

impl Layout {
    /// The directory holds Mimi alone.
    pub fn codec_only(&self) -> bool {
        self.lm.is_none()
    }
}

/// Decide which of the names `present` (file names of one directory) is the LM, Mimi and the
/// tokenizer. `files` are `config.json`'s names (checked when they were read); `given_lm` is an
/// LM file the user pointed at directly. A name the config gives must be present; otherwise the
/// first published name present wins. Without any Mimi checkpoint, the one checkpoint found is
/// Mimi itself (a Mimi-only directory keeps it in `model.safetensors`): the codec loopback —
/// unless `config.json` has LM keys ([`ConfigFiles::describes_lm`]): then it is the LM, and
/// Mimi is missing.
/// Nothing found is an error listing what was looked for and what is there.
pub fn resolve_layout(
    present: &[&str],
    files: &ConfigFiles,
    given_lm: Option<&str>,
) -> Result<Layout, WeightsError> {
    let has = |n: &str| present.contains(&n);
    let mut picks: Vec<Option<Pick>> = Vec::new();
    for l in lookups(files) {
        let pick = if l.role == Role::Lm && given_lm.is_some() {
            given_lm.map(|n| Pick {
                name: n.to_string(),
                why: "the checkpoint file given".into(),
            })
        } else if l.named {
            let n = &l.names[0];
            if !has(n) {
                return Err(WeightsError::MissingFiles(format!(
                    "config.json names {} '{n}' but the model's directory has no file '{n}'",
                    l.role.key()
                )));
            }
            Some(Pick {
                name: n.clone(),
                why: format!("named by config.json's {}", l.role.key()),
            })
        } else {
            l.names.iter().find(|n| has(n)).map(|n| Pick {
                name: n.clone(),
                why: format!(
                    "the first published {} name present (looked for {})",
                    l.role.what(),
                    l.names.join(", ")
                ),
            })
        };
        picks.push(pick);
    }
    let (mut lm, mimi, mut tokenizer) = (picks[0].take(), picks[1].take(), picks[2].take());
    // The LM names present besides the one taken (as the LM, or as Mimi itself).
    let lm_others: Vec<String> = match &lm {
        Some(p) => LM_FILE_NAMES
            .iter()
            .filter(|n| has(n) && **n != p.name)
            .map(|n| n.to_string())
            .collect(),
        None => Vec::new(),
    };
    let mimi = match (mimi, lm.take()) {
        (Some(m), lm_pick) => {
            lm = lm_pick;
            Some(m)
        }
        (None, Some(only)) if files.describes_lm => {
            lm = Some(only);
            None
        }
        (None, Some(only)) => Some(Pick {
            why: format!(
                "{}, and no Mimi checkpoint beside it (looked for {}): the directory holds Mimi \
                 alone (the codec loopback)",
                only.why,
                match files.name("mimi_name") {
                    Some(n) => n.to_string(),
                    None => MIMI_FILE_NAMES.join(", "),
                }
            ),
            name: only.name,
        }),
        (None, None) => {
            let mut here: Vec<&str> = present.to_vec();
            here.sort_unstable();
            let looked: Vec<String> = lookups(files)
                .iter()
                .filter(|l| l.role != Role::Tokenizer)
                .map(|l| format!("{}: {}", l.role.what(), l.names.join(", ")))
                .collect();
            return Err(WeightsError::MissingFiles(format!(
                "no model weights found (looked for {}); files present: {}",
                looked.join("; "),
                if here.is_empty() {
                    "none".into()
                } else {
                    here.join(", ")
                }
            )));
        }
    };
    if lm.is_none() {
        tokenizer = None;
    }
    Ok(Layout {
        lm,
        mimi,
        tokenizer,
        lm_others,
    })
}

#[cfg(test)]
mod tests;
