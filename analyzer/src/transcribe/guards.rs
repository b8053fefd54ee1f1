//! The rules that decide whether a decoding of one window can be trusted:
//! faster-whisper's (zlib compression ratio, mean token log-probability,
//! no-speech probability), plus a repeated n-gram guard of our own that also
//! says where a loop begins, so a window that loops at every temperature can
//! be cut there. All pure, so each rule is tested on its own.

use std::io::Write;

/// Temperatures tried in order, as faster-whisper and OpenAI's reference:
/// 0.0 (beam search or greedy), then sampling at 0.2 … 1.0.
pub const TEMPERATURES: [f32; 6] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];

/// Thresholds of the acceptance rules. The defaults are faster-whisper's
/// (`compression_ratio_threshold`, `log_prob_threshold`,
/// `no_speech_threshold`) plus the n-gram run rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// A text whose UTF-8 bytes compress (zlib, level 6) by more than this is repetitive.
    pub compression_ratio: f32,
    /// Mean log-probability per token under which an attempt is rejected.
    pub avg_logprob: f32,
    /// With a mean log-probability under `avg_logprob`, a window whose
    /// no-speech probability exceeds this is silence: no text, no fallback.
    pub no_speech: f32,
    /// The same token n-gram this many times in a row is a loop. Three, as
    /// the bench's loop count (`scripts/bench_transcribe.py` `loops`): a
    /// spoken «да, да, да» costs a re-decode, and a cut only when every
    /// temperature repeats it; twice is speech.
    pub min_repeats: usize,
    /// Longest n-gram (tokens) checked for repetition.
    pub max_unit: usize,
    /// The same character this many times in a row is a loop too (whatever
    /// the tokens: BPE splits a run of one letter unevenly).
    pub char_run: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            compression_ratio: 2.4,
            avg_logprob: -1.0,
            no_speech: 0.6,
            min_repeats: 3,
            max_unit: 12,
            char_run: 8,
        }
    }
}

/// `len(text) / len(zlib(text))` on UTF-8 bytes, as faster-whisper's
/// `get_compression_ratio`. 0 for empty text.
pub fn compression_ratio(text: &str) -> f32 {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return 0.0;
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    // Writing to a Vec cannot fail.
    let compressed = z
        .write_all(bytes)
        .and_then(|()| z.finish())
        .map_or(bytes.len(), |c| c.len());
    bytes.len() as f32 / compressed.max(1) as f32
}

/// A unit of `unit` tokens repeated `repeats` times in a row from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub start: usize,
    pub unit: usize,
    pub repeats: usize,
}

impl Run {
    /// Where to cut: after the first copy of the unit (the words before the
    /// loop, and the unit said once, stay).
    pub fn cut(&self) -> usize {
        self.start + self.unit
    }
}

/// The earliest run of a token n-gram (1 to `max_unit` tokens) repeated at
/// least `min_repeats` times in a row. Among runs that start at the same
/// token, the shortest unit wins («ю ю ю ю» is a run of «ю», not of «ю ю»).
pub fn repeated_run<T: PartialEq>(tokens: &[T], th: &Thresholds) -> Option<Run> {
    let min = th.min_repeats.max(2);
    for start in 0..tokens.len() {
        for unit in 1..=th.max_unit {
            if start + unit * min > tokens.len() {
                break;
            }
            let same = |k: usize| {
                let a = start + k * unit;
                a + unit <= tokens.len()
                    && tokens[a..a + unit]
                        .iter()
                        .zip(&tokens[start..start + unit])
                        .all(|(x, y)| x == y)
            };
            let mut repeats = 1;
            while same(repeats) {
                repeats += 1;
            }
            if repeats >= min {
                return Some(Run {
                    start,
                    unit,
                    repeats,
                });
            }
        }
    }
    None
}

/// Byte range of the first repeated word n-gram's extra copies, from where
/// its second copy begins to where its last copy ends: words (letters and digits, lower case, ё as е; punctuation and
/// hyphens between them ignored) repeated `min_repeats` times in a row, the
/// bench's own loop rule (`scripts/bench_transcribe.py` `loops`). This
/// catches what the token rule misses when the separators differ between
/// copies («ста, ста ста», «ну-ну, ну»): BPE gives such copies other tokens.
pub fn word_run(text: &str, th: &Thresholds) -> Option<(usize, usize)> {
    // (start byte, end byte, folded word)
    let mut words: Vec<(usize, usize, String)> = Vec::new();
    let mut cur: Option<(usize, usize, String)> = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            let w = cur.get_or_insert_with(|| (i, i, String::new()));
            w.1 = i + c.len_utf8();
            w.2.extend(fold(c));
        } else if let Some(w) = cur.take() {
            words.push(w);
        }
    }
    words.extend(cur);
    let norm: Vec<&str> = words.iter().map(|w| w.2.as_str()).collect();
    let run = repeated_run(&norm, th)?;
    let first = words.get(run.cut())?.0;
    let last = words.get(run.start + run.unit * run.repeats - 1)?.1;
    Some((first, last))
}

/// The first loop in a window's text tokens (ids, and the bytes of each),
/// as the range of tokens to drop: from the end of the loop's first copy to
/// the end of its last, so the words before it, one copy, and whatever the
/// decoder wrote after finding its way out stay. Token n-grams, character
/// runs and word n-grams are all looked for; the earliest loop wins.
pub fn loop_span(ids: &[i32], bytes: &[&[u8]], th: &Thresholds) -> Option<(usize, usize)> {
    let by_ngram = repeated_run(ids, th).map(|r| (r.cut(), r.start + r.unit * r.repeats));
    let mut text = Vec::new();
    let mut ends = Vec::new();
    for b in bytes {
        text.extend_from_slice(b);
        ends.push(text.len());
    }
    let text = String::from_utf8_lossy(&text);
    // The token holding byte `b`, and the tokens that hold bytes a..b.
    let holder = |b: usize| ends.iter().position(|&e| e > b).unwrap_or(ends.len());
    let tokens =
        |(a, b): (usize, usize)| (holder(a), (holder(b.saturating_sub(1)) + 1).min(ends.len()));
    let by_char = char_run(&text, th).map(tokens);
    // Word n-grams too: copies with other separators are other tokens.
    let by_word = word_run(&text, th).map(tokens);
    [by_ngram, by_char, by_word]
        .into_iter()
        .flatten()
        .filter(|(a, b)| a < b)
        .min_by_key(|s| s.0)
}

/// Byte range to drop of the first run of one non-space character repeated
/// at least `th.char_run` times: from after its first 3 characters («ааа»
/// may be said; «аааааааа» is a loop) to its end.
pub fn char_run(text: &str, th: &Thresholds) -> Option<(usize, usize)> {
    let mut run_start = 0;
    let mut run_char = None;
    let mut n = 0;
    let mut found: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if Some(c) == run_char {
            n += 1;
        } else {
            if let Some(cut) = found {
                return Some((cut, i));
            }
            run_char = Some(c);
            run_start = i;
            n = 1;
        }
        if n >= th.char_run && !c.is_whitespace() && found.is_none() {
            found = Some(run_start + c.len_utf8() * 3);
        }
    }
    found.map(|cut| (cut, text.len()))
}

/// What one decoding attempt of a window scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    pub compression_ratio: f32,
    /// Mean log-probability of the output tokens (text and timestamps).
    pub avg_logprob: f32,
    /// The highest no-speech probability of the window's segments.
    pub no_speech: f32,
    /// A repetition loop (token n-gram or character run) was found.
    pub loops: bool,
    /// The attempt produced no text at all.
    pub empty: bool,
}

impl Quality {
    /// faster-whisper's silence rule: likely no speech and an unsure decoding.
    pub fn is_no_speech(&self, th: &Thresholds) -> bool {
        self.no_speech > th.no_speech && self.avg_logprob < th.avg_logprob
    }

    /// Whether the attempt passes every rule (faster-whisper's
    /// `needs_fallback` negated, plus the loop rule). Silence passes: a hotter
    /// temperature cannot make words out of it.
    pub fn accepted(&self, th: &Thresholds) -> bool {
        if self.empty || self.is_no_speech(th) {
            return true;
        }
        !self.loops
            && self.compression_ratio <= th.compression_ratio
            && self.avg_logprob >= th.avg_logprob
    }
}

/// When every attempt failed: the most probable attempt among those without
/// a loop and under the compression threshold, else among those under the
/// threshold, else among all (faster-whisper keeps the most probable of the
/// attempts under the compression threshold; whisper.cpp keeps the last).
pub fn best_attempt(attempts: &[Quality], th: &Thresholds) -> Option<usize> {
    let pick = |ok: &dyn Fn(&Quality) -> bool| {
        attempts
            .iter()
            .enumerate()
            .filter(|(_, q)| ok(q))
            .max_by(|a, b| a.1.avg_logprob.total_cmp(&b.1.avg_logprob))
            .map(|(i, _)| i)
    };
    pick(&|q| !q.loops && q.compression_ratio <= th.compression_ratio)
        .or_else(|| pick(&|q| q.compression_ratio <= th.compression_ratio))
        .or_else(|| pick(&|_| true))
}

/// A character as words are compared here: lower case, ё as е.
fn fold(c: char) -> impl Iterator<Item = char> {
    c.to_lowercase().map(|c| if c == 'ё' { 'е' } else { c })
}

/// [`fold`]ed, every run of non-alphanumerics one space, trimmed.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(fold) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out.trim().to_string()
}

/// The terms of a prompt, in its order: its comma- and sentence-separated
/// pieces, normalised ([`normalize`]); pieces under 4 characters are left
/// out (too common to tell an echo).
pub fn prompt_terms(prompt: &str) -> Vec<String> {
    prompt
        .split([',', '.', ';', '!', '?', '\n'])
        .map(normalize)
        .filter(|t| t.chars().count() >= 4)
        .collect()
}

/// Whether a decoding echoes its prompt instead of the audio, Whisper's
/// known failure on unclear speech with an initial prompt (in the demo:
/// «…льготное, Льготное, СНИЛС, единое пособие, льготное…» from a
/// vocabulary prompt «…СНИЛС, единое пособие…»): a prompt term three times
/// or more, or two prompt terms back to back in the prompt's own order. A
/// participant listing documents can do the latter too; the cost is one
/// decoding without the prompt.
pub fn echoes_prompt(text: &str, terms: &[String]) -> bool {
    if terms.is_empty() {
        return false;
    }
    let words: Vec<String> = normalize(text).split(' ').map(String::from).collect();
    // Occurrences of a term as a whole run of words.
    let count = |t: &str| {
        let term: Vec<&str> = t.split(' ').collect();
        words
            .windows(term.len())
            .filter(|w| w.iter().zip(&term).all(|(a, b)| a == b))
            .count()
    };
    terms.iter().any(|t| count(t) >= 3)
        || terms
            .windows(2)
            .any(|p| p[0] != p[1] && count(&format!("{} {}", p[0], p[1])) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_ratio_is_high_for_loops_and_low_for_speech() {
        let th = Thresholds::default();
        let speech = "Не понимаю, что такое льготная категория, где это посмотреть?";
        assert!(compression_ratio(speech) < th.compression_ratio);
        let looped = format!("с ашарушью{}", "-ну".repeat(30));
        assert!(
            compression_ratio(&looped) > th.compression_ratio,
            "{}",
            compression_ratio(&looped)
        );
        assert_eq!(compression_ratio(""), 0.0);
    }

    #[test]
    fn a_token_ngram_repeated_three_times_is_a_run_and_twice_is_speech() {
        let th = Thresholds::default();
        // «да, да» — a unit of two tokens twice: speech.
        assert_eq!(repeated_run(&[7, 1, 2, 1, 2, 9], &th), None);
        // «ста, ста, ста» (the bench's pink-noise clip): a run.
        assert_eq!(
            repeated_run(&[7, 1, 2, 1, 2, 1, 2, 9], &th),
            Some(Run {
                start: 1,
                unit: 2,
                repeats: 3
            })
        );
        // The loop «…ну-ну-ну-ю-ю-ю-ю-ю-ю-ю-ю.» as tokens.
        let toks = [
            5, 6, 30, 31, 30, 31, 30, 31, 40, 31, 40, 31, 40, 31, 40, 31, 40, 8,
        ];
        assert_eq!(
            repeated_run(&toks, &th),
            Some(Run {
                start: 2,
                unit: 2,
                repeats: 3
            })
        );
        // «ну-ну-ну» is already a run: kept «…ну-» (the unit once), the
        // rest of the loop is cut.
        assert_eq!(repeated_run(&toks, &th).unwrap().cut(), 4);
        // The shortest unit wins at the same start.
        assert_eq!(
            repeated_run(&[3, 3, 3, 3, 3, 3], &th),
            Some(Run {
                start: 0,
                unit: 1,
                repeats: 6
            })
        );
        // A repeated sentence of 5 tokens.
        let sentence = [1, 2, 3, 4, 5];
        let mut toks = vec![9, 9];
        for _ in 0..4 {
            toks.extend(sentence);
        }
        assert_eq!(
            repeated_run(&toks, &th),
            Some(Run {
                start: 2,
                unit: 5,
                repeats: 4
            })
        );
        assert_eq!(repeated_run::<i32>(&[], &th), None);
    }

    #[test]
    fn a_long_run_of_one_character_is_cut_after_three() {
        let th = Thresholds::default();
        let text = "я нажал ааааааааааааа";
        let (cut, end) = char_run(text, &th).unwrap();
        assert_eq!(&text[..cut], "я нажал ааа");
        assert_eq!(end, text.len());
        let text = "ммммммммм, дальше";
        let (cut, end) = char_run(text, &th).unwrap();
        assert_eq!((&text[..cut], &text[end..]), ("ммм", ", дальше"));
        assert_eq!(char_run("ааа, ну ммм", &th), None);
        assert_eq!(char_run("номер 1000000", &th), None);
        assert_eq!(char_run(&" ".repeat(20), &th), None);
    }

    fn q(cr: f32, lp: f32, ns: f32, loops: bool) -> Quality {
        Quality {
            compression_ratio: cr,
            avg_logprob: lp,
            no_speech: ns,
            loops,
            empty: false,
        }
    }

    #[test]
    fn acceptance_follows_faster_whisper_and_rejects_loops() {
        let th = Thresholds::default();
        assert!(q(1.5, -0.5, 0.1, false).accepted(&th));
        assert!(!q(2.6, -0.5, 0.1, false).accepted(&th), "too compressible");
        assert!(!q(1.5, -1.2, 0.1, false).accepted(&th), "too improbable");
        assert!(!q(1.5, -0.5, 0.1, true).accepted(&th), "a loop");
        // Silence: likely no speech and improbable text; not retried.
        let silence = q(1.5, -1.2, 0.8, false);
        assert!(silence.is_no_speech(&th) && silence.accepted(&th));
        // Likely no speech but confident text is speech.
        assert!(!q(1.5, -0.5, 0.8, false).is_no_speech(&th));
    }

    #[test]
    fn the_best_attempt_is_the_most_probable_one_without_a_loop() {
        let th = Thresholds::default();
        let attempts = [
            q(3.0, -0.3, 0.0, true),
            q(1.8, -1.4, 0.0, false),
            q(1.9, -1.1, 0.0, false),
            q(2.0, -1.05, 0.0, true),
        ];
        assert_eq!(best_attempt(&attempts, &th), Some(2));
        // All loop: the most probable under the compression threshold.
        let looping = [
            q(3.0, -0.3, 0.0, true),
            q(2.0, -0.9, 0.0, true),
            q(2.2, -0.8, 0.0, true),
        ];
        assert_eq!(best_attempt(&looping, &th), Some(2));
        // All over the threshold: the most probable of all (not the last).
        let all = [q(3.0, -0.3, 0.0, true), q(2.9, -0.9, 0.0, true)];
        assert_eq!(best_attempt(&all, &th), Some(0));
        assert_eq!(best_attempt(&[], &th), None);
    }

    #[test]
    fn a_decoding_that_repeats_the_prompt_is_an_echo() {
        let prompt =
            "Госуслуги, ЕСИА, СНИЛС, единое пособие, льготная категория. Приложить документы.";
        let terms = prompt_terms(prompt);
        assert_eq!(
            terms,
            [
                "госуслуги",
                "есиа",
                "снилс",
                "единое пособие",
                "льготная категория",
                "приложить документы"
            ]
        );
        // The demo's leak: two terms back to back in the prompt's order.
        assert!(echoes_prompt(
            "Вико-ди-правьёс льготное, Льготное, СНИЛС, единое пособие, льготное.",
            &terms
        ));
        // A term three times.
        assert!(echoes_prompt("СНИЛС. Снилс, снилс", &terms));
        // Speech that uses the terms is no echo.
        assert!(!echoes_prompt(
            "Ввожу номер СНИЛС. Не понимаю, что такое льготная категория. Где СНИЛС?",
            &terms
        ));
        assert!(!echoes_prompt("Ввожу номер СНИЛС", &[]));
        // Whole words only: «снилса» is not «снилс».
        assert!(!echoes_prompt("снилса снилса снилса", &terms));
    }

    #[test]
    fn a_loop_is_dropped_whole_also_across_segments_and_what_follows_stays() {
        let th = Thresholds::default();
        // «мы подъявим паспорта,» said once, then five copies of a unit of
        // four tokens (as whisper.cpp writes a loop one segment per copy),
        // then the way out.
        let unit: [(i32, &str); 4] = [(7, " подъявим"), (8, " на"), (9, " паспорта"), (10, ",")];
        let mut toks: Vec<(i32, &str)> = vec![(1, " Итак"), (2, ",")];
        for _ in 0..6 {
            toks.extend(unit);
        }
        toks.extend([(3, " Взлетели"), (4, ".")]);
        let ids: Vec<i32> = toks.iter().map(|t| t.0).collect();
        let bytes: Vec<&[u8]> = toks.iter().map(|t| t.1.as_bytes()).collect();
        let (a, b) = loop_span(&ids, &bytes, &th).unwrap();
        let kept: String = toks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < a || *i >= b)
            .map(|(_, t)| t.1)
            .collect();
        assert_eq!(kept, " Итак, подъявим на паспорта, Взлетели.");
        // A word loop whose copies differ in tokens («паспорта,» / «паспорта.»).
        let toks = [
            (1, " раз"),
            (2, " два,"),
            (1, " раз"),
            (3, " два."),
            (1, " раз"),
            (2, " два,"),
            (4, " конец"),
        ];
        let ids: Vec<i32> = toks.iter().map(|t| t.0).collect();
        let bytes: Vec<&[u8]> = toks.iter().map(|t| t.1.as_bytes()).collect();
        assert_eq!(loop_span(&ids, &bytes, &th), Some((2, 6)));
        assert_eq!(loop_span(&[1, 2, 3], &[b" a", b" b", b" c"], &th), None);
    }

    #[test]
    fn a_word_loop_is_found_whatever_the_separators() {
        let th = Thresholds::default();
        let text = "Ну, А ста, ста ста-Ста. Дальше";
        let (at, end) = word_run(text, &th).unwrap();
        // Cut after the first «ста»: «Ну, А ста, » is kept, and what
        // follows the last copy.
        assert_eq!(&text[..at], "Ну, А ста, ");
        assert_eq!(&text[end..], ". Дальше");
        assert_eq!(word_run("Да, да. Хорошо, да.", &th), None);
        assert_eq!(word_run("", &th), None);
        // «Но я не надалив» three times (the pink-noise clip).
        let text = "Я же не надалив, Но я не надалив, Но я не надалив, Но я и помню";
        assert!(word_run(text, &th).is_some());
    }
}
