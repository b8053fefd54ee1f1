//! Verbal confusion: the participant says something like «не понимаю»,
//! «куда тут нажимать», "where is ...": phrases of the confusion lexicon
//! ([`crate::lexicon`]) found in their transcript words. The moderator's
//! words are left out when the audio tells speakers apart; words from a
//! mixed channel are used, with less confidence. Words said during a stall
//! in the page or near a page error count more: the page agrees with them.

use lab_model::analysis::{Candidate, Evidence, Speaker, StepAnalysis, Word};

use super::candidate::{
    Confidence, UNCERTAIN_TEXT, UNCERTAIN_WHY, WEAK_NOTE, WEAK_WORDS, candidate, heard,
    in_uncertain_text, number,
};
use super::notes::count_ru;
use super::notes::{duration_ru, quote};
use crate::lexicon::{Lexicon, tokens};
use crate::steps::step_at;
use crate::timeline::{Timeline, is_activity, participant_runs};

pub const NAME: &str = "verbal_confusion";

/// Words further apart than this are not one phrase: a pause this long
/// ends the thought.
pub const MAX_PAUSE_NS: i64 = 1_500_000_000;

/// Cues closer than this, in the same step, are one episode («не понимаю…
/// где это?»), reported once with all its words.
pub const MERGE_GAP_NS: i64 = 5_000_000_000;

/// One cue. Many cues are also said while reading aloud or in passing.
pub const BASE_CONFIDENCE: f32 = 0.55;
/// Each further cue in the same episode.
pub const PER_EXTRA_CUE: f32 = 0.15;
pub const MAX_CONFIDENCE: f32 = 0.9;
/// Factor when a word came from a mixed channel (it may be the moderator's).
pub const MIXED_FACTOR: f32 = 0.8;

/// Factor for each sound edit a cue took from its lexicon phrase («не
/// уверя» for «не уверен*»): a near miss may be another word.
pub const NEAR_MISS_FACTOR: f32 = 0.85;

/// A phrase found: the words it covers, the lexicon phrase, and the sound
/// edits the words took from it.
struct Cue {
    words: std::ops::Range<usize>,
    phrase: String,
    edits: usize,
}

pub fn detect(timeline: &Timeline, steps: &StepAnalysis, lexicon: &Lexicon) -> Vec<Candidate> {
    let words = &timeline.words;
    let mut cues: Vec<Cue> = Vec::new();
    for run in participant_runs(words, MAX_PAUSE_NS) {
        // Normalised tokens of the run, each with the word it came from.
        let mut toks = Vec::new();
        let mut word_of = Vec::new();
        for i in run {
            for t in tokens(&words[i].text) {
                toks.push(t);
                word_of.push(i);
            }
        }
        for hit in lexicon.find(&toks) {
            cues.push(Cue {
                words: word_of[hit.first]..word_of[hit.last] + 1,
                phrase: lexicon.phrases[hit.phrase].text.clone(),
                edits: hit.edits,
            });
        }
    }

    let mut out = Vec::new();
    let mut i = 0;
    while i < cues.len() {
        // An episode stays in one step: what is said on the next page is
        // about that page.
        let step = step_at(steps, words[cues[i].words.start].start_ns);
        let mut j = i + 1;
        while j < cues.len()
            && words[cues[j].words.start].start_ns - words[cues[j - 1].words.end - 1].end_ns
                <= MERGE_GAP_NS
            && step_at(steps, words[cues[j].words.start].start_ns) == step
        {
            j += 1;
        }
        out.push(report(timeline, &cues[i..j], steps));
        i = j;
    }
    number(&mut out);
    out
}

/// Nothing done in the page for this long before the words: the
/// participant is stuck, and says so. Shorter than the hesitation
/// detector's `MIN_IDLE_NS`: the words come during the stall, not after it.
pub const STALL_NS: i64 = 8_000_000_000;
/// A validation or script error this close to the words.
pub const ERROR_NS: i64 = 5_000_000_000;
/// Added when the words coincide with a stall or an error: what was said
/// and what happened agree.
pub const COINCIDE_BONUS: f32 = 0.1;

/// What goes wrong in the page.
const ERRORS: &[&str] = &["validation_error", "js_error"];

fn report(timeline: &Timeline, episode: &[Cue], steps: &StepAnalysis) -> Candidate {
    let words = &timeline.words[..];
    let spoken: Vec<Word> = episode
        .iter()
        .flat_map(|c| words[c.words.clone()].iter().cloned())
        .collect();
    let quotes: Vec<String> = episode
        .iter()
        .map(|c| quote(&words[c.words.clone()], 12))
        .collect();
    let mut phrases: Vec<&str> = Vec::new();
    for c in episode {
        if !phrases.contains(&c.phrase.as_str()) {
            phrases.push(&c.phrase);
        }
    }
    let mut note = format!(
        "участник: «{}» ({})",
        quotes.join(" … "),
        phrases.join(", ")
    );
    let heard = heard(&spoken);
    if heard < WEAK_WORDS {
        note += WEAK_NOTE;
    }
    let mut confidence = Confidence::rule(
        format!("фраза из словаря замешательства («{}»)", phrases[0]),
        BASE_CONFIDENCE,
    );
    if episode.len() > 1 {
        confidence.add(
            PER_EXTRA_CUE * (episode.len() - 1) as f32,
            format!(
                "ещё {} того же эпизода",
                count_ru(episode.len() - 1, "фраза", "фразы", "фраз")
            ),
        );
    }
    confidence.cap(MAX_CONFIDENCE);
    // The episode is as strong as its best-heard cue.
    let edits = episode.iter().map(|c| c.edits).min().unwrap_or(0);
    if edits > 0 {
        let near: Vec<String> = episode
            .iter()
            .filter(|c| c.edits > 0)
            .map(|c| {
                format!(
                    "«{}» как «{}»",
                    quote(&words[c.words.clone()], 12),
                    c.phrase
                )
            })
            .collect();
        confidence.scale(
            NEAR_MISS_FACTOR.powi(edits as i32),
            format!(
                "слова не совпали со словарём дословно ({}: {}), возможно, это другие слова",
                count_ru(edits, "звук", "звука", "звуков"),
                near.join(", ")
            ),
        );
        note += &format!("; распознано неточно: {}", near.join(", "));
    }
    // An unsure transcription halves the confidence at worst.
    confidence.scale(
        0.5 + 0.5 * heard,
        format!(
            "слова распознаны с вероятностью {}",
            format!("{heard:.2}").replace('.', ",")
        ),
    );
    if in_uncertain_text(&spoken, &timeline.uncertain) {
        confidence.add(UNCERTAIN_TEXT, UNCERTAIN_WHY);
    }
    let said = spoken[0].start_ns;
    // The participant's last action in the page before the words (the same
    // activity the hesitation detector counts; a page load is one).
    let last = timeline
        .events
        .iter()
        .filter(|e| is_activity(e) && e.t_ns < said)
        .map(|e| e.t_ns)
        .max();
    let erred = ERRORS.iter().any(|k| {
        timeline
            .browser(k)
            .any(|e| (e.t_ns - said).abs() <= ERROR_NS)
    });
    if erred {
        confidence.add(
            COINCIDE_BONUS,
            "рядом ошибка на странице: страница подтверждает слова",
        );
        note += "; рядом ошибка на странице";
    } else if let Some(last) = last.filter(|&t| said - t > STALL_NS) {
        let stall = duration_ru(said - last);
        confidence.add(
            COINCIDE_BONUS,
            format!("перед этим {stall} без действий: участник застрял"),
        );
        note += &format!("; перед этим {stall} без действий");
    }
    confidence.cap(MAX_CONFIDENCE);
    if spoken.iter().any(|w| w.speaker == Speaker::Mixed) {
        confidence.scale(MIXED_FACTOR, "общий микрофон: слова могут быть модератора");
    }
    let start = spoken[0].start_ns;
    let end = spoken.iter().map(|w| w.end_ns).max().unwrap_or(start);
    candidate(
        NAME,
        steps,
        start,
        end,
        confidence,
        Evidence {
            events: Vec::new(),
            words: spoken,
            note,
            ..Evidence::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::segment;
    use crate::timeline::testkit::*;

    /// (start s, end s, word texts, confidence, note)
    type Want = (f64, f64, Vec<&'static str>, f32, &'static str);

    #[test]
    fn table() {
        let mixed = |t, s| words_by(t, Speaker::Mixed, s);
        let moderator = |t, s| words_by(t, Speaker::Moderator, s);
        let cases: Vec<(&str, Vec<Word>, Vec<Want>)> = vec![
            (
                "one cue with a filler word",
                words(10.0, "так, куда тут нажимать?"),
                vec![(
                    10.4,
                    11.5,
                    vec!["куда", "тут", "нажимать?"],
                    0.52,
                    "участник: «куда тут нажимать?» (куда нажима*)",
                )],
            ),
            (
                "three cues in a row are one episode",
                [
                    words(10.0, "Непонятно!"),
                    words(12.0, "где это"),
                    words(16.0, "не работает"),
                ]
                .concat(),
                vec![(
                    10.0,
                    16.7,
                    vec!["Непонятно!", "где", "это", "не", "работает"],
                    0.81,
                    "участник: «Непонятно! … где это … не работает» (непонятн*, где это, не работа*)",
                )],
            ),
            (
                "English",
                words(3.0, "I don't really understand this"),
                vec![(
                    3.4,
                    4.5,
                    vec!["don't", "really", "understand"],
                    0.52,
                    "участник: «don't really understand» (don't understand)",
                )],
            ),
            (
                "a mixed channel counts, less surely",
                mixed(3.0, "я запуталась"),
                vec![(
                    3.4,
                    3.7,
                    vec!["запуталась"],
                    0.42,
                    "участник: «запуталась» (запута*)",
                )],
            ),
            (
                "the moderator's words do not count, nor join the participant's",
                [
                    words(1.0, "куда"),
                    moderator(1.4, "вам понятно, не понимаете?"),
                    words(3.0, "нажимать"),
                ]
                .concat(),
                vec![],
            ),
            (
                "a near miss of the recogniser counts, less surely",
                words(5.0, "я не уверя, что это так"),
                vec![(
                    5.4,
                    6.1,
                    vec!["не", "уверя,"],
                    0.44, // 0.55 × 0.85 for the edit × 0.95 for the words' probability
                    "участник: «не уверя,» (не уверен*); распознано неточно: «не уверя,» как «не уверен*»",
                )],
            ),
            (
                "a long pause splits a phrase",
                [words(1.0, "куда"), words(3.0, "нажимать")].concat(),
                vec![],
            ),
            (
                "ordinary speech",
                words(1.0, "всё понятно, нажимаю далее, где-то здесь дата"),
                vec![],
            ),
        ];
        for (name, spoken, want) in cases {
            let t = tl_words(vec![], spoken);
            let got: Vec<(f64, f64, Vec<String>, f32, String)> =
                detect(&t, &segment(&journey(), &t), &Lexicon::builtin())
                    .into_iter()
                    .map(|c| {
                        let (start, end) = (c.start_ns as f64 / 1e9, c.end_ns as f64 / 1e9);
                        let texts = c.evidence.words.iter().map(|w| w.text.clone()).collect();
                        (start, end, texts, c.confidence, c.evidence.note)
                    })
                    .collect();
            let want: Vec<(f64, f64, Vec<String>, f32, String)> = want
                .into_iter()
                .map(|(a, b, w, conf, note)| {
                    (
                        a,
                        b,
                        w.into_iter().map(String::from).collect(),
                        conf,
                        note.to_string(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn an_episode_does_not_span_steps() {
        let t = tl_words(
            vec![
                nav(0.0, "https://gu.example/catalog"),
                nav(14.0, "https://gu.example/login"),
            ],
            [
                words(11.0, "ничего не происходит"),
                words(16.0, "не работает"),
            ]
            .concat(),
        );
        let got = detect(&t, &segment(&journey(), &t), &Lexicon::builtin());
        let steps: Vec<Option<&str>> = got.iter().map(|c| c.step.as_deref()).collect();
        assert_eq!(steps, [Some("find"), Some("login")]);
        // The same words within one step are one episode.
        let t = tl_words(
            vec![nav(0.0, "https://gu.example/catalog")],
            [
                words(11.0, "ничего не происходит"),
                words(16.0, "не работает"),
            ]
            .concat(),
        );
        assert_eq!(
            detect(&t, &segment(&journey(), &t), &Lexicon::builtin()).len(),
            1
        );
    }

    /// (events, confidence, end of the note)
    #[test]
    fn words_that_agree_with_the_page_count_more() {
        let cases = [
            (
                "stuck: the page loaded, nothing done for 8 s",
                vec![nav(0.0, "https://gu.example/form"), click(1.0, "#a", 1, 1)],
                0.62,
                "; перед этим 19 с без действий",
            ),
            (
                "busy: a click 3 s before",
                vec![nav(0.0, "https://gu.example/form"), click(17.0, "#a", 1, 1)],
                0.52,
                "(куда нажима*)",
            ),
            (
                "an error just after the words",
                vec![
                    nav(0.0, "https://gu.example/form"),
                    click(17.0, "#a", 1, 1),
                    js_error(22.0, "boom"),
                ],
                0.62,
                "; рядом ошибка на странице",
            ),
            (
                "no page yet: nothing to be stuck on",
                vec![],
                0.52,
                "(куда нажима*)",
            ),
        ];
        for (name, events, confidence, note_end) in cases {
            let t = tl_words(events, words(20.0, "так, куда тут нажимать?"));
            let got = detect(&t, &segment(&journey(), &t), &Lexicon::builtin());
            assert_eq!(got.len(), 1, "{name}");
            assert_eq!(got[0].confidence, confidence, "{name}");
            assert!(
                got[0].evidence.note.ends_with(note_end),
                "{name}: {}",
                got[0].evidence.note
            );
        }
    }
}
