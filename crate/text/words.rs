//! Word timestamps from an STT text-token stream, the procedure of Kyutai's
//! `stt_from_file_pytorch.py` (delayed-streams-modeling): the end-of-padding token (0) marks word
//! boundaries; the tokens between two boundaries (ids above the padding id kept) decode to one
//! word whose start and end are the boundary steps / frame rate − the offset, clamped at 0. A
//! segment that decodes to several words gives each word but the last as many steps as
//! SentencePiece's encoding of the word has pieces ([`encoded_len`]: the unigram model's best
//! segmentation, unknown characters as UTF-8 byte pieces) and the last word the rest. The last
//! segment ends at the first EOS after it, else `frame_rate` steps (truncated: 12) later or at the
//! end of the stream, whichever is first.

use std::collections::HashMap;

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
    let vocab = Vocab::new(tok);
    let mut out = Vec::new();
    let mut segment = |start: usize, end: usize| {
        let kept: Vec<u32> = tokens[start..end]
            .iter()
            .copied()
            .filter(|&t| t > ids.padding)
            .collect();
        let text = tok.decode(&kept);
        // Python's `str.split()`: Unicode white space and the separators U+001C..U+001F.
        let words: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
            .filter(|w| !w.is_empty())
            .collect();
        match words.len() {
            0 => {}
            1 => out.push(Word {
                text: text.clone(),
                start: time(start),
                end: time(end),
            }),
            n => {
                let mut at = start;
                for w in &words[..n - 1] {
                    let k = encoded_len(&vocab, w);
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

/// The pieces a word can be encoded with: text → score (normal pieces; user-defined ones score
/// 0), and whether unknown characters fall back to byte pieces.
struct Vocab<'a> {
    pieces: HashMap<&'a str, f32>,
    longest: usize,
    unk_score: f32,
    byte_fallback: bool,
}

impl<'a> Vocab<'a> {
    fn new(tok: &'a Tokenizer) -> Self {
        let mut pieces = HashMap::new();
        let mut min = 0f32;
        let mut byte_fallback = false;
        for id in 0..tok.vocab_size() as u32 {
            let (Some(p), Some(kind)) = (tok.piece(id), tok.piece_type(id)) else {
                continue;
            };
            match kind {
                PieceType::Normal => {
                    let score = tok.score(id).unwrap_or(0.0);
                    min = min.min(score);
                    pieces.insert(p, score);
                }
                PieceType::UserDefined => {
                    pieces.insert(p, 0.0);
                }
                PieceType::Byte(_) => byte_fallback = true,
                _ => {}
            }
        }
        let longest = pieces.keys().map(|p| p.chars().count()).max().unwrap_or(1);
        Self {
            pieces,
            longest,
            // SentencePiece's unknown-piece penalty.
            unk_score: min - 10.0,
            byte_fallback,
        }
    }
}

/// How many pieces SentencePiece's unigram encoding of `word` has: `▁` + the word (spaces as
/// `▁`), the segmentation of highest total score (Viterbi), an unknown character one piece, or
/// its UTF-8 bytes with byte fallback. The normalizer is taken as the identity.
fn encoded_len(vocab: &Vocab, word: &str) -> usize {
    let text: String = std::iter::once('▁')
        .chain(word.chars().map(|c| if c == ' ' { '▁' } else { c }))
        .collect();
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let n = bounds.len() - 1;
    // best[j]: (score, pieces) of the best segmentation of the first j characters.
    let mut best: Vec<Option<(f32, usize)>> = vec![None; n + 1];
    best[0] = Some((0.0, 0));
    for i in 0..n {
        let Some((score, count)) = best[i] else {
            continue;
        };
        let mut single = false;
        for j in i + 1..=n.min(i + vocab.longest) {
            if let Some(&s) = vocab.pieces.get(&text[bounds[i]..bounds[j]]) {
                single |= j == i + 1;
                let cand = (score + s, count + 1);
                if best[j].is_none_or(|b| cand.0 > b.0) {
                    best[j] = Some(cand);
                }
            }
        }
        if !single {
            let pieces = if vocab.byte_fallback {
                bounds[i + 1] - bounds[i]
            } else {
                1
            };
            let cand = (score + vocab.unk_score, count + pieces);
            if best[i + 1].is_none_or(|b| cand.0 > b.0) {
                best[i + 1] = Some(cand);
            }
        }
    }
    best[n].map_or(1, |b| b.1)
}
