//! Hesitation: a long stretch in which the participant did nothing on the
//! page. Thinking aloud during it does not make it less of a stall (the
//! participant's words go into the evidence); a moderator talking during it
//! may mean a conversation instead, so that lowers the confidence.
//!
//! Activity is [`crate::timeline::is_activity`]: scrolling counts (reading
//! or searching, which the other detectors and the transcript describe
//! better than "idle" would); page-driven events (title updates, click
//! effects, script and validation errors) do not.
//!
//! Only time inside a task counts: when the session has `task_start` /
//! `task_end` markers, idle time outside them (briefing, interview) is
//! ignored; without markers the whole session is the task. Nothing is
//! reported before the first activity of the session (or task).

use lab_model::Event;
use lab_model::analysis::{Candidate, Evidence, Speaker, StepAnalysis, Word};

use super::candidate::{Confidence, candidate, number};
use super::notes::{duration_ru, quote};
use crate::steps::step_over;
use crate::timeline::{Timeline, data_str, is_activity, marker_of, maybe_participant};

pub const NAME: &str = "hesitation";

/// Idle time that counts. Ten seconds without touching the page is well
/// beyond reading a form label or a short paragraph, and is the usual
/// threshold for "the participant is stuck" in moderated testing.
pub const MIN_IDLE_NS: i64 = 10_000_000_000;

/// Confidence at `MIN_IDLE_NS`: ten quiet seconds are often just reading.
pub const BASE_CONFIDENCE: f32 = 0.4;
/// Confidence from `FULL_IDLE_NS` on, growing linearly in between.
pub const FULL_CONFIDENCE: f32 = 0.75;
/// Thirty seconds without an action is a stall by any measure.
pub const FULL_IDLE_NS: i64 = 30_000_000_000;
/// Factor when the moderator speaks during the gap (speakers known): they
/// may be talking with the participant rather than the participant stalling.
pub const MODERATOR_FACTOR: f32 = 0.6;
/// Participant words quoted in the note.
const QUOTE_WORDS: usize = 10;

pub fn detect(timeline: &Timeline, steps: &StepAnalysis) -> Vec<Candidate> {
    let activity: Vec<&Event> = timeline.events.iter().filter(|e| is_activity(e)).collect();
    let tasks = task_windows(timeline);
    let end = timeline.end_ns();
    let mut out = Vec::new();
    for (i, before) in activity.iter().enumerate() {
        // The tab went to the background: the participant is elsewhere, unobserved.
        if before.kind == "visibility" && data_str(before, "state") == Some("hidden") {
            continue;
        }
        let after = activity.get(i + 1).copied();
        let gap_end = after.map_or(end, |e| e.t_ns);
        for &(task_start, task_end) in &tasks {
            // The gap must follow an activity inside this task.
            if before.t_ns < task_start || before.t_ns >= task_end {
                continue;
            }
            let (a, b) = (before.t_ns, gap_end.min(task_end));
            if b - a >= MIN_IDLE_NS {
                let after = after.filter(|e| e.t_ns == b);
                out.push(report(timeline, steps, before, after, a, b));
            }
        }
    }
    number(&mut out);
    out
}

/// `[start, end)` of each task; the whole session when there are no task markers.
fn task_windows(timeline: &Timeline) -> Vec<(i64, i64)> {
    let mut windows = Vec::new();
    let mut open: Option<i64> = None;
    let mut any = false;
    for e in &timeline.events {
        match marker_of(e).map(|(kind, _)| kind) {
            Some("task_start") => {
                any = true;
                open.get_or_insert(e.t_ns);
            }
            Some("task_end") => {
                any = true;
                windows.push((open.take().unwrap_or(i64::MIN), e.t_ns));
            }
            _ => {}
        }
    }
    if let Some(start) = open {
        windows.push((start, i64::MAX));
    }
    if !any {
        windows.push((i64::MIN, i64::MAX));
    }
    windows
}

fn report(
    timeline: &Timeline,
    steps: &StepAnalysis,
    before: &Event,
    after: Option<&Event>,
    start: i64,
    end: i64,
) -> Candidate {
    let during: Vec<&Word> = timeline
        .words
        .iter()
        .filter(|w| w.start_ns >= start && w.start_ns < end)
        .collect();
    let participant: Vec<Word> = during
        .iter()
        .filter(|w| maybe_participant(w.speaker))
        .map(|w| (*w).clone())
        .collect();
    let moderator = during.iter().any(|w| w.speaker == Speaker::Moderator);

    let mut note = format!("{} без действий на странице", duration_ru(end - start));
    if !participant.is_empty() {
        note += &format!("; участник говорит: «{}»", quote(&participant, QUOTE_WORDS));
    }
    if moderator {
        note += "; говорит модератор";
    }
    let progress =
        ((end - start - MIN_IDLE_NS) as f32 / (FULL_IDLE_NS - MIN_IDLE_NS) as f32).clamp(0.0, 1.0);
    let mut confidence = Confidence::rule(
        format!(
            "не меньше {} без действий на странице",
            duration_ru(MIN_IDLE_NS)
        ),
        BASE_CONFIDENCE,
    );
    if progress > 0.0 {
        confidence.add(
            (FULL_CONFIDENCE - BASE_CONFIDENCE) * progress,
            format!(
                "пауза {} (больше уверенности к {})",
                duration_ru(end - start),
                duration_ru(FULL_IDLE_NS)
            ),
        );
    }
    if moderator {
        confidence.scale(
            MODERATOR_FACTOR,
            "в паузе говорит модератор: возможно, это разговор",
        );
    }
    let mut c = candidate(
        NAME,
        steps,
        start,
        end,
        confidence,
        Evidence {
            events: std::iter::once(before.seq)
                .chain(after.map(|e| e.seq))
                .collect(),
            words: participant,
            note,
            ..Evidence::default()
        },
    );
    // The stall belongs where it was spent: one that begins with the click
    // that opened the next step (a dialog) is that step's.
    c.step = step_over(steps, start, end);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::segment;
    use crate::timeline::testkit::*;
    use lab_model::analysis::Word;

    /// (start s, end s, evidence seqs, confidence, note)
    type Want = (f64, f64, Vec<u64>, f32, &'static str);

    type Case = (&'static str, Vec<Event>, Vec<Word>, Vec<Want>);

    #[test]
    fn table() {
        let cases: Vec<Case> = vec![
            (
                "18 s between two clicks, silent",
                vec![click(2.0, "#a", 1, 1), click(20.0, "#b", 1, 1)],
                vec![],
                vec![(2.0, 20.0, vec![1, 2], 0.54, "18 с без действий на странице")],
            ),
            (
                "a 5 s pause is normal",
                vec![click(2.0, "#a", 1, 1), click(7.0, "#b", 1, 1)],
                vec![],
                vec![],
            ),
            (
                "scrolling is activity; a title update and a click effect are not",
                vec![
                    click(2.0, "#a", 1, 1),
                    scroll(8.0),
                    nav(12.0, "https://x/").with("reason", "title"),
                    effect(13.0, 1, 0, false),
                    click(17.0, "#b", 1, 1),
                ],
                vec![],
                vec![],
            ),
            (
                "the participant thinks aloud during it",
                vec![click(2.0, "#a", 1, 1), click(40.0, "#b", 1, 1)],
                words(10.0, "так где же тут дата"),
                vec![(
                    2.0,
                    40.0,
                    vec![1, 2],
                    0.75,
                    "38 с без действий на странице; участник говорит: «так где же тут дата»",
                )],
            ),
            (
                "the moderator talks during it: lower",
                vec![click(2.0, "#a", 1, 1), click(32.0, "#b", 1, 1)],
                words_by(
                    5.0,
                    lab_model::analysis::Speaker::Moderator,
                    "расскажите что вы видите",
                ),
                vec![(
                    2.0,
                    32.0,
                    vec![1, 2],
                    0.45,
                    "30 с без действий на странице; говорит модератор",
                )],
            ),
            (
                "not before the first browser event; the tail of a task counts until task_end",
                vec![
                    marker(0.0, "task_start", "Задание 1"),
                    click(20.0, "#a", 1, 1),
                    marker(35.0, "task_end", "Задание 1"),
                    click(60.0, "#b", 1, 1), // after the task: the interview
                ],
                vec![],
                vec![(20.0, 35.0, vec![2], 0.49, "15 с без действий на странице")],
            ),
            (
                "a hidden tab is not observed",
                vec![
                    click(2.0, "#a", 1, 1),
                    browser(3.0, "visibility", serde_json::json!({"state": "hidden"})),
                    browser(30.0, "visibility", serde_json::json!({"state": "visible"})),
                ],
                vec![],
                vec![],
            ),
        ];
        for (name, events, words, want) in cases {
            let t = tl_words(events, words);
            assert_eq!(run_detector(&t, detect), expected(want), "{name}");
        }
    }

    #[test]
    fn quotes_the_participant_words_as_evidence() {
        let t = tl_words(
            vec![click(2.0, "#a", 1, 1), click(20.0, "#b", 1, 1)],
            words(5.0, "не вижу"),
        );
        let c = &detect(&t, &segment(&journey(), &t))[0];
        assert_eq!(c.evidence.words.len(), 2);
        assert_eq!(c.evidence.words[0].text, "не");
    }

    /// A click opens the next step without a page load (a dialog; here the
    /// operator's step marker 0.2 s later), then nothing for 25 s: the stall
    /// is the new step's, not the one the click was made in.
    #[test]
    fn a_stall_belongs_to_the_step_it_was_spent_in() {
        let t = tl(vec![
            nav(0.0, "https://gu.example/catalog"),
            click(5.0, "#open", 1, 1),
            marker(5.2, "step", "Вход"),
            click(30.0, "#b", 1, 1),
        ]);
        let steps = segment(&journey(), &t);
        let c = &detect(&t, &steps)[0];
        assert_eq!((c.start_ns, c.end_ns), (secs(5.0), secs(30.0)));
        assert_eq!(
            crate::steps::step_at(&steps, c.start_ns).as_deref(),
            Some("find")
        );
        assert_eq!(c.step.as_deref(), Some("login"));
    }
}
