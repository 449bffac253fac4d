//! The SentencePiece reader and the text stream against SentencePiece itself:
//! `tests/fixtures/text/tokenizer.model` and what the Python `sentencepiece` package says about
//! it (`tokenizer.json`; both made by `make_tokenizer.py`).
#![cfg(not(target_arch = "wasm32"))]

use std::path::PathBuf;
use std::sync::Arc;

use parle::text::{PieceType, TextStream, Tokenizer};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/text")
        .join(name)
}

fn load() -> (Tokenizer, serde_json::Value) {
    let tok = Tokenizer::open(&fixture("tokenizer.model")).unwrap();
    let json = std::fs::read_to_string(fixture("tokenizer.json")).unwrap();
    (tok, serde_json::from_str(&json).unwrap())
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn every_piece_matches_sentencepiece() {
    let (tok, want) = load();
    let pieces = want["pieces"].as_array().unwrap();
    assert_eq!(
        tok.vocab_size() as u64,
        want["vocab_size"].as_u64().unwrap()
    );
    assert_eq!(tok.vocab_size(), pieces.len());
    for (id, p) in pieces.iter().enumerate() {
        let id = id as u32;
        assert_eq!(tok.piece(id), p["piece"].as_str(), "piece {id}");
        assert_eq!(
            tok.score(id).unwrap(),
            p["score"].as_f64().unwrap() as f32,
            "score of piece {id}"
        );
        assert_eq!(
            tok.piece_type(id).unwrap().code() as u64,
            p["type"].as_u64().unwrap(),
            "type of piece {id}"
        );
        if let Some(PieceType::Byte(b)) = tok.piece_type(id) {
            assert_eq!(tok.piece(id).unwrap(), format!("<0x{b:02X}>"));
        }
    }
    assert_eq!(tok.piece(tok.vocab_size() as u32), None);
    // Moshi's layout: 0 <unk>, 1 <s>, 2 </s>, 3 <pad>.
    assert_eq!(tok.piece_type(0), Some(PieceType::Unknown));
    assert_eq!(tok.piece(3), Some("<pad>"));
    assert_eq!(tok.piece_type(3), Some(PieceType::Control));
}

#[test]
fn decode_matches_sentencepiece() {
    let (tok, want) = load();
    let decodes = want["decodes"].as_array().unwrap();
    assert!(decodes.len() >= 10);
    for d in decodes {
        let ids = ids(&d["ids"]);
        assert_eq!(tok.decode(&ids), d["text"].as_str().unwrap(), "ids {ids:?}");
    }
}

/// The stream fed one id per frame with Moshi's padding between pieces shows exactly
/// SentencePiece's decoding of the pieces (PAD 3 and EPAD 0 are never shown; id 0 is <unk> in
/// the tokenizer, so sequences containing it are left to the decode test).
#[test]
fn stream_with_padding_equals_decode() {
    let (tok, want) = load();
    let tok = Arc::new(tok);
    let mut stream = TextStream::new(tok.clone());
    for d in want["decodes"].as_array().unwrap() {
        let ids = ids(&d["ids"]);
        if ids.contains(&0) {
            continue;
        }
        stream.reset();
        let mut shown = stream.push(32000);
        for (k, &id) in ids.iter().enumerate() {
            shown += &stream.push(id);
            // Padding between pieces, like the inner monologue: PAD runs and an EPAD.
            for _ in 0..k % 3 {
                shown += &stream.push(3);
            }
            if k % 4 == 1 {
                shown += &stream.push(0);
            }
        }
        shown += &stream.finish();
        assert_eq!(shown, d["text"].as_str().unwrap(), "ids {ids:?}");
    }
}

#[test]
fn open_names_the_file() {
    let e = Tokenizer::open(&fixture("missing.model"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.model"), "{e}");
    let e = Tokenizer::open(&fixture("tokenizer.json"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("not a SentencePiece model"),
        "{e}"
    );
}
