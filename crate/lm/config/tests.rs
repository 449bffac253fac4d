//! `LmConfig` from `config.json` text: defaults, the family keys, and errors that name the key.

use super::*;

fn err(json: &str) -> String {
    LmConfig::from_json(json).unwrap_err().to_string()
}

#[test]
fn absent_keys_take_the_7b_values() {
    let c = LmConfig::from_json("{}").unwrap();
    assert_eq!(c, LmConfig::default());
    assert_eq!(c.user_streams(), 8);
    assert_eq!(c.depformer_dim_feedforward, 4224);
    // Nulls are absent keys; unknown keys (read by others) are ignored.
    let c = LmConfig::from_json(r#"{"dim": null, "model_id": {"sig": "x"}, "conditioners": {}, "fuser": null, "cross_attention": false}"#)
        .unwrap();
    assert_eq!(c.dim, 4096);
}

#[test]
fn derived_defaults_follow_the_reference() {
    let c = LmConfig::from_json(
        r#"{"n_q": 4, "dep_q": 2, "text_card": 100, "gating": "none", "max_period": 500,
            "layer_scale": 0.1, "depformer_dim": 64, "depformer_num_heads": 4, "hidden_scale": 2}"#,
    )
    .unwrap();
    assert_eq!(c.delays, vec![0; 5]);
    assert_eq!(c.text_card_out, 100);
    assert_eq!(c.depformer_gating, "none");
    assert_eq!(c.depformer_max_period, 500.0);
    assert!(c.layer_scale && c.depformer_layer_scale);
    assert_eq!(c.depformer_dim_feedforward, 128);
    let c = LmConfig::from_json(r#"{"layer_scale": 0.1, "depformer_layer_scale": null}"#).unwrap();
    assert!(c.layer_scale && !c.depformer_layer_scale);
    let c = LmConfig::from_json(
        r#"{"depformer_dim_feedforward": [4224, 4224, 4224, 4224, 4224, 4224, 4224, 4224]}"#,
    )
    .unwrap();
    assert_eq!(c.depformer_dim_feedforward, 4224);
}

#[test]
fn family_keys_are_read() {
    // Speech-to-text's LM keys (kyutai/stt-*): 32 input codebooks, none generated, extra heads.
    let stt = r#"{"n_q": 32, "dep_q": 0, "text_card": 8000, "extra_heads_num_heads": 4, "extra_heads_dim": 6,
                  "existing_text_padding_id": 3, "max_period": 100000, "context": 375, "delays": [0]}"#;
    let keys: keys::LmKeys =
        from_keys(&crate::weights::config::config_object(stt).unwrap(), "").unwrap();
    let c = keys.into_config().unwrap();
    assert_eq!((c.n_q, c.dep_q, c.text_card), (32, 0, 8000));
    assert_eq!((c.extra_heads_num_heads, c.extra_heads_dim), (4, 6));
    assert_eq!((c.max_period, c.context), (100000.0, 375));
    // dep_q 0 and extra heads run (Kyutai STT); a delays list of the wrong length is still named.
    let e = err(stt);
    assert!(e.contains("\"delays\" has 1 entries"), "{e}");
    let c = LmConfig::from_json(
        r#"{"n_q": 32, "dep_q": 0, "extra_heads_num_heads": 4, "delays": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}"#,
    )
    .unwrap();
    assert_eq!(
        (c.dep_q, c.user_streams(), c.extra_heads_num_heads),
        (0, 32, 4)
    );
    let e = err(r#"{"extra_heads_num_heads": 2, "extra_heads_dim": 0}"#);
    assert!(e.contains("\"extra_heads_dim\" is 0"), "{e}");
    // Hibiki: a LUT conditioner summed into the input.
    let hibiki = r#"{"conditioners": {"description": {"type": "lut", "lut": {"n_bins": 31, "dim": 16,
        "tokenizer": "noop", "possible_values": ["very_bad", "bad", "neutral", "good", "very_good"]}}},
        "fuser": {"sum": ["description"], "prepend": [], "cross": []}}"#;
    let keys: keys::LmKeys =
        from_keys(&crate::weights::config::config_object(hibiki).unwrap(), "").unwrap();
    let c = keys.into_config().unwrap();
    let lut = c.conditioners["description"].lut.as_ref().unwrap();
    assert_eq!(
        (
            lut.n_bins,
            lut.dim,
            lut.possible_values.as_ref().unwrap().len()
        ),
        (31, 16, 5)
    );
    assert_eq!(
        c.fuser.as_ref().unwrap().sum,
        vec!["description".to_string()]
    );
    let c = LmConfig::from_json(hibiki).unwrap();
    assert!(c.conditioned() && !c.eos_reads_pad);
    let typed = hibiki.replacen('{', r#"{"model_type": "hibiki", "#, 1);
    assert!(LmConfig::from_json(&typed).unwrap().eos_reads_pad);
    // Not summed, or summed but not defined, or no list of values: errors naming the key.
    let e = err(&hibiki.replace(r#""sum": ["description"]"#, r#""sum": []"#));
    assert!(
        e.contains("\"fuser.sum\" does not list the conditioner \"description\""),
        "{e}"
    );
    let e = err(&hibiki.replace(
        r#""sum": ["description"]"#,
        r#""sum": ["description", "x"]"#,
    ));
    assert!(e.contains("\"fuser.sum\" names \"x\""), "{e}");
    let e = err(&hibiki.replace(
        r#""possible_values": ["very_bad", "bad", "neutral", "good", "very_good"]"#,
        r#""possible_values": null"#,
    ));
    assert!(
        e.contains("\"conditioners.description.lut.possible_values\""),
        "{e}"
    );
    let e = err(&hibiki.replace(r#""prepend": []"#, r#""prepend": ["description"]"#));
    assert!(e.contains("\"fuser.prepend\""), "{e}");
    let e = err(r#"{"conditioners": {"c": {"type": "tensor", "tensor": {"dim": 3}}}}"#);
    assert!(
        e.contains("\"conditioners.c\" is a tensor conditioner"),
        "{e}"
    );
    let e = err(r#"{"fuser": {"cross": ["c"]}}"#);
    assert!(e.contains("\"fuser.cross\""), "{e}");
}

#[test]
fn unsupported_features_name_the_key() {
    for key in [
        "demux_second_text_stream",
        "cross_attention",
        "norm_emb",
        "bias_proj",
        "demux_second_stream",
    ] {
        let e = err(&format!(r#"{{"{key}": true}}"#));
        let want = if key == "demux_second_stream" {
            "demux_second_text_stream"
        } else {
            key
        };
        assert!(
            e.contains(&format!("\"{want}\" names a feature")),
            "{key}: {e}"
        );
    }
    assert!(err(r#"{"depformer_norm": "rms_norm"}"#).contains("\"depformer_norm\""));
    assert!(err(r#"{"causal": false}"#).contains("\"causal\" is false"));
    assert!(err(r#"{"depformer_dim_feedforward": [1, 2]}"#).contains("different widths"));
}

#[test]
fn wrong_types_and_sizes_name_the_key() {
    for (json, key) in [
        (r#"{"dim": "big"}"#, "\"dim\""),
        (r#"{"dim": -1}"#, "\"dim\""),
        (r#"{"dim": 1.5}"#, "\"dim\""),
        (r#"{"hidden_scale": "x"}"#, "\"hidden_scale\""),
        (r#"{"norm": 3}"#, "\"norm\""),
        (r#"{"delays": 3}"#, "\"delays\""),
        (r#"{"delays": [0, "x"]}"#, "\"delays\""),
        (
            r#"{"depformer_multi_linear": "yes"}"#,
            "\"depformer_multi_linear\"",
        ),
        (
            r#"{"existing_text_padding_id": 5000000000}"#,
            "\"existing_text_padding_id\"",
        ),
        (
            r#"{"conditioners": {"c": {"type": "film"}}}"#,
            "\"conditioners\"",
        ),
        (r#"{"fuser": {"mix": []}}"#, "\"fuser\""),
        (r#"{"extra_heads_dim": "6"}"#, "\"extra_heads_dim\""),
        (r#"{"n_q": 100000}"#, "\"n_q\""),
        (r#"{"dim": 1000000}"#, "\"dim\""),
        (r#"{"delays": [0, 1, 2]}"#, "\"delays\""),
        (r#"{"norm": "batch_norm"}"#, "\"norm\""),
        (r#"{"gating": "gelu"}"#, "\"gating\""),
        (r#"{"depformer_pos_emb": "alibi"}"#, "\"depformer_pos_emb\""),
        (
            r#"{"depformer_weights_per_step_schedule": [0, 1]}"#,
            "\"depformer_weights_per_step_schedule\"",
        ),
        (
            r#"{"extra_heads_num_heads": 5000}"#,
            "\"extra_heads_num_heads\"",
        ),
    ] {
        let e = err(json);
        assert!(e.contains(key), "{json}: {e}");
    }
    assert!(err("[]").contains("not a JSON object"));
    assert!(err("{").contains("not valid JSON"));
}
