//! The resolver over the file lists of the published repositories.

use super::*;
use crate::weights::config::config_object;

const MIMI: &str = "tokenizer-e351c8d8-checkpoint125.safetensors";
const MIMI_STT: &str = "mimi-pytorch-e351c8d8@125.safetensors";
const TOK: &str = "tokenizer_spm_32k_3.model";

fn files(config: &str) -> ConfigFiles {
    ConfigFiles::from_object(&config_object(config).unwrap()).unwrap()
}

/// `(lm, mimi, tokenizer)` names chosen for `present` under `config`.
fn names(present: &[&str], config: &str) -> (Option<String>, String, Option<String>) {
    let l = resolve_layout(present, &files(config), None).unwrap();
    (
        l.lm.map(|p| p.name),
        l.mimi.unwrap().name,
        l.tokenizer.map(|p| p.name),
    )
}

fn s(n: &str) -> Option<String> {
    Some(n.to_string())
}

#[test]
fn moshi_7b_repositories() {
    let common = [".gitattributes", "README.md", MIMI, TOK];
    for (lm, configs) in [
        (
            "model.safetensors",
            ["{}", r#"{"moshi_name": "model.safetensors"}"#],
        ), // pytorch/mlx/candle bf16
        (
            "model.q8.safetensors",
            ["{}", r#"{"moshi_name": "model.q8.safetensors"}"#],
        ), // -mlx-q8, -pytorch-q8
        (
            "model.q4.safetensors",
            ["{}", r#"{"moshi_name": "model.q4.safetensors"}"#],
        ), // -mlx-q4
        (
            "model.q8.gguf",
            ["{}", r#"{"moshi_name": "model.q8.gguf"}"#],
        ), // -candle-q8
    ] {
        let mut present = common.to_vec();
        present.push(lm);
        for config in configs {
            assert_eq!(
                names(&present, config),
                (s(lm), MIMI.into(), s(TOK)),
                "{lm} {config}"
            );
        }
        let l = resolve_layout(&present, &ConfigFiles::default(), None).unwrap();
        assert!(l
            .lm
            .unwrap()
            .why
            .contains("first published LM checkpoint name present"));
        assert!(l.mimi.unwrap().why.contains(MIMI));
    }
}

#[test]
fn stt_and_hibiki_repositories() {
    // kyutai/stt-1b-en_fr and kyutai/stt-2.6b-en: config.json names Mimi and the tokenizer.
    for tok in ["tokenizer_en_fr_audio_8000.model", TOK] {
        let config = format!(
            r#"{{"model_type": "stt", "mimi_name": "{MIMI_STT}", "tokenizer_name": "{tok}", "moshi_name": "model.safetensors"}}"#
        );
        let present = [
            "config.json",
            "model.safetensors",
            MIMI_STT,
            tok,
            "README.md",
        ];
        assert_eq!(
            names(&present, &config),
            (s("model.safetensors"), MIMI_STT.into(), s(tok))
        );
        let l = resolve_layout(&present, &files(&config), None).unwrap();
        assert_eq!(l.mimi.unwrap().why, "named by config.json's mimi_name");
        // Without the key, Mimi's stt name is still found (last of the published names).
        assert_eq!(names(&present, "{}").1, MIMI_STT);
    }
    // kyutai/hibiki-*-pytorch-bf16 and -mlx-bf16 / -mlx-q8: a tokenizer named by the config.
    let hibiki_tok = "tokenizer_spm_48k_multi6_2.model";
    for lm in [
        "model.safetensors",
        "model.q8.safetensors",
        "model.q4.safetensors",
    ] {
        let present = ["config.json", lm, MIMI, hibiki_tok];
        let config = format!(
            r#"{{"model_type": "hibiki", "tokenizer_name": "hf://kyutai/hibiki-2b-pytorch-bf16/{hibiki_tok}"}}"#
        );
        assert_eq!(
            names(&present, &config),
            (s(lm), MIMI.into(), s(hibiki_tok)),
            "{lm}"
        );
    }
}

#[test]
fn mimi_alone_and_given_files() {
    // A Mimi-only folder keeps the codec in model.safetensors: the loopback, no tokenizer.
    let l = resolve_layout(
        &["config.json", "model.safetensors", TOK],
        &ConfigFiles::default(),
        None,
    )
    .unwrap();
    assert!(l.codec_only());
    assert_eq!(l.tokenizer, None);
    let mimi = l.mimi.unwrap();
    assert_eq!(mimi.name, "model.safetensors");
    assert!(
        mimi.why.contains("the directory holds Mimi alone"),
        "{}",
        mimi.why
    );
    // The same files under an LM's config: the LM, with Mimi missing.
    let l = resolve_layout(
        &["config.json", "model.safetensors", TOK],
        &files(r#"{"dim": 64, "mimi": {}}"#),
        None,
    )
    .unwrap();
    assert_eq!(l.lm.unwrap().name, "model.safetensors");
    assert_eq!((l.mimi, l.tokenizer.unwrap().name), (None, TOK.to_string()));
    assert!(!files(r#"{"mimi": {"seanet": {}}}"#).describes_lm);
    // Only Mimi's published file: also the loopback.
    assert_eq!(names(&[MIMI], "{}"), (None, MIMI.into(), None));
    // An LM file given directly wins; the other published LM files are listed.
    let present = ["model.q4.safetensors", "model.q8.gguf", MIMI];
    let l = resolve_layout(&present, &ConfigFiles::default(), Some("model.q8.gguf")).unwrap();
    assert_eq!(l.lm.unwrap().name, "model.q8.gguf");
    assert_eq!(l.lm_others, vec!["model.q4.safetensors".to_string()]);
    let l = resolve_layout(&present, &ConfigFiles::default(), None).unwrap();
    assert_eq!(l.lm.unwrap().name, "model.q4.safetensors");
    assert_eq!(l.lm_others, vec!["model.q8.gguf".to_string()]);
}

#[test]
fn missing_files_are_errors_naming_what_was_looked_for() {
    let e = resolve_layout(&["README.md", "notes.txt"], &ConfigFiles::default(), None)
        .unwrap_err()
        .to_string();
    for want in [
        "no model weights found",
        "LM checkpoint: model.safetensors, model.q8.safetensors",
        MIMI,
        "files present: README.md, notes.txt",
    ] {
        assert!(e.contains(want), "{want}: {e}");
    }
    let e = resolve_layout(&[], &ConfigFiles::default(), None)
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("files present: none"), "{e}");
    // A name the config gives must be there (no fallback to the published names).
    let e = resolve_layout(
        &["model.safetensors", MIMI],
        &files(r#"{"mimi_name": "mimi.bin"}"#),
        None,
    )
    .unwrap_err();
    assert_eq!(e.code(), crate::ErrorCode::Weights);
    assert!(
        e.to_string()
            .contains("config.json names mimi_name 'mimi.bin'"),
        "{e}"
    );
    let l = lookups(&files(r#"{"tokenizer_name": "hf://a/b/t.model"}"#));
    assert_eq!(
        l[2],
        Lookup {
            role: Role::Tokenizer,
            named: true,
            names: vec!["t.model".into()]
        }
    );
    assert_eq!(l[0].names.len(), LM_FILE_NAMES.len());
}
