//! The model-directory resolver and the typed config for `web/store.js` and `web/worker.js`: the
//! same rules as the native loader (`weights::resolve_layout`, `session::ModelConfig`), so that a
//! remote repository and a local folder are read alike and alike with `parle`.

use std::cell::RefCell;

use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

use super::error::{error, from_error};
use crate::session::{ModelConfig, Sampling};
use crate::weights::resolve::{lookups, resolve_layout, Pick};
use crate::weights::WeightsError;
use crate::ErrorCode;

thread_local! {
    /// The last `config.json` text parsed and its typed config: the store's lookups, its
    /// resolution and the engine's load of one model parse it once between them.
    static PARSED: RefCell<Option<(String, ModelConfig)>> = const { RefCell::new(None) };
}

/// The typed config of a `config.json` text (`None`: the 7B's), parsed once per distinct text.
pub(super) fn typed_config(text: Option<&str>) -> Result<ModelConfig, JsValue> {
    let Some(text) = text else {
        return Ok(ModelConfig::default());
    };
    let hit = PARSED.with(|p| {
        p.borrow()
            .as_ref()
            .filter(|(t, _)| t == text)
            .map(|(_, c)| c.clone())
    });
    if let Some(c) = hit {
        return Ok(c);
    }
    let c = ModelConfig::from_json(text).map_err(from_error)?;
    PARSED.with(|p| *p.borrow_mut() = Some((text.to_string(), c.clone())));
    Ok(c)
}

fn config_of(config: Option<String>) -> Result<ModelConfig, JsValue> {
    typed_config(config.as_deref())
}

/// The JSON the page reads for a sampling (temperatures to 6 decimals: 0.8, not the f32's
/// 0.800000011920929).
pub(super) fn sampling_json(s: &Sampling) -> Value {
    let t = |x: f32| (x as f64 * 1e6).round() / 1e6;
    json!({
        "greedy": s.text_temperature <= 0.0 && s.audio_temperature <= 0.0,
        "seed": s.seed,
        "textTemperature": t(s.text_temperature),
        "textTopK": s.text_top_k,
        "audioTemperature": t(s.audio_temperature),
        "audioTopK": s.audio_top_k,
    })
}

/// What to look for in a model directory, given its `config.json` text (or `null`): JSON
/// `[{ role: "lm" | "mimi" | "tokenizer", key, named, names: [...] }]`, in order; a remote store
/// probes each role's names until one is there. A config that parle cannot run (a bad key, an
/// unsupported feature, a file name that is not a plain name) is rejected here, with code
/// `config`, before any file is requested.
#[wasm_bindgen(js_name = modelLookups)]
pub fn model_lookups(config: Option<String>) -> Result<String, JsValue> {
    let cfg = config_of(config)?;
    let out: Vec<Value> = lookups(&cfg.files)
        .into_iter()
        .map(|l| {
            json!({
                "role": l.role.as_str(),
                "key": l.role.key(),
                "named": l.named,
                "names": l.names,
            })
        })
        .collect();
    Ok(Value::Array(out).to_string())
}

/// Which of `names` (a JSON array of the file names present) is the LM, Mimi and the tokenizer,
/// given the directory's `config.json` text (or `null`); `mimiOnly` keeps Mimi alone (the
/// loopback). Returns JSON `{ lm, mimi, tokenizer: { name, why } | null, lmOthers, kind, io:
/// { inputCodebooks, outputCodebooks, text }, sampling, lmSizes }`. Errors: `config` for the
/// config, `weights` when a file is missing (naming what was looked for and what is there).
#[wasm_bindgen(js_name = resolveModel)]
pub fn resolve_model(
    names: String,
    config: Option<String>,
    mimi_only: bool,
) -> Result<String, JsValue> {
    let present: Vec<String> = serde_json::from_str(&names).map_err(|e| {
        error(
            ErrorCode::Input,
            &format!("resolveModel: names must be a JSON array of strings ({e})"),
        )
    })?;
    let mut cfg = config_of(config)?;
    let refs: Vec<&str> = present.iter().map(String::as_str).collect();
    let mut layout = resolve_layout(&refs, &cfg.files, None).map_err(from_error)?;
    if layout.mimi.is_none() {
        return Err(from_error(WeightsError::NoMimi {
            dir: "the model's directory".into(),
            looked_for: lookups(&cfg.files)[1].names.join(", "),
        }));
    }
    if mimi_only {
        layout.lm = None;
        layout.tokenizer = None;
    }
    cfg.codec_only = layout.codec_only();
    let pick = |p: &Option<Pick>| match p {
        Some(p) => json!({ "name": p.name, "why": p.why }),
        None => Value::Null,
    };
    let io = cfg.io();
    let l = &cfg.lm;
    Ok(json!({
        "lm": pick(&layout.lm),
        "mimi": pick(&layout.mimi),
        "tokenizer": pick(&layout.tokenizer),
        "lmOthers": layout.lm_others,
        "kind": cfg.kind().as_str(),
        "io": {
            "inputCodebooks": io.input_codebooks,
            "outputCodebooks": io.output_codebooks,
            "text": io.text,
        },
        "sampling": sampling_json(&cfg.sampling()),
        "lmSizes": {
            "dim": l.dim, "numLayers": l.num_layers, "context": l.context, "textCard": l.text_card,
            "card": l.card, "nQ": l.n_q, "depQ": l.dep_q, "depformerDim": l.depformer_dim,
        },
    })
    .to_string())
}
