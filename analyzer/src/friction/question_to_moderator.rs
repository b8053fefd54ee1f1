//! Questions to the moderator: a participant's utterance that is a question
//! («где тут отправить?», «а это обязательно?», "should I click here?").
//! A participant who has to ask is stuck, even if the moderator does not
//! answer. An utterance is a question if it ends with "?", has a question's
//! word order («где тут…») or the particle «ли» (the recogniser often loses
//! the mark), or starts with a question word; an operator's "help" marker
//! just after it, or the
//! moderator answering, makes it surer that it was addressed to them. A help
//! marker that no recognised question explains is a candidate of its own,
//! at the marker, with the participant's last words before it if any: the
//! operator heard the participant ask even where the recogniser did not.

use lab_model::analysis::{Candidate, Evidence, Speaker, StepAnalysis, Word};

use super::candidate::{
    Confidence, UNCERTAIN_TEXT, UNCERTAIN_WHY, WEAK_NOTE, WEAK_WORDS, candidate, heard,
    in_uncertain_text, number,
};
use super::notes::quote;
use crate::lexicon::{Lexicon, tokens};
use crate::timeline::{Timeline, participant_runs};

pub const NAME: &str = "question_to_moderator";

/// Question words that open a question (lexicon syntax: `*` ends a stem).
pub const OPENERS: &str = "как\nгде\nкуда\nчто\nкакой*\nкакая\nкакое\nзачем\nпочему\n\
                           how\nwhere\nwhat\nwhich\nwhy";

/// Openers that ask for permission or guidance: these are nearly always
/// addressed to the moderator.
pub const ASKING: &str = "можно\nа это\nмне нужно ли\nнужно ли\nнадо ли\nмне надо\n\
                          can i\nshould i\ndo i\nis it ok";

/// Word order that makes a question without its question mark (the
/// recogniser often loses the intonation): a question word followed by a
/// place or person word («где тут…», «как мне…», «что здесь нужно…»).
pub const STRUCTURE: &str = "где тут\nгде здесь\nгде же\nгде мне\nкуда тут\nкуда здесь\nкуда мне\n\
                             куда дальше\nкак мне\nкак тут\nкак здесь\nкак же\nчто тут\nчто здесь\n\
                             что мне\nчто нужно\nчто надо\nчто теперь\nкакой здесь\nкакую тут\n\
                             where do\nwhere is\nwhat do\nhow do";

/// The interrogative particle: «нужно ли», «правильно ли я…» ask whatever
/// their intonation.
pub const PARTICLE: &str = "ли";

/// The particle counts this early in the utterance (a question asks it
/// near its start: «надо ли…», «а правильно ли я…»).
pub const PARTICLE_WITHIN: usize = 4;

/// Factor for a question on weak words ([`super::candidate::WEAK_WORDS`]).
pub const WEAK_FACTOR: f32 = 0.7;

/// Discourse words that may precede the question word («ну где…», «а как…»).
pub const LEAD_WORDS: &[&str] = &["а", "ну", "и", "so", "and", "um", "uh", "oh"];

/// A pause this long between words ends an utterance.
pub const UTTERANCE_PAUSE_NS: i64 = 1_000_000_000;

/// An operator's help marker this soon after the utterance ends (the
/// operator needs a few seconds to react) ties it to the moderator.
pub const HELP_WINDOW_NS: i64 = 10_000_000_000;
/// The moderator starting to speak this soon after the utterance ends
/// looks like an answer.
pub const REPLY_WINDOW_NS: i64 = 5_000_000_000;

/// Ends with "?" and starts with a question word.
pub const CONFIDENCE_BOTH: f32 = 0.6;
/// Ends with "?" only (the transcriber heard a question intonation).
pub const CONFIDENCE_MARK: f32 = 0.5;
/// No mark, but a question's word order or its particle.
pub const CONFIDENCE_STRUCTURE: f32 = 0.45;
/// Starts with a question word only: «как хорошо» starts that way too.
pub const CONFIDENCE_OPENER: f32 = 0.3;
/// Added for a permission/guidance opener.
pub const ASKING_BONUS: f32 = 0.1;
/// Added when the moderator answers.
pub const REPLY_BONUS: f32 = 0.15;
/// Added for a help marker.
pub const HELP_BONUS: f32 = 0.3;
/// Factor for a mixed channel, where it may be the moderator's own question.
pub const MIXED_FACTOR: f32 = 0.8;
pub const MAX_CONFIDENCE: f32 = 0.95;
/// A help marker no recognised question explains: the operator's judgment
/// alone, as sure as a question heard by its intonation only.
pub const CONFIDENCE_HELP_ONLY: f32 = 0.5;

pub fn detect(timeline: &Timeline, steps: &StepAnalysis) -> Vec<Candidate> {
    let cues = Cues {
        openers: Lexicon::parse(OPENERS, "question openers").expect("built-in list"),
        asking: Lexicon::parse(ASKING, "asking openers").expect("built-in list"),
        structure: Lexicon::parse(STRUCTURE, "question word order").expect("built-in list"),
    };
    let words = &timeline.words;
    let mut out = Vec::new();
    for run in participant_runs(words, UTTERANCE_PAUSE_NS) {
        let mut start = run.start;
        for i in run.clone() {
            let text = words[i].text.trim_end();
            if i + 1 == run.end || text.ends_with(['.', '!', '?', '…', '？']) {
                if let Some(c) = judge(timeline, steps, &words[start..=i], &cues) {
                    out.push(c);
                }
                start = i + 1;
            }
        }
    }
    out.extend(unexplained_help(timeline, steps, &out));
    number(&mut out);
    out
}

/// A candidate for each help marker that no question candidate took as
/// evidence: from the start of the participant's last utterance that ended
/// within [`HELP_WINDOW_NS`] before the marker (quoted, whatever its words)
/// to the marker, or at the marker alone when nothing was recognised.
fn unexplained_help(
    timeline: &Timeline,
    steps: &StepAnalysis,
    found: &[Candidate],
) -> Vec<Candidate> {
    let words = &timeline.words;
    let runs = participant_runs(words, UTTERANCE_PAUSE_NS);
    timeline
        .markers("help")
        .filter(|m| !found.iter().any(|c| c.evidence.events.contains(&m.seq)))
        .map(|m| {
            let before = runs
                .iter()
                .rev()
                .find(|r| {
                    let end = words[r.end - 1].end_ns;
                    end <= m.t_ns && m.t_ns - end <= HELP_WINDOW_NS
                })
                .map_or(&[][..], |r| &words[r.clone()]);
            let mut note = "оператор отметил просьбу о помощи".to_string();
            if let Some((_, Some(label))) = crate::timeline::marker_of(m) {
                note += &format!(": «{label}»");
            }
            if before.is_empty() {
                note += "; слов участника перед отметкой не распознано";
            } else {
                note += &format!("; участник перед этим: «{}»", quote(before, 15));
            }
            let start = before.first().map_or(m.t_ns, |w| w.start_ns);
            candidate(
                NAME,
                steps,
                start,
                m.t_ns,
                Confidence::rule(
                    "оператор отметил просьбу о помощи (распознанного вопроса нет)",
                    CONFIDENCE_HELP_ONLY,
                ),
                Evidence {
                    events: vec![m.seq],
                    words: before.to_vec(),
                    note,
                    ..Evidence::default()
                },
            )
        })
        .collect()
}

/// Whether a phrase of `lexicon` opens the token list (after one lead word).
fn opens(lexicon: &Lexicon, toks: &[String]) -> bool {
    lexicon.match_at(toks, 0).is_some()
        || (toks
            .first()
            .is_some_and(|t| LEAD_WORDS.contains(&t.as_str()))
            && lexicon.match_at(toks, 1).is_some())
}

/// The built-in lists, parsed once per run.
struct Cues {
    openers: Lexicon,
    asking: Lexicon,
    structure: Lexicon,
}

fn judge(
    timeline: &Timeline,
    steps: &StepAnalysis,
    utterance: &[Word],
    cues: &Cues,
) -> Option<Candidate> {
    let toks: Vec<String> = utterance.iter().flat_map(|w| tokens(&w.text)).collect();
    if toks.is_empty() {
        return None;
    }
    let mark = utterance.last()?.text.trim_end().ends_with(['?', '？']);
    let asks = opens(&cues.asking, &toks);
    let opener = asks || opens(&cues.openers, &toks);
    let ordered = opens(&cues.structure, &toks)
        || toks
            .iter()
            .take(PARTICLE_WITHIN)
            .skip(1)
            .any(|t| t == PARTICLE);
    let (base, why) = match (mark, opener, ordered) {
        (true, true, _) => (CONFIDENCE_BOTH, "знак вопроса и вопросительное слово"),
        (true, false, _) => (CONFIDENCE_MARK, "знак вопроса"),
        (false, _, true) => (
            CONFIDENCE_STRUCTURE,
            "порядок слов вопроса (знак вопроса не распознан)",
        ),
        // A lone «как» or «что» without a question mark is a filler.
        (false, true, false) if toks.len() >= 2 => {
            (CONFIDENCE_OPENER, "только вопросительное слово в начале")
        }
        _ => return None,
    };
    let mut confidence = Confidence::rule(format!("вопрос: {why}"), base);
    if asks {
        confidence.add(
            ASKING_BONUS,
            "просит разрешения или подсказки («можно…», «нужно ли…»)",
        );
    }
    let (start, end) = (utterance[0].start_ns, utterance[utterance.len() - 1].end_ns);
    let mut note = format!("вопрос модератору: «{}» ({why})", quote(utterance, 15));
    if heard(utterance) < WEAK_WORDS {
        confidence.scale(WEAK_FACTOR, "слова распознаны неуверенно");
        note += WEAK_NOTE;
    }
    if in_uncertain_text(utterance, &timeline.uncertain) {
        confidence.add(UNCERTAIN_TEXT, UNCERTAIN_WHY);
    }
    let replied = timeline.words.iter().any(|w| {
        w.speaker == Speaker::Moderator && w.start_ns >= end && w.start_ns - end <= REPLY_WINDOW_NS
    });
    if replied {
        confidence.add(REPLY_BONUS, "модератор ответил");
        note += "; модератор ответил";
    }
    let help: Vec<u64> = timeline
        .markers("help")
        .filter(|m| m.t_ns >= start && m.t_ns - end <= HELP_WINDOW_NS)
        .map(|m| m.seq)
        .collect();
    if !help.is_empty() {
        confidence.add(HELP_BONUS, "оператор отметил просьбу о помощи");
        note += "; оператор отметил просьбу о помощи";
    }
    if utterance.iter().any(|w| w.speaker == Speaker::Mixed) {
        confidence.scale(MIXED_FACTOR, "общий микрофон: вопрос может быть модератора");
    }
    confidence.cap(MAX_CONFIDENCE);
    Some(candidate(
        NAME,
        steps,
        start,
        end,
        confidence,
        Evidence {
            events: help,
            words: utterance.to_vec(),
            note,
            ..Evidence::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::testkit::*;
    use lab_model::Event;

    /// (start s, end s, help marker seqs, confidence, note)
    type Want = (f64, f64, Vec<u64>, f32, &'static str);

    type Case = (&'static str, Vec<Event>, Vec<Word>, Vec<Want>);

    #[test]
    fn table() {
        let moderator = |t, s| words_by(t, Speaker::Moderator, s);
        let cases: Vec<Case> = vec![
            (
                "a question word and a question mark",
                vec![],
                words(2.0, "Где тут кнопка отправить?"),
                vec![(
                    2.0,
                    3.5,
                    vec![],
                    0.6,
                    "вопрос модератору: «Где тут кнопка отправить?» (знак вопроса и вопросительное слово)",
                )],
            ),
            (
                "asking for guidance, and the operator marks help: capped",
                vec![marker(9.0, "help", "")],
                words(2.0, "А это обязательно заполнять?"),
                vec![(
                    2.0,
                    3.5,
                    vec![1],
                    0.95,
                    "вопрос модератору: «А это обязательно заполнять?» (знак вопроса и вопросительное слово); оператор отметил просьбу о помощи",
                )],
            ),
            (
                "asking without a question mark, the moderator answers",
                vec![],
                [
                    words(2.0, "Можно я вернусь назад"),
                    moderator(4.0, "Да, конечно"),
                ]
                .concat(),
                vec![(
                    2.0,
                    3.5,
                    vec![],
                    0.55,
                    "вопрос модератору: «Можно я вернусь назад» (только вопросительное слово в начале); модератор ответил",
                )],
            ),
            (
                "a question after a statement in one breath; help too late for it is its own candidate",
                vec![marker(20.0, "help", "")],
                words(2.0, "Ну вот. Ну где же?"),
                vec![
                    (
                        2.8,
                        3.9,
                        vec![],
                        0.6,
                        "вопрос модератору: «Ну где же?» (знак вопроса и вопросительное слово)",
                    ),
                    (
                        20.0,
                        20.0,
                        vec![1],
                        0.5,
                        "оператор отметил просьбу о помощи; слов участника перед отметкой не распознано",
                    ),
                ],
            ),
            (
                "help after words that are no question: the words are quoted as evidence",
                vec![marker(6.0, "help", "не может найти кнопку")],
                words(2.0, "Так ну это вот"),
                vec![(
                    2.0,
                    6.0,
                    vec![1],
                    0.5,
                    "оператор отметил просьбу о помощи: «не может найти кнопку»; участник перед этим: «Так ну это вот»",
                )],
            ),
            (
                "English",
                vec![],
                words(1.0, "Should I click here?"),
                vec![(
                    1.0,
                    2.5,
                    vec![],
                    0.7,
                    "вопрос модератору: «Should I click here?» (знак вопроса и вопросительное слово)",
                )],
            ),
            (
                "a mixed channel, less surely",
                vec![],
                words_by(1.0, Speaker::Mixed, "Куда дальше?"),
                vec![(
                    1.0,
                    1.7,
                    vec![],
                    0.48,
                    "вопрос модератору: «Куда дальше?» (знак вопроса и вопросительное слово)",
                )],
            ),
            (
                "no question mark, but a question's word order or its particle",
                vec![],
                [
                    words(1.0, "Где тут отправить заявление"),
                    words(6.0, "А нужно ли прикладывать справку"),
                ]
                .concat(),
                vec![
                    (
                        1.0,
                        2.5,
                        vec![],
                        0.45,
                        "вопрос модератору: «Где тут отправить заявление» (порядок слов вопроса (знак вопроса не распознан))",
                    ),
                    (
                        6.0,
                        7.9,
                        vec![],
                        0.55,
                        "вопрос модератору: «А нужно ли прикладывать справку» (порядок слов вопроса (знак вопроса не распознан))",
                    ),
                ],
            ),
            (
                "words the recogniser was unsure of are weak evidence",
                vec![],
                words(1.0, "Где тут кнопка?")
                    .into_iter()
                    .map(|mut w| {
                        w.confidence = 0.3;
                        w
                    })
                    .collect(),
                vec![(
                    1.0,
                    2.1,
                    vec![],
                    0.42,
                    "вопрос модератору: «Где тут кнопка?» (знак вопроса и вопросительное слово); слова распознаны неуверенно",
                )],
            ),
            (
                "statements, a lone filler word, and the moderator's own questions are not",
                vec![],
                [
                    words(1.0, "Так, вот здесь дата."),
                    words(5.0, "как"),
                    moderator(8.0, "Что вы сейчас ищете?"),
                    words(12.0, "Так что я нажимаю далее"),
                ]
                .concat(),
                vec![],
            ),
        ];
        for (name, events, spoken, want) in cases {
            let t = tl_words(events, spoken);
            assert_eq!(run_detector(&t, detect), expected(want), "{name}");
        }
    }
}
