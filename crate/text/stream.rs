//! Incremental display of the text stream (spec §3.5).
//!
//! SentencePiece's `decode` joins pieces like this, and [`Decoder`] does the same one id at a
//! time (so the concatenation of the deltas equals `decode` of the whole sequence):
//! - control pieces (`<s>`, `</s>`, `<pad>`) give nothing; `<unk>` gives the unknown surface;
//! - `▁` becomes a space, except that the leading `▁` of a piece is dropped while nothing has
//!   been shown yet (with `remove_extra_whitespaces`, the default: for every piece until text
//!   appears; with only `add_dummy_prefix`: for the first piece);
//! - byte pieces `<0xNN>` are joined into UTF-8 and a character is shown once complete; a byte
//!   that cannot start or continue a valid sequence, or an incomplete sequence cut short by a
//!   non-byte piece or the end, becomes one U+FFFD per byte.
//!
//! [`TextStream`] adds what Moshi's text stream needs on top: the padding ids (PAD 3 and EPAD 0)
//! and ids outside the vocabulary (the initial token 32000) are shown as nothing and leave the
//! state untouched (a character split into byte pieces across padded frames still joins up).

use std::sync::Arc;

use super::{PieceType, Tokenizer, SPACE_MARK};

/// Joining state of SentencePiece's decoder.
#[derive(Debug, Clone)]
pub(crate) struct Decoder {
    /// Bytes of an incomplete UTF-8 character (at most 3).
    pending: Vec<u8>,
    /// Still at the beginning of the text: a leading `▁` is dropped.
    is_bos_ws: bool,
    /// The previous non-byte piece had its leading `▁` dropped.
    bos_ws_seen: bool,
    /// Some text has been produced.
    emitted: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            pending: Vec::with_capacity(4),
            is_bos_ws: true,
            bos_ws_seen: false,
            emitted: false,
        }
    }
}

impl Decoder {
    /// Append the text of `id` (which must be in range) to `out`.
    pub(crate) fn push(&mut self, tok: &Tokenizer, id: u32, out: &mut String) {
        let (Some(kind), Some(piece)) = (tok.piece_type(id), tok.piece(id)) else {
            return;
        };
        let start = out.len();
        if let PieceType::Byte(b) = kind {
            self.pending.push(b);
            self.drain(out, false);
        } else {
            self.drain(out, true);
            if self.bos_ws_seen || self.emitted || out.len() > start {
                self.is_bos_ws = false;
            }
            self.bos_ws_seen = false;
            match kind {
                PieceType::Control => {}
                PieceType::Unknown => out.push_str(&tok.unk_surface),
                _ => {
                    let mut p = piece;
                    if self.is_bos_ws && (tok.add_dummy_prefix || tok.remove_extra_whitespaces) {
                        if let Some(rest) = p.strip_prefix(SPACE_MARK) {
                            p = rest;
                            // With remove_extra_whitespaces every leading space is dropped
                            // until text appears, not only the first.
                            self.bos_ws_seen = !tok.remove_extra_whitespaces;
                        }
                    }
                    out.extend(p.chars().map(|c| if c == SPACE_MARK { ' ' } else { c }));
                }
            }
        }
        if out.len() > start {
            self.emitted = true;
        }
    }

    /// Flush an incomplete character at the end of the text.
    pub(crate) fn finish(&mut self, out: &mut String) {
        let start = out.len();
        self.drain(out, true);
        if out.len() > start {
            self.emitted = true;
        }
    }

    /// Move complete characters from `pending` to `out`; invalid bytes (and, at the end of a
    /// byte run, incomplete ones) become U+FFFD one byte at a time, as SentencePiece does.
    fn drain(&mut self, out: &mut String, end_of_run: bool) {
        while !self.pending.is_empty() {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                }
                Err(e) => {
                    let k = e.valid_up_to();
                    if k > 0 {
                        out.push_str(std::str::from_utf8(&self.pending[..k]).unwrap_or_default());
                        self.pending.drain(..k);
                    } else if e.error_len().is_some() || end_of_run {
                        out.push('\u{FFFD}');
                        self.pending.remove(0);
                    } else {
                        return; // a valid prefix: wait for the next byte
                    }
                }
            }
        }
    }
}

/// Moshi's text tokens, one per frame, in; the text to append to the display out.
#[derive(Debug, Clone)]
pub struct TextStream {
    tokenizer: Arc<Tokenizer>,
    pad: u32,
    epad: Option<u32>,
    decoder: Decoder,
}

impl TextStream {
    /// Moshi's padding ids: PAD 3 (`existing_text_padding_id`), EPAD 0.
    pub const PAD: u32 = 3;
    pub const EPAD: u32 = 0;

    /// A stream with Moshi's padding ids (PAD 3, EPAD 0).
    pub fn new(tokenizer: Arc<Tokenizer>) -> Self {
        Self::with_padding(tokenizer, Self::PAD, Some(Self::EPAD))
    }

    /// A stream with other padding ids (`pad` = the LM config's `existing_text_padding_id`;
    /// `epad` = the end-of-padding id, if the model has one).
    pub fn with_padding(tokenizer: Arc<Tokenizer>, pad: u32, epad: Option<u32>) -> Self {
        Self {
            tokenizer,
            pad,
            epad,
            decoder: Decoder::default(),
        }
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// The text to show for the next frame's token (often empty).
    pub fn push(&mut self, id: u32) -> String {
        let mut out = String::new();
        if id != self.pad && Some(id) != self.epad {
            self.decoder.push(&self.tokenizer, id, &mut out);
        }
        out
    }

    /// At the end of a conversation: an incomplete character left in byte pieces, as U+FFFD.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        self.decoder.finish(&mut out);
        out
    }

    /// Start a new conversation (the next piece is again the first).
    pub fn reset(&mut self) {
        self.decoder = Decoder::default();
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::model;
    use super::*;

    fn tok(add_dummy_prefix: bool, remove_extra_whitespaces: bool) -> Arc<Tokenizer> {
        let mut pieces: Vec<(String, u32)> = vec![
            ("<unk>".into(), 2),
            ("<s>".into(), 3),
            ("</s>".into(), 3),
            ("<pad>".into(), 3),
            ("▁".into(), 1),      // 4
            ("▁Hello".into(), 1), // 5
            (",".into(), 1),      // 6
            ("▁wor".into(), 1),   // 7
            ("ld".into(), 1),     // 8
            ("a▁b".into(), 1),    // 9
        ];
        pieces.extend((0..=255u32).map(|b| (format!("<0x{b:02X}>"), 6))); // 10 + b
        let refs: Vec<(&str, u32)> = pieces.iter().map(|(p, k)| (p.as_str(), *k)).collect();
        let mut t = Tokenizer::from_bytes("t", &model(&refs)).unwrap();
        t.add_dummy_prefix = add_dummy_prefix;
        t.remove_extra_whitespaces = remove_extra_whitespaces;
        Arc::new(t)
    }

    fn byte(b: u8) -> u32 {
        10 + b as u32
    }

    fn deltas(s: &mut TextStream, ids: &[u32]) -> Vec<String> {
        ids.iter().map(|&i| s.push(i)).collect()
    }

    #[test]
    fn words_and_padding() {
        let t = tok(true, true);
        let mut s = TextStream::new(t.clone());
        // Initial token 32000, padding, then "Hello, world" one piece per frame.
        let ids = [32000, 3, 3, 0, 5, 3, 6, 0, 7, 8, 3, 3];
        let d = deltas(&mut s, &ids);
        assert_eq!(
            d,
            ["", "", "", "", "Hello", "", ",", "", " wor", "ld", "", ""]
        );
        assert_eq!(d.concat(), t.decode(&[5, 6, 7, 8]));
        // Pieces with an inner ▁.
        assert_eq!(s.push(9), "a b");
        // After reset the first piece loses its space again.
        s.reset();
        assert_eq!(s.push(7), "wor");
        assert_eq!(s.push(7), " wor");
    }

    #[test]
    fn leading_spaces_follow_sentencepiece() {
        // remove_extra_whitespaces (default): leading ▁ dropped until text appears.
        let t = tok(true, true);
        assert_eq!(t.decode(&[4, 4, 5, 5]), "Hello Hello");
        assert_eq!(t.decode(&[1, 5, 2, 5]), "Hello Hello");
        // add_dummy_prefix only: only the first piece's ▁ is dropped.
        let t = tok(true, false);
        assert_eq!(t.decode(&[4, 5]), " Hello");
        assert_eq!(t.decode(&[5, 5]), "Hello Hello");
        // Neither: nothing dropped.
        let t = tok(false, false);
        assert_eq!(t.decode(&[5]), " Hello");
        // Unknown and control.
        let t = tok(true, true);
        assert_eq!(t.decode(&[0, 5]), " \u{2047}  Hello");
        assert_eq!(t.decode(&[1, 2, 3]), "");
    }

    #[test]
    fn bytes_join_into_characters() {
        let t = tok(true, true);
        let mut s = TextStream::new(t.clone());
        // "é" = C3 A9 split across frames with padding between.
        assert_eq!(s.push(byte(0xC3)), "");
        assert_eq!(s.push(3), "");
        assert_eq!(s.push(byte(0xA9)), "é");
        // "🙂" = F0 9F 99 82, then a word: its space is kept (text is not empty).
        let smile: Vec<String> = [0xF0, 0x9F, 0x99, 0x82]
            .iter()
            .map(|&b| s.push(byte(b)))
            .collect();
        assert_eq!(smile, ["", "", "", "🙂"]);
        assert_eq!(s.push(5), " Hello");
        // Invalid bytes: one U+FFFD each, nothing lost.
        assert_eq!(s.push(byte(0x80)), "\u{FFFD}");
        assert_eq!(s.push(byte(0xFF)), "\u{FFFD}");
        // An incomplete character cut short by a word: one U+FFFD per byte, then the word.
        assert_eq!(s.push(byte(0xE2)), "");
        assert_eq!(s.push(byte(0x82)), "");
        assert_eq!(s.push(6), "\u{FFFD}\u{FFFD},");
        // A lead byte followed by a byte that cannot continue it.
        assert_eq!(s.push(byte(0xF0)), "");
        assert_eq!(s.push(byte(0x41)), "\u{FFFD}A");
        // Cut short by the end.
        assert_eq!(s.push(byte(0xE2)), "");
        assert_eq!(s.finish(), "\u{FFFD}");
        assert_eq!(s.finish(), "");
        // Same through decode (SentencePiece: F0 9F 41 → U+FFFD U+FFFD A).
        assert_eq!(
            t.decode(&[byte(0xF0), byte(0x9F), byte(0x41)]),
            "\u{FFFD}\u{FFFD}A"
        );
        // Surrogates and overlong forms are invalid.
        assert_eq!(
            t.decode(&[byte(0xED), byte(0xA0), byte(0x80)]),
            "\u{FFFD}\u{FFFD}\u{FFFD}"
        );
        assert_eq!(t.decode(&[byte(0xC0), byte(0x80)]), "\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn leading_bytes_count_as_text() {
        let t = tok(true, true);
        let mut s = TextStream::new(t);
        assert_eq!(s.push(byte(b'x')), "x");
        assert_eq!(s.push(5), " Hello");
    }

    #[test]
    fn other_padding_ids() {
        let t = tok(true, true);
        let mut s = TextStream::with_padding(t, 6, None);
        assert_eq!(s.push(6), "");
        assert_eq!(s.push(3), ""); // control piece: nothing anyway
        assert_eq!(s.push(0), " \u{2047} "); // no EPAD: id 0 is <unk>
    }
}
