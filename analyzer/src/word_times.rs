//! From Whisper's tokens to words on the original timeline.
//!
//! Words are assembled from tokens on raw bytes, not per-token strings: a
//! Cyrillic letter is two UTF-8 bytes and BPE tokens regularly split one.
//!
//! Placing a word is the delicate part. A window is several speech spans
//! packed back to back; whisper.cpp's token times are estimates, and at a
//! junction they drift into the silence: the first word of a new span is
//! timed early (beam search), the last word of an utterance late (greedy).
//! Mapped time by time, such a word lands in the other span, possibly tens
//! of seconds from where it was said («В» of «Ввожу…» at 6.89 s, said at
//! 29.86 s). So a word is placed by the speech inside the window, not by its
//! raw time: it belongs to the speech region (a tight VAD span, as the
//! window holds it) that its window time overlaps most; a word timed wholly
//! in silence belongs to the speech before it if it ends an utterance (a
//! sentence or a Whisper segment), else to the speech after it; words keep
//! their spoken order. Its time on the original clock is then clamped into
//! that region, so every word starts and ends inside one tight speech span,
//! by construction.

use crate::chunks::Window;

/// A decoded text token: its bytes, times in 10 ms units from the window
/// start, and probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub bytes: Vec<u8>,
    pub t0: i64,
    pub t1: i64,
    pub p: f32,
}

/// A word as Whisper timed it inside the window (10 ms units).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowWord {
    pub text: String,
    pub t0: i64,
    pub t1: i64,
    /// Mean token probability.
    pub confidence: f32,
    /// The last word of its Whisper segment.
    pub ends_segment: bool,
}

impl WindowWord {
    /// Ends a sentence or a Whisper segment: what follows is a new utterance.
    fn ends_utterance(&self) -> bool {
        self.ends_segment || self.text.ends_with(['.', '?', '!', '…'])
    }
}

/// Joins tokens into words: a token that starts with a space starts a word.
pub fn assemble(tokens: &[Token]) -> Vec<WindowWord> {
    let mut words = Vec::new();
    let mut cur: Option<(Vec<u8>, i64, i64, Vec<f32>)> = None;
    let flush = |cur: &mut Option<(Vec<u8>, i64, i64, Vec<f32>)>, words: &mut Vec<WindowWord>| {
        if let Some((bytes, t0, t1, ps)) = cur.take() {
            let text = String::from_utf8_lossy(&bytes).trim().to_string();
            if !text.is_empty() {
                words.push(WindowWord {
                    text,
                    t0,
                    t1: t1.max(t0),
                    confidence: ps.iter().sum::<f32>() / ps.len().max(1) as f32,
                    ends_segment: false,
                });
            }
        }
    };
    for tok in tokens {
        if tok.bytes.first() == Some(&b' ') || cur.is_none() {
            flush(&mut cur, &mut words);
            cur = Some((tok.bytes.clone(), tok.t0, tok.t1, vec![tok.p]));
        } else if let Some((b, _, t1, ps)) = cur.as_mut() {
            b.extend_from_slice(&tok.bytes);
            *t1 = tok.t1;
            ps.push(tok.p);
        }
    }
    flush(&mut cur, &mut words);
    if let Some(last) = words.last_mut() {
        last.ends_segment = true;
    }
    words
}

/// Where speech is inside a window: `win` in window samples, `orig` the
/// same stretch on the original timeline (a tight span, or the part of it in
/// one piece).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Region {
    win: (usize, usize),
    orig: (usize, usize),
    /// `win` less the VAD padding: the speech proper, for overlap tests.
    core: (usize, usize),
}

fn regions(w: &Window, pad: usize) -> Vec<Region> {
    let mut out = Vec::new();
    for p in &w.pieces {
        let to_win = |s: usize| p.at + s - p.from;
        let speech: Vec<(usize, usize)> = if p.speech.is_empty() {
            vec![(p.from, p.from + p.len)]
        } else {
            p.speech.clone()
        };
        for (s, e) in speech {
            let win = (to_win(s), to_win(e));
            let core = if win.1 - win.0 > 2 * pad {
                (win.0 + pad, win.1 - pad)
            } else {
                win
            };
            out.push(Region {
                win,
                orig: (s, e),
                core,
            });
        }
    }
    out
}

/// A word to place: window samples `t0..t1`, and whether it ends an
/// utterance (a sentence or a Whisper segment).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placing {
    pub t0: usize,
    pub t1: usize,
    pub ends_utterance: bool,
}

/// Original sample ranges of `words` (in spoken order). `pad` is the
/// padding the tight speech spans carry.
///
/// A word overlapping speech belongs to the speech it overlaps most. A word
/// timed entirely in silence drifted there: whisper.cpp runs early on the
/// first words of a packed span (beam search) and late on the last word of
/// an utterance (greedy); so a word that ends an utterance belongs to the
/// speech before it, any other to the speech after it.
pub fn place(w: &Window, words: &[Placing], pad: usize) -> Vec<(usize, usize)> {
    let regions = regions(w, pad);
    if regions.is_empty() {
        return words.iter().map(|p| (p.t0, p.t1)).collect();
    }
    let mut chosen: Vec<usize> = words
        .iter()
        .map(
            |&Placing {
                 t0,
                 t1,
                 ends_utterance,
             }| {
                let t1 = t1.max(t0);
                let overlap = |r: &Region| t1.min(r.core.1).saturating_sub(t0.max(r.core.0));
                let best = (0..regions.len())
                    .max_by_key(|&i| (overlap(&regions[i]), std::cmp::Reverse(i)))
                    .unwrap_or(0);
                if overlap(&regions[best]) > 0
                    || (t0 == t1 && (regions[best].core.0..regions[best].core.1).contains(&t0))
                {
                    best
                } else if ends_utterance {
                    regions.iter().rposition(|r| r.core.0 <= t0).unwrap_or(0)
                } else {
                    regions
                        .iter()
                        .position(|r| r.core.1 > t0)
                        .unwrap_or(regions.len() - 1)
                }
            },
        )
        .collect();
    // Spoken order: no word belongs to later speech than the word after it.
    for k in (0..chosen.len().saturating_sub(1)).rev() {
        chosen[k] = chosen[k].min(chosen[k + 1]);
    }
    words
        .iter()
        .zip(chosen)
        .map(|(&Placing { t0, t1, .. }, i)| {
            let r = regions[i];
            let to_orig = |t: usize| r.orig.0 + t.clamp(r.win.0, r.win.1) - r.win.0;
            let len = t1.saturating_sub(t0);
            // A word timed before (after) its speech keeps its length from
            // the speech's start (up to its end).
            if t0 < r.win.0 {
                (r.orig.0, (r.orig.0 + len).min(r.orig.1))
            } else if t0 >= r.win.1 {
                (r.orig.1.saturating_sub(len).max(r.orig.0), r.orig.1)
            } else {
                (to_orig(t0), to_orig(t1))
            }
        })
        .collect()
}

/// Whether Whisper's token times for a window's words carry no
/// information. In beam mode, or with a prompt, whisper.cpp sometimes emits
/// one segment for a whole window of packed speech with no timestamp inside
/// it; its token-time heuristic then piles the words at one instant (the
/// demo's elderly session: 30 of 32 words at the window's end, 37 s after
/// the first of them was said). Collapsed: at least 4 words, and over a
/// quarter of them with no length or starting where the word before did.
pub fn collapsed(words: &[WindowWord]) -> bool {
    if words.len() < 4 {
        return false;
    }
    let stuck = words
        .iter()
        .enumerate()
        .filter(|&(i, x)| x.t1 <= x.t0 || (i > 0 && x.t0 <= words[i - 1].t0))
        .count();
    stuck * 4 > words.len()
}

/// Cost in [`align_by_length`] of a region boundary inside a sentence
/// (people do pause mid-sentence, less often than between sentences), in
/// the units of [`mismatch`]. Chosen on a simulation (random sentences, 3-9
/// utterances, speaking rates 11-17 letters/s ± 20 %, 10-30 % of them split
/// mid-sentence by a pause, 10 % noise blips): 0.75 misplaced 2.3-4.2 % of
/// the words, 0.25 up to 8 %, 2.5 up to 9 %.
const MID_SENTENCE: f64 = 0.75;

/// How badly `said` seconds of words fit a region of `dur` seconds: the
/// difference, relative to the square root of the duration (a long region
/// tolerates a larger absolute error than a short one).
fn mismatch(dur: f64, said: f64) -> f64 {
    (dur - said).abs() / dur.max(0.3).sqrt()
}

/// How much speech a word takes, in arbitrary units: its letters and digits
/// plus one for the gap to the next word.
fn weight(text: &str) -> f64 {
    1.0 + text.chars().filter(|c| c.is_alphanumeric()).count() as f64
}

/// Places words by their length alone, for a window whose token times
/// [`collapsed`]: the words, in spoken order, are shared among the window's
/// speech regions so that each region's duration best matches the time its
/// words take at one speaking rate, preferring region ends at sentence
/// ends; a region can stay empty (a cough, a click). Inside a region the
/// words split its speech by their length. Every word ends up inside one
/// tight speech span, by construction. `lens` are the words' weights
/// ([`weight`]) and `ends` whether each ends an utterance.
fn align_by_length(regions: &[Region], lens: &[f64], ends: &[bool]) -> Vec<usize> {
    let n = lens.len();
    let r = regions.len();
    let dur: Vec<f64> = regions
        .iter()
        .map(|g| (g.core.1 - g.core.0) as f64 / 16_000.0)
        .collect();
    let mut prefix = vec![0.0; n + 1];
    for (i, l) in lens.iter().enumerate() {
        prefix[i + 1] = prefix[i] + l;
    }
    // Seconds per unit: first over all speech, then over the regions the
    // first pass gave words (a noise region would slow the rate down).
    let mut rate = dur.iter().sum::<f64>() / prefix[n].max(1.0);
    let mut owner = vec![0usize; n];
    for _pass in 0..2 {
        // cost[g][k]: regions 0..g hold words 0..k.
        let mut cost = vec![vec![f64::INFINITY; n + 1]; r + 1];
        let mut from = vec![vec![0usize; n + 1]; r + 1];
        cost[0][0] = 0.0;
        for g in 0..r {
            for k in 0..=n {
                if !cost[g][k].is_finite() {
                    continue;
                }
                for j in k..=n {
                    let said = rate * (prefix[j] - prefix[k]);
                    let mut c = cost[g][k] + mismatch(dur[g], said);
                    if j > k && j < n && !ends[j - 1] {
                        c += MID_SENTENCE;
                    }
                    if c < cost[g + 1][j] {
                        cost[g + 1][j] = c;
                        from[g + 1][j] = k;
                    }
                }
            }
        }
        let mut j = n;
        for g in (0..r).rev() {
            let k = from[g + 1][j];
            owner[k..j].iter_mut().for_each(|o| *o = g);
            j = k;
        }
        let used: f64 = (0..r).filter(|&g| owner.contains(&g)).map(|g| dur[g]).sum();
        rate = used / prefix[n].max(1.0);
    }
    owner
}

/// Original sample ranges of words placed by [`align_by_length`].
fn place_by_length(w: &Window, words: &[WindowWord], pad: usize) -> Vec<(usize, usize)> {
    let regions = regions(w, pad);
    if regions.is_empty() || words.is_empty() {
        return words.iter().map(|_| (0, 0)).collect();
    }
    let lens: Vec<f64> = words.iter().map(|x| weight(&x.text)).collect();
    let ends: Vec<bool> = words.iter().map(WindowWord::ends_utterance).collect();
    let owner = align_by_length(&regions, &lens, &ends);
    let mut out = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let g = owner[i];
        let j = (i..words.len())
            .find(|&j| owner[j] != g)
            .unwrap_or(words.len());
        let reg = regions[g];
        let (a, b) = reg.core;
        let total: f64 = lens[i..j].iter().sum();
        let mut at = 0.0;
        for l in &lens[i..j] {
            let s = a + ((b - a) as f64 * at / total) as usize;
            at += l;
            let e = a + ((b - a) as f64 * at / total) as usize;
            let to_orig = |t: usize| reg.orig.0 + t.clamp(reg.win.0, reg.win.1) - reg.win.0;
            out.push((to_orig(s), to_orig(e)));
        }
        i = j;
    }
    out
}

/// [`place`] for assembled words, whose times are in 10 ms units; the
/// regions are the tight VAD spans (`SpanParams::tight`). When the token
/// times [`collapsed`], the words are placed by their length instead.
pub fn place_words(w: &Window, words: &[WindowWord]) -> Vec<(usize, usize)> {
    let pad = crate::vad::SpanParams::tight().pad_ms as usize * 16;
    if collapsed(words) {
        tracing::debug!(
            "token times collapsed for {} words; placed by length",
            words.len()
        );
        return place_by_length(w, words, pad);
    }
    let at = |t: i64| t.max(0) as usize * 160;
    let spans: Vec<Placing> = words
        .iter()
        .map(|x| Placing {
            t0: at(x.t0),
            t1: at(x.t1),
            ends_utterance: x.ends_utterance(),
        })
        .collect();
    place(w, &spans, pad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::Piece;

    const S: usize = 16_000;
    const PAD: usize = S / 10;

    /// A word at window samples `t0..t1` that does not end an utterance.
    fn mid((t0, t1): (usize, usize)) -> Placing {
        Placing {
            t0,
            t1,
            ends_utterance: false,
        }
    }

    fn tok(text: &str, t0: i64, t1: i64) -> Token {
        Token {
            bytes: text.as_bytes().to_vec(),
            t0,
            t1,
            p: 0.5,
        }
    }

    #[test]
    fn tokens_join_into_words_on_bytes() {
        // «Ввожу» split inside a two-byte letter: bytes, not strings, join.
        let v = "Ввожу".as_bytes();
        let words = assemble(&[
            tok(" В", 0, 10),
            Token {
                bytes: v[2..3].to_vec(),
                ..tok("", 10, 20)
            },
            Token {
                bytes: v[3..].to_vec(),
                ..tok("", 20, 40)
            },
            tok(" номер", 40, 70),
        ]);
        let got: Vec<(&str, i64, i64)> = words
            .iter()
            .map(|w| (w.text.as_str(), w.t0, w.t1))
            .collect();
        assert_eq!(got, [("Ввожу", 0, 40), ("номер", 40, 70)]);
    }

    /// Two spans said 20 s apart, packed into one window: piece A (speech
    /// 0.4-2.6 s) at 0, piece B (speech at 30.4-32 s) after a 0.3 s joint.
    fn window() -> Window {
        Window {
            pieces: vec![
                Piece {
                    at: 0,
                    from: 10 * S,
                    len: 3 * S,
                    speech: vec![(10 * S + 4 * S / 10, 12 * S + 6 * S / 10)],
                },
                Piece {
                    at: 3 * S + 3 * S / 10,
                    from: 30 * S,
                    len: 2 * S + 4 * S / 10,
                    speech: vec![(30 * S + 4 * S / 10, 32 * S)],
                },
            ],
            len: 5 * S + 7 * S / 10,
        }
    }

    #[test]
    fn a_word_timed_in_the_silence_before_a_junction_goes_to_the_speech_after_it() {
        let w = window();
        let b0 = 3 * S + 3 * S / 10; // piece B in the window
        let placed = place(
            &w,
            &[
                // Last word of A, inside its speech.
                mid((2 * S, 2 * S + S / 2)),
                // First word of B timed 0.5 s early, in A's padding: it was said in B.
                mid((2 * S + 7 * S / 10, 3 * S + S / 5)),
                // The next word, in B's speech.
                mid((b0 + S, b0 + 3 * S / 2)),
            ],
            PAD,
        );
        assert_eq!(placed[0], (12 * S, 12 * S + S / 2));
        // Starts where B's speech starts, keeps its length, never in A.
        assert_eq!(
            placed[1],
            (30 * S + 4 * S / 10, 30 * S + 4 * S / 10 + S / 2)
        );
        assert_eq!(placed[2], (31 * S, 31 * S + S / 2));
        // A last word that runs on into the joint stays in A, clamped to its speech.
        let placed = place(&w, &[mid((2 * S + 3 * S / 10, b0 + S / 10))], PAD);
        assert_eq!(placed[0], (12 * S + 3 * S / 10, 12 * S + 6 * S / 10));
    }

    #[test]
    fn a_last_word_timed_late_in_the_silence_stays_with_its_utterance() {
        let w = window();
        let b0 = 3 * S + 3 * S / 10;
        // Greedy decoding timed «данные?» after A's speech, in the silence of
        // the junction; it ends a sentence, so it was said in A, not 20 s later.
        let placed = place(
            &w,
            &[
                mid((2 * S, 2 * S + S / 2)),
                Placing {
                    t0: 2 * S + 6 * S / 10,
                    t1: 3 * S + S / 5,
                    ends_utterance: true,
                },
                mid((b0 + S, b0 + 3 * S / 2)),
            ],
            PAD,
        );
        assert_eq!(placed[1], (12 * S, 12 * S + 6 * S / 10));
        assert_eq!(placed[2], (31 * S, 31 * S + S / 2));
    }

    #[test]
    fn a_segment_or_sentence_end_ends_an_utterance() {
        let words = assemble(&[
            tok(" Где", 0, 10),
            tok(" данные?", 10, 40),
            tok(" Дальше", 50, 60),
            tok(" вот", 60, 70),
        ]);
        let ends: Vec<bool> = words.iter().map(WindowWord::ends_utterance).collect();
        assert_eq!(ends, [false, true, false, true]);
    }

    #[test]
    fn order_wins_over_a_stray_overlap_and_every_word_stays_in_speech() {
        let w = window();
        let b0 = 3 * S + 3 * S / 10;
        // A word that overlaps B's speech, followed by one inside A: Whisper
        // reads in spoken order, so the first belongs to A too.
        let placed = place(
            &w,
            &[
                mid((b0 + S / 2, b0 + S)),
                mid((S, S + S / 2)),
                // Timed past the end of the window: the last speech.
                mid((w.len + S, w.len + 2 * S)),
            ],
            PAD,
        );
        // Both keep their length, ending where their speech ends.
        assert_eq!(placed[0], (12 * S + S / 10, 12 * S + 6 * S / 10));
        assert_eq!(placed[1], (11 * S, 11 * S + S / 2));
        assert_eq!(placed[2], (31 * S, 32 * S));
        for (i, &(s, e)) in placed.iter().enumerate() {
            let inside = w
                .pieces
                .iter()
                .flat_map(|p| &p.speech)
                .any(|&(a, b)| a <= s && e <= b);
            assert!(inside, "word {i} at {s}..{e} is outside every speech span");
        }
    }

    #[test]
    fn a_piece_without_tight_speech_is_its_own_region() {
        let mut w = window();
        w.pieces[1].speech.clear();
        let b0 = 3 * S + 3 * S / 10;
        let placed = place(&w, &[mid((b0 + S / 10, b0 + S / 2))], PAD);
        assert_eq!(placed[0], (30 * S + S / 10, 30 * S + S / 2));
    }

    /// A window of one piece per utterance, each piece's speech `secs` long
    /// (plus PAD each side), 0.3 s joints, said 10 s apart.
    fn utterances(secs: &[f64]) -> Window {
        let mut pieces = Vec::new();
        let mut at = 0;
        for (i, &d) in secs.iter().enumerate() {
            let len = (d * S as f64) as usize + 2 * PAD;
            let from = (i + 1) * 10 * S;
            pieces.push(Piece {
                at,
                from,
                len,
                speech: vec![(from, from + len)],
            });
            at += len + 3 * S / 10;
        }
        Window { pieces, len: at }
    }

    fn collapsed_words(text: &str) -> Vec<WindowWord> {
        let n = text.split_whitespace().count();
        text.split_whitespace()
            .enumerate()
            .map(|(i, t)| WindowWord {
                text: t.to_string(),
                t0: if i == 0 { 0 } else { 900 },
                t1: 900,
                confidence: 0.5,
                ends_segment: i + 1 == n,
            })
            .collect()
    }

    #[test]
    fn piled_up_token_times_are_detected() {
        let words = collapsed_words("Так, пособие на ребенка. Так, вводим дату.");
        assert!(collapsed(&words));
        // Real times, even a word with none, are not a collapse.
        let mut ok: Vec<WindowWord> = (0..8)
            .map(|i| WindowWord {
                text: "слово".into(),
                t0: i * 50,
                t1: i * 50 + 40,
                confidence: 0.5,
                ends_segment: false,
            })
            .collect();
        ok[3].t1 = ok[3].t0;
        assert!(!collapsed(&ok));
        assert!(!collapsed(&words[..3]));
    }

    #[test]
    fn collapsed_words_are_shared_among_the_utterances_by_length() {
        // The demo's elderly participant: seven utterances, one a cough-like
        // 0.3 s blip with no word; durations as espeak-ng said them (about
        // 14 letters a second, give or take 20 %).
        let said = [
            "Так, пособие на ребенка.",
            "Так, вводим дату рождения.",
            "",
            "Так, не понимаю, куда тут нажимать?",
            "Так, не работает.",
            "Где здесь загрузить?",
            "А что здесь нужно нажать?",
        ];
        let secs = [1.6, 2.3, 0.3, 2.2, 1.4, 1.3, 2.0];
        let w = utterances(&secs);
        let text: Vec<&str> = said.iter().copied().filter(|t| !t.is_empty()).collect();
        let words = collapsed_words(&text.join(" "));
        let placed = place_words(&w, &words);
        let mut k = 0;
        for (u, t) in said.iter().enumerate() {
            let (a, b) = w.pieces[u].speech[0];
            for word in t.split_whitespace() {
                let (s, e) = placed[k];
                assert!(
                    a <= s && e <= b && s < e,
                    "«{word}» at {s}..{e}, said in utterance {u} ({a}..{b})"
                );
                k += 1;
            }
        }
        assert_eq!(k, placed.len());
        // In spoken order inside each utterance.
        assert!(placed.windows(2).all(|p| p[0].1 <= p[1].0));
    }
}
