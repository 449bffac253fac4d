//! Reading `config.json` with serde: one parsed JSON value, typed sections taken from it, and
//! errors that name the key at fault. Also the keys that name the model's files
//! ([`ConfigFiles`]) and the rule for those names ([`config_file_name`]).

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::WeightsError;

/// Parse `config.json` text into its top-level object.
pub fn config_object(text: &str) -> Result<Map<String, Value>, WeightsError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(WeightsError::Config(
            "config.json is not a JSON object".into(),
        )),
        Err(e) => Err(WeightsError::Config(format!(
            "config.json is not valid JSON: {e}"
        ))),
    }
}

/// Why an object did not deserialize: the key at fault (its path, when one key alone fails) and
/// serde's message (what it found and what it expected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub key: Option<String>,
    pub message: String,
}

/// Deserialize the object `obj` into `T`. When that fails, each key is tried alone so that the
/// error names the key at fault (`prefix` in front of it: `"mimi."` for a section).
pub fn deserialize_keys<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    prefix: &str,
) -> Result<T, KeyError> {
    let whole = Value::Object(obj.clone());
    T::deserialize(&whole).map_err(|e| {
        for (k, v) in obj {
            let one = Value::Object(Map::from_iter([(k.clone(), v.clone())]));
            if let Err(e) = T::deserialize(&one) {
                return KeyError {
                    key: Some(format!("{prefix}{k}")),
                    message: e.to_string(),
                };
            }
        }
        KeyError {
            key: None,
            message: e.to_string(),
        }
    })
}

/// Deserialize the object `obj` (the section `section` of `config.json`, `""` for the top
/// level) into `T`; an error names the key at fault and what serde expected there
/// (`config.json: key "dim": invalid type: string "x", expected usize`).
pub fn from_keys<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    section: &str,
) -> Result<T, WeightsError> {
    deserialize_keys(obj, section).map_err(|e| {
        let at = section.trim_end_matches('.');
        WeightsError::Config(match e.key {
            Some(k) => format!("config.json: key \"{k}\": {}", e.message),
            None if at.is_empty() => format!("config.json: {}", e.message),
            None => format!("config.json: \"{at}\": {}", e.message),
        })
    })
}

/// A nested section of `config.json` (`"mimi"`, `"stt_config"`, …) as `T`; `None` when the key
/// is absent or null, an error naming the key when it is not an object.
pub fn section<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    key: &str,
) -> Result<Option<T>, WeightsError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => from_keys(m, &format!("{key}.")).map(Some),
        Some(v) => Err(WeightsError::Config(format!(
            "config.json: key \"{key}\" must be an object, got {v}"
        ))),
    }
}

/// The `config.json` keys that name files of the model's directory (PyPI `moshi`'s
/// `CheckpointInfo`): each a plain file name or an `hf://…/NAME` reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ConfigFiles {
    /// The LM checkpoint.
    pub moshi_name: Option<String>,
    /// The Mimi checkpoint.
    pub mimi_name: Option<String>,
    /// The SentencePiece model.
    pub tokenizer_name: Option<String>,
    /// The config has LM keys (`dim`, `n_q`, `model_type`, …): the directory is an LM's, so a
    /// lone checkpoint in it is the LM (with Mimi missing), not Mimi itself.
    #[serde(skip)]
    pub describes_lm: bool,
}

/// Top-level keys that only an LM's config has (a Mimi-only config has just `"mimi"`).
pub const LM_CONFIG_KEYS: &[&str] = &[
    "dim",
    "num_heads",
    "num_layers",
    "n_q",
    "dep_q",
    "card",
    "text_card",
    "delays",
    "depformer_dim",
    "model_type",
    "moshi_name",
    "lm_gen_config",
];

impl ConfigFiles {
    /// Read the file-name keys of `config.json`'s top-level object; every name is checked with
    /// [`config_file_name`].
    pub fn from_object(obj: &Map<String, Value>) -> Result<Self, WeightsError> {
        for key in CONFIG_FILE_KEYS {
            match obj.get(*key) {
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(v) => {
                    return Err(WeightsError::Config(format!(
                        "config.json: key \"{key}\" is {v}, expected a file name"
                    )))
                }
            }
        }
        let mut files: Self = from_keys(obj, "")?;
        files.describes_lm = LM_CONFIG_KEYS.iter().any(|k| obj.contains_key(*k));
        for (key, v) in files.entries() {
            if let Some(v) = v {
                config_file_name(key, v)?;
            }
        }
        Ok(files)
    }

    /// `(key, value)` for each of [`CONFIG_FILE_KEYS`].
    pub fn entries(&self) -> [(&'static str, Option<&str>); 3] {
        [
            ("moshi_name", self.moshi_name.as_deref()),
            ("mimi_name", self.mimi_name.as_deref()),
            ("tokenizer_name", self.tokenizer_name.as_deref()),
        ]
    }

    /// The plain file name that `key`'s value names, if the key is given (checked when read).
    pub fn name(&self, key: &str) -> Option<&str> {
        let v = self.entries().into_iter().find(|(k, _)| *k == key)?.1?;
        config_file_name(key, v).ok()
    }
}

/// The `config.json` keys that name files of the model's directory.
pub const CONFIG_FILE_KEYS: &[&str] = &["moshi_name", "mimi_name", "tokenizer_name"];

/// Names a model file may not have: the files the browser's store writes beside the model's own
/// (`web/store.js`), so that the same `config.json` is accepted or refused on both sides.
pub const RESERVED_FILE_NAMES: &[&str] = &[
    "manifest.json",
    "parle-manifest.json",
    "parle-manifest-mimi.json",
];

/// The file that `config.json`'s `key` names: a plain file name of the model's directory
/// (`^[A-Za-z0-9][A-Za-z0-9._@-]*$`, not one of [`RESERVED_FILE_NAMES`]), or an `hf://…/NAME`
/// reference whose last part is one. Anything else (a path, `..`, a hidden file) is an error
/// naming the key and the value.
pub fn config_file_name<'a>(key: &str, value: &'a str) -> Result<&'a str, WeightsError> {
    let name = match value.strip_prefix("hf://") {
        Some(rest) => rest.rsplit('/').next().unwrap_or(rest),
        None => value,
    };
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    let reserved = RESERVED_FILE_NAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name));
    if !plain || reserved {
        return Err(WeightsError::Config(format!(
            "config.json: key \"{key}\" is {value:?}, which is not a file name parle accepts: a file of \
             the model's own directory, made of letters, digits, '.', '_', '@' and '-', not \
             starting with '.', and not {}. Fix config.json.",
            RESERVED_FILE_NAMES.join(", ")
        )));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct T {
        a: Option<usize>,
        b: Option<String>,
    }

    #[test]
    fn errors_name_the_key() {
        let obj = config_object(r#"{"a": 1, "b": 2, "c": "x"}"#).unwrap();
        let e = from_keys::<T>(&obj, "").unwrap_err().to_string();
        assert!(
            e.contains("key \"b\"") && e.contains("expected a string"),
            "{e}"
        );
        let obj = config_object(r#"{"s": {"a": -1}}"#).unwrap();
        let e = section::<T>(&obj, "s").unwrap_err().to_string();
        assert!(e.contains("key \"s.a\""), "{e}");
        let obj = config_object(r#"{"s": 3}"#).unwrap();
        let e = section::<T>(&obj, "s").unwrap_err().to_string();
        assert!(e.contains("\"s\" must be an object"), "{e}");
        let t: T = from_keys(&config_object(r#"{"a": 7, "z": [1]}"#).unwrap(), "").unwrap();
        assert_eq!((t.a, t.b), (Some(7), None));
        assert!(config_object("[1]")
            .unwrap_err()
            .to_string()
            .contains("not a JSON object"));
        assert!(config_object("{")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
    }

    #[test]
    fn file_names_are_checked() {
        let ok = config_object(
            r#"{"mimi_name": "hf://kyutai/x/mimi-pytorch-e351c8d8@125.safetensors"}"#,
        )
        .unwrap();
        let f = ConfigFiles::from_object(&ok).unwrap();
        assert_eq!(
            f.name("mimi_name"),
            Some("mimi-pytorch-e351c8d8@125.safetensors")
        );
        assert_eq!(f.name("moshi_name"), None);
        for bad in [
            r#"{"moshi_name": "../x"}"#,
            r#"{"tokenizer_name": 3}"#,
            r#"{"mimi_name": "manifest.json"}"#,
        ] {
            let e = ConfigFiles::from_object(&config_object(bad).unwrap()).unwrap_err();
            assert!(e.to_string().contains("_name\" is"), "{bad}: {e}");
        }
    }
}
