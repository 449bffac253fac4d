//! Word timestamps from an STT text-token stream, the procedure of Kyutai's
//! `stt_from_file_pytorch.py` (delayed-streams-modeling): the end-of-padding token (0) marks word
//! boundaries; the tokens between two boundaries (ids above the padding id kept) decode to one
//! word whose start and end are the boundary steps / frame rate − the offset, clamped at 0. A
//! segment that decodes to several words gives each word but the last as many steps as it has
//! pieces (the script re-encodes the word with SentencePiece; parle counts the word's own pieces
//! in the segment, a `▁` piece starting a word, which is the same count for the tokens a model
//! writes) and the last word the rest. The last segment ends at the first EOS after it, else one
//! second (`frame_rate` steps) later or at the end of the stream, whichever is first.

use super::{PieceType, Tokenizer};

/// One word with its start and end in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub text: String,
    pub start: f64,
    pub end: f64,
}

/// The token ids the procedure treats specially.
#[derive(Debug, Clone, Copy)]
pub struct WordIds {
    /// Tokens at or below it are dropped from a word (`text_padding_token_id`, 3).
    pub padding: u32,
    /// The word boundary (`end_of_padding_id`, 0).
    pub end_of_padding: u32,
    /// End of the last word, when it comes (the tokenizer's `</s>`).
    pub eos: u32,
}

impl WordIds {
    /// Kyutai's ids (pad 3, end of padding 0) and the tokenizer's `</s>` (2 if it has none).
    pub fn kyutai(tok: &Tokenizer) -> Self {
        let eos = (0..tok.vocab_size() as u32)
            .find(|&i| {
                tok.piece_type(i) == Some(PieceType::Control) && tok.piece(i) == Some("</s>")
            })
            .unwrap_or(2);
        Self {
            padding: 3,
            end_of_padding: 0,
            eos,
        }
    }
}

/// Words of `tokens` (one per step) with their times: step / `frame_rate` − `offset` seconds.
pub fn word_timestamps(
    tokens: &[u32],
    tok: &Tokenizer,
    ids: WordIds,
    frame_rate: f64,
    offset: f64,
) -> Vec<Word> {
    let time = |step: usize| (step as f64 / frame_rate - offset).max(0.0);
    let mut out = Vec::new();
    let mut segment = |start: usize, end: usize| {
        let kept: Vec<u32> = tokens[start..end]
            .iter()
            .copied()
            .filter(|&t| t > ids.padding)
            .collect();
        let text = tok.decode(&kept);
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.len() {
            0 => {}
            1 => out.push(Word {
                text: text.clone(),
                start: time(start),
                end: time(end),
            }),
            n => {
                let counts = pieces_per_word(&kept, tok);
                let mut at = start;
                for (i, w) in words[..n - 1].iter().enumerate() {
                    let k = counts.get(i).copied().unwrap_or(1);
                    out.push(Word {
                        text: w.to_string(),
                        start: time(at),
                        end: time(at + k),
                    });
                    at += k;
                }
                out.push(Word {
                    text: words[n - 1].to_string(),
                    start: time(at),
                    end: time(end),
                });
            }
        }
    };
    let bounds: Vec<usize> = (0..tokens.len())
        .filter(|&i| tokens[i] == ids.end_of_padding)
        .collect();
    let Some(&last_bound) = bounds.last() else {
        return out;
    };
    for pair in bounds.windows(2) {
        segment(pair[0] + 1, pair[1]);
    }
    let last = last_bound + 1;
    let end = match tokens[last..].iter().position(|&t| t == ids.eos) {
        Some(p) => last + p,
        None => tokens.len().min(last + frame_rate as usize),
    };
    segment(last, end.max(last));
    out
}

/// Pieces of each word of `ids`: a piece starting with `▁` opens a word.
fn pieces_per_word(ids: &[u32], tok: &Tokenizer) -> Vec<usize> {
    let mut counts: Vec<usize> = Vec::new();
    for &id in ids {
        let opens = tok.piece(id).is_some_and(|p| p.starts_with('▁'));
        match counts.last_mut() {
            Some(c) if !opens => *c += 1,
            _ => counts.push(1),
        }
    }
    counts
}
