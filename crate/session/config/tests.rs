//! The model-level keys of `config.json`: family, STT and generation settings, file names.

use super::*;

fn err(json: &str) -> String {
    ModelConfig::from_json(json).unwrap_err().to_string()
}

#[test]
fn no_config_is_moshi_7b() {
    let c = ModelConfig::parse(None).unwrap();
    assert_eq!(c.kind(), ModelKind::Moshi);
    assert!(!c.from_file);
    assert_eq!(
        c.io(),
        ModelIo {
            input_codebooks: 8,
            output_codebooks: 8,
            text: true
        }
    );
    assert_eq!(c.sampling(), Sampling::default());
    let c = ModelConfig::parse(Some("{}")).unwrap();
    assert!(c.from_file);
    assert_eq!(c.lm, LmConfig::default());
    assert_eq!(c.mimi, MimiConfig::default());
}

#[test]
fn family_keys() {
    let c = ModelConfig::from_json(
        r#"{"model_type": "hibiki", "moshi_name": "model.safetensors",
            "mimi_name": "hf://kyutai/x/mimi-pytorch-e351c8d8@125.safetensors",
            "tokenizer_name": "tokenizer_spm_48k_multi6_2.model",
            "stt_config": {"audio_silence_prefix_seconds": 1.0, "audio_delay_seconds": 0.5},
            "lm_gen_config": {"temp": 0.6, "temp_text": 0.5, "top_k": 100, "top_k_text": 0, "cfg_coef": 1.0},
            "model_id": {"sig": "abc", "epoch": 3},
            "mimi": {"quantizer": {"n_q": 16}}}"#,
    )
    .unwrap();
    assert_eq!(c.kind(), ModelKind::Hibiki);
    assert_eq!(
        c.files.name("mimi_name"),
        Some("mimi-pytorch-e351c8d8@125.safetensors")
    );
    assert_eq!(
        c.files.name("tokenizer_name"),
        Some("tokenizer_spm_48k_multi6_2.model")
    );
    let stt = c.stt.as_ref().unwrap();
    assert_eq!(
        (stt.audio_silence_prefix_seconds, stt.audio_delay_seconds),
        (1.0, 0.5)
    );
    let s = c.sampling();
    assert_eq!((s.audio_temperature, s.text_temperature), (0.6, 0.5));
    assert_eq!((s.audio_top_k, s.text_top_k), (100, 1));
    assert_eq!(c.mimi.quantizer.n_q, 16);
    let c = ModelConfig::from_json(
        r#"{"model_type": "stt", "lm_gen_config": {"use_sampling": false}}"#,
    )
    .unwrap();
    assert_eq!(c.kind(), ModelKind::Stt);
    assert_eq!(c.sampling(), Sampling::greedy());
    let c = ModelConfig {
        codec_only: true,
        ..c
    };
    assert_eq!(c.kind(), ModelKind::Mimi);
    assert_eq!(
        c.io().to_string(),
        "hears 32 audio codebooks, says 32 audio codebooks, no text"
    );
}

#[test]
fn bad_family_keys_name_the_key() {
    for (json, want) in [
        (r#"{"model_type": "tts"}"#, "\"model_type\""),
        (r#"{"model_type": 1}"#, "\"model_type\""),
        (
            r#"{"stt_config": {"audio_delay_seconds": "half"}}"#,
            "\"stt_config.audio_delay_seconds\"",
        ),
        (r#"{"stt_config": {"delay": 1}}"#, "\"stt_config.delay\""),
        (r#"{"stt_config": 2}"#, "\"stt_config\" must be an object"),
        (
            r#"{"lm_gen_config": {"temperature": 0.5}}"#,
            "\"lm_gen_config.temperature\"",
        ),
        (
            r#"{"lm_gen_config": {"temp": -1}}"#,
            "\"lm_gen_config.temp\"",
        ),
        (
            r#"{"lm_gen_config": {"cfg_coef": 3.0}}"#,
            "\"lm_gen_config.cfg_coef\" is 3: classifier-free guidance needs conditioners",
        ),
        (
            r#"{"lm_gen_config": {"cfg_coef": -2}}"#,
            "\"lm_gen_config.cfg_coef\" is -2",
        ),
        (
            r#"{"lm_gen_config": {"cfg_is_no_text": true}}"#,
            "\"lm_gen_config.cfg_is_no_text\"",
        ),
        (
            r#"{"lm_gen_config": {"cfg_is_masked_until": [3]}}"#,
            "\"lm_gen_config.cfg_is_masked_until\"",
        ),
        (r#"{"lora": true}"#, "\"lora\""),
        (r#"{"lora_name": "lora.safetensors"}"#, "\"lora_name\""),
        (
            r#"{"mimi_config_name": "mimi.json"}"#,
            "\"mimi_config_name\"",
        ),
        (r#"{"tts_config": {"multistream": true}}"#, "\"tts_config\""),
        (
            r#"{"mimi": {"seanet": {"n_filters": "x"}}}"#,
            "\"mimi.seanet\"",
        ),
        (r#"{"mimi": {"seanet": {"n_filters": 0}}}"#, "n_filters"),
        (
            r#"{"moshi_name": "../model.safetensors"}"#,
            "\"moshi_name\" is",
        ),
        (r#"{"dim": "x"}"#, "\"dim\""),
    ] {
        let e = err(json);
        assert!(e.contains(want), "{json}: {e}");
    }
    assert!(err(r#"{"model_type": "tts"}"#).contains("`moshi`, `stt`, `hibiki`"));
}
