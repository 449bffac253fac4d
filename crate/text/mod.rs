//! Moshi's text side: the SentencePiece tokenizer's id → piece table and the incremental display
//! of the inner-monologue text stream (spec §2.2, §3.5). No GPU here.
//!
//! - [`Tokenizer`] reads a SentencePiece `ModelProto` (`tokenizer_spm_32k_3.model` for Moshi) with
//!   a small hand-written protobuf decoder ([`proto`]). Only what decoding needs is kept: every
//!   piece's string, score and type, and the three settings that change how pieces are joined
//!   (`add_dummy_prefix`, `remove_extra_whitespaces`, `unk_surface`).
//! - [`TextStream`] turns the LM's text tokens, one per 80 ms frame, into the text to append to
//!   what is shown. The concatenation of its outputs equals SentencePiece's `decode` of the
//!   non-padding ids.

mod proto;
mod stream;
mod words;

pub use stream::TextStream;
pub use words::{word_timestamps, Word, WordIds};

use stream::Decoder;

use proto::Reader;

/// SentencePiece's word-boundary mark, U+2581 LOWER ONE EIGHTH BLOCK.
pub const SPACE_MARK: char = '\u{2581}';

/// What can be wrong with a tokenizer file, naming the file and the cause.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("{file}: not a SentencePiece model ({why}). Use the tokenizer file published with the model (tokenizer_spm_32k_3.model for Moshi).")]
    NotModel { file: String, why: String },
    #[error("{file}: {message}")]
    Io { file: String, message: String },
}

/// The type of a piece (`ModelProto.SentencePiece.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    /// Type 1: an ordinary piece; `▁` marks a word boundary.
    Normal,
    /// Type 2: `<unk>`; decodes to the model's `unk_surface` (` ⁇ ` by default).
    Unknown,
    /// Type 3: `<s>`, `</s>`, `<pad>` and other control symbols; decode to nothing.
    Control,
    /// Type 4: user-defined symbols; decode as written.
    UserDefined,
    /// Type 5: unused pieces; decode as written.
    Unused,
    /// Type 6: a raw byte (`<0xNN>`, byte fallback); bytes are joined into UTF-8.
    Byte(u8),
}

impl PieceType {
    /// The protobuf enum value.
    pub fn code(self) -> u32 {
        match self {
            Self::Normal => 1,
            Self::Unknown => 2,
            Self::Control => 3,
            Self::UserDefined => 4,
            Self::Unused => 5,
            Self::Byte(_) => 6,
        }
    }
}

/// One piece: where its text is in the tokenizer's string arena, its score and type.
#[derive(Debug, Clone, Copy)]
struct Entry {
    start: u32,
    len: u32,
    score: f32,
    kind: PieceType,
}

/// A SentencePiece model, reduced to what decoding needs.
///
/// Memory: all piece strings live in one `String` (reserved once at the input's size) and each
/// piece adds a 16-byte entry, so a model takes well under 4× its file size (the 32k Moshi
/// tokenizer: about 0.8 MB).
#[derive(Debug, Clone)]
pub struct Tokenizer {
    name: String,
    text: String,
    entries: Vec<Entry>,
    /// `normalizer_spec.add_dummy_prefix` (default true).
    pub add_dummy_prefix: bool,
    /// `normalizer_spec.remove_extra_whitespaces` (default true).
    pub remove_extra_whitespaces: bool,
    /// `trainer_spec.unk_surface`: what `<unk>` decodes to (default `" ⁇ "`).
    pub unk_surface: String,
}

/// Field numbers of `sentencepiece_model.proto`.
mod field {
    pub const MODEL_PIECES: u32 = 1;
    pub const MODEL_TRAINER_SPEC: u32 = 2;
    pub const MODEL_NORMALIZER_SPEC: u32 = 3;
    pub const PIECE_PIECE: u32 = 1;
    pub const PIECE_SCORE: u32 = 2;
    pub const PIECE_TYPE: u32 = 3;
    pub const TRAINER_UNK_SURFACE: u32 = 44;
    pub const NORMALIZER_ADD_DUMMY_PREFIX: u32 = 3;
    pub const NORMALIZER_REMOVE_EXTRA_WHITESPACES: u32 = 4;
}

/// More pieces than any SentencePiece model has (Moshi: 32 000; the largest published: 256 000).
const MAX_PIECES: usize = 1 << 22;

impl Tokenizer {
    /// Parse a `ModelProto`. `name` (usually the file name) prefixes every error.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Self, TextError> {
        let bad = |why: String| TextError::NotModel {
            file: name.into(),
            why,
        };
        if bytes.len() > u32::MAX as usize {
            return Err(bad(format!("{} bytes is too large", bytes.len())));
        }
        let mut tok = Self {
            name: name.into(),
            text: String::with_capacity(bytes.len()),
            entries: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            unk_surface: " \u{2047} ".into(),
        };
        let mut r = Reader::new(bytes);
        while let Some((fld, wire)) = r.key().map_err(&bad)? {
            match fld {
                field::MODEL_PIECES => {
                    let id = tok.entries.len();
                    let msg = r.message(fld, wire).map_err(&bad)?;
                    if id >= MAX_PIECES {
                        return Err(bad(format!("more than {MAX_PIECES} pieces")));
                    }
                    tok.read_piece(msg)
                        .map_err(|why| bad(format!("piece {id}: {why}")))?;
                }
                field::MODEL_TRAINER_SPEC => {
                    let msg = r.message(fld, wire).map_err(&bad)?;
                    tok.read_trainer_spec(msg)
                        .map_err(|why| bad(format!("trainer_spec: {why}")))?;
                }
                field::MODEL_NORMALIZER_SPEC => {
                    let msg = r.message(fld, wire).map_err(&bad)?;
                    tok.read_normalizer_spec(msg)
                        .map_err(|why| bad(format!("normalizer_spec: {why}")))?;
                }
                _ => r.skip(fld, wire).map_err(&bad)?,
            }
        }
        if tok.entries.is_empty() {
            return Err(bad("it has no pieces".into()));
        }
        Ok(tok)
    }

    /// Read a model file (native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &std::path::Path) -> Result<Self, TextError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| TextError::Io {
            file: file.clone(),
            message: format!("cannot read the tokenizer ({e})"),
        })?;
        Self::from_bytes(&file, &bytes)
    }

    fn read_piece(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut r = Reader::new(bytes);
        let mut piece: Option<&str> = None;
        let mut score = 0f32;
        let mut code = 1u64;
        while let Some((fld, wire)) = r.key()? {
            match fld {
                field::PIECE_PIECE => {
                    let s = r.bytes(fld, wire)?;
                    piece = Some(
                        std::str::from_utf8(s)
                            .map_err(|e| format!("the piece string is not valid UTF-8 ({e})"))?,
                    );
                }
                field::PIECE_SCORE => score = f32::from_bits(r.fixed32(fld, wire)?),
                field::PIECE_TYPE => code = r.varint_field(fld, wire)?,
                _ => r.skip(fld, wire)?,
            }
        }
        let piece = piece.ok_or("it has no piece string")?;
        if piece.is_empty() {
            return Err("the piece string is empty".into());
        }
        let kind =
            match code {
                1 => PieceType::Normal,
                2 => PieceType::Unknown,
                3 => PieceType::Control,
                4 => PieceType::UserDefined,
                5 => PieceType::Unused,
                6 => PieceType::Byte(parse_byte_piece(piece).ok_or_else(|| {
                    format!("{piece:?} has type BYTE but is not of the form <0xNN>")
                })?),
                _ => return Err(format!("{piece:?} has unknown type {code}")),
            };
        // The arena was reserved at the input's size and pieces are substrings of the input,
        // so this never reallocates and fits in u32 (checked in from_bytes).
        let start = self.text.len() as u32;
        self.text.push_str(piece);
        self.entries.push(Entry {
            start,
            len: piece.len() as u32,
            score,
            kind,
        });
        Ok(())
    }

    fn read_trainer_spec(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut r = Reader::new(bytes);
        while let Some((fld, wire)) = r.key()? {
            if fld == field::TRAINER_UNK_SURFACE {
                let s = r.bytes(fld, wire)?;
                self.unk_surface = std::str::from_utf8(s)
                    .map_err(|e| format!("unk_surface is not valid UTF-8 ({e})"))?
                    .into();
            } else {
                r.skip(fld, wire)?;
            }
        }
        Ok(())
    }

    fn read_normalizer_spec(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut r = Reader::new(bytes);
        while let Some((fld, wire)) = r.key()? {
            match fld {
                field::NORMALIZER_ADD_DUMMY_PREFIX => {
                    self.add_dummy_prefix = r.varint_field(fld, wire)? != 0
                }
                field::NORMALIZER_REMOVE_EXTRA_WHITESPACES => {
                    self.remove_extra_whitespaces = r.varint_field(fld, wire)? != 0
                }
                _ => r.skip(fld, wire)?,
            }
        }
        Ok(())
    }

    /// The name given at load (the file path for [`Tokenizer::open`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of pieces (32 000 for Moshi). Valid ids are `0..vocab_size()`.
    pub fn vocab_size(&self) -> usize {
        self.entries.len()
    }

    fn entry(&self, id: u32) -> Option<&Entry> {
        self.entries.get(id as usize)
    }

    /// The piece of `id` as stored (with `▁` for spaces, `<0xNN>` for bytes); `None` when `id`
    /// is out of range (e.g. Moshi's initial text token 32000).
    pub fn piece(&self, id: u32) -> Option<&str> {
        let e = self.entry(id)?;
        Some(&self.text[e.start as usize..(e.start + e.len) as usize])
    }

    /// The score of `id`.
    pub fn score(&self, id: u32) -> Option<f32> {
        self.entry(id).map(|e| e.score)
    }

    /// The type of `id`.
    pub fn piece_type(&self, id: u32) -> Option<PieceType> {
        self.entry(id).map(|e| e.kind)
    }

    /// The text of a whole id sequence, as SentencePiece's `decode` gives it (ids out of range
    /// are skipped; SentencePiece rejects them).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut d = Decoder::default();
        let mut out = String::new();
        for &id in ids {
            d.push(self, id, &mut out);
        }
        d.finish(&mut out);
        out
    }
}

/// `<0xNN>` (upper-case hex, as SentencePiece writes and requires) → the byte.
fn parse_byte_piece(p: &str) -> Option<u8> {
    let hex = p.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2
        || !hex
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::proto::tests::{bytes_field, varint_field};
    use super::*;

    /// A `ModelProto.SentencePiece` message.
    pub(crate) fn piece_msg(piece: &str, score: f32, kind: u32) -> Vec<u8> {
        let mut m = bytes_field(1, piece.as_bytes());
        m.push(2 << 3 | 5);
        m.extend_from_slice(&score.to_le_bytes());
        m.extend(varint_field(3, kind as u64));
        m
    }

    /// A model with Moshi's special layout and a few pieces.
    pub(crate) fn model(pieces: &[(&str, u32)]) -> Vec<u8> {
        let mut m = Vec::new();
        for (i, (p, k)) in pieces.iter().enumerate() {
            m.extend(bytes_field(1, &piece_msg(p, -(i as f32), *k)));
        }
        m
    }

    #[test]
    fn reads_pieces_and_types() {
        let bytes = model(&[
            ("<unk>", 2),
            ("<s>", 3),
            ("</s>", 3),
            ("<pad>", 3),
            ("▁hello", 1),
            ("<0xE2>", 6),
            ("<u>", 4),
            ("x", 5),
        ]);
        let t = Tokenizer::from_bytes("t.model", &bytes).unwrap();
        assert_eq!(t.vocab_size(), 8);
        assert_eq!(t.piece(4), Some("▁hello"));
        assert_eq!(t.piece(8), None);
        assert_eq!(t.piece(32000), None);
        assert_eq!(t.score(4), Some(-4.0));
        assert_eq!(t.piece_type(0), Some(PieceType::Unknown));
        assert_eq!(t.piece_type(3), Some(PieceType::Control));
        assert_eq!(t.piece_type(5), Some(PieceType::Byte(0xE2)));
        assert_eq!(t.piece_type(6), Some(PieceType::UserDefined));
        assert_eq!(t.piece_type(7), Some(PieceType::Unused));
        assert!(t.add_dummy_prefix && t.remove_extra_whitespaces);
        assert_eq!(t.unk_surface, " \u{2047} ");
    }

    #[test]
    fn reads_specs_and_skips_unknown_fields() {
        let mut m = Vec::new();
        // Unknown fields of every wire type before, between and inside messages.
        m.extend(varint_field(9, u64::MAX));
        m.extend([7 << 3 | 1, 1, 2, 3, 4, 5, 6, 7, 8]);
        m.extend([8 << 3 | 5, 1, 2, 3, 4]);
        m.extend([10 << 3 | 3, 11 << 3, 5, 10 << 3 | 4]); // group 10 holding varint 11
        let mut p = piece_msg("a", 1.5, 1);
        p.extend(bytes_field(200, b"extension"));
        m.extend(bytes_field(1, &p));
        let mut trainer = varint_field(4, 32000);
        trainer.extend(bytes_field(44, "??".as_bytes()));
        m.extend(bytes_field(2, &trainer));
        let mut norm = bytes_field(1, b"identity");
        norm.extend(varint_field(3, 0));
        norm.extend(varint_field(4, 0));
        m.extend(bytes_field(3, &norm));
        m.extend(bytes_field(4, b"self test data"));
        let t = Tokenizer::from_bytes("t", &m).unwrap();
        assert_eq!(t.vocab_size(), 1);
        assert_eq!(t.piece(0), Some("a"));
        assert_eq!(t.score(0), Some(1.5));
        assert!(!t.add_dummy_prefix && !t.remove_extra_whitespaces);
        assert_eq!(t.unk_surface, "??");
    }

    #[test]
    fn malformed_models_are_errors() {
        let good = model(&[("<unk>", 2), ("a", 1)]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "no pieces"),
            (good[..good.len() - 1].to_vec(), "past the end"),
            (vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], "past the end"),
            ([9 << 3].into_iter().chain([0xff; 11]).collect(), "varint"),
            (bytes_field(1, &bytes_field(1, &[0xff, 0xfe])), "UTF-8"),
            (bytes_field(1, &piece_msg("a", 0.0, 9)), "unknown type 9"),
            (bytes_field(1, &piece_msg("<0xZZ>", 0.0, 6)), "<0xNN>"),
            (bytes_field(1, &piece_msg("", 0.0, 1)), "empty"),
            (bytes_field(1, &varint_field(3, 1)), "no piece string"),
            (varint_field(1, 5), "wire type"),
            (vec![0x0f], "wire type"),
            (vec![0x00, 0x00], "field number 0"),
            (vec![10 << 3 | 3], "group of field 10"),
        ];
        for (bytes, want) in cases {
            let e = Tokenizer::from_bytes("bad.model", &bytes)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("bad.model: "), "{e}");
            assert!(
                e.contains(want),
                "{bytes:02x?}: {e:?} does not say {want:?}"
            );
        }
    }

    #[test]
    fn byte_pieces() {
        assert_eq!(parse_byte_piece("<0x00>"), Some(0));
        assert_eq!(parse_byte_piece("<0xFF>"), Some(255));
        assert_eq!(parse_byte_piece("<0xff>"), None);
        assert_eq!(parse_byte_piece("<0x1>"), None);
        assert_eq!(parse_byte_piece("<0x+1>"), None);
        assert_eq!(parse_byte_piece("0xFF"), None);
    }
}
