//! Word times on utterances that start without a lead-in word, after pauses
//! of 1 to 20 s, with the real VAD and Whisper models.
//!
//! In scripted sessions the first word of an utterance was placed at the end
//! of the previous speech span («В» of «Ввожу…» at 6.89 s though said at
//! 29.86 s): whisper.cpp times the first word of a packed span early, in the
//! silence of the junction. Every word must lie inside one tight speech
//! span, and every recognised word that matches a reference word, other than
//! the last of its utterance, must start inside the utterance that contains
//! it. The last word is only reported: greedy decoding may time it late, in
//! the silence, and when Whisper runs it on into the next utterance without
//! a sentence end («…в этом поле готова заявление…»), times alone cannot
//! tell which side of the pause it was said on (`word_times::place`).

mod common;

use std::path::Path;
use std::process::Command;

use common::require;

use analyzer::audio;
use analyzer::speech;
use analyzer::transcribe::{Options, Transcriber};
use analyzer::vad::Vad;
use lab_model::analysis::Speaker;

/// (pause before, text): content words first, pauses of 1-20 s.
const PHRASES: &[(f64, &str)] = &[
    (0.8, "Ввожу номер СНИЛС"),
    (1.0, "Не понимаю, что такое льготная категория"),
    (20.0, "А где кнопка отправить?"),
    (2.0, "Выбираю дату рождения"),
    (8.0, "Нажимаю продолжить"),
    (3.0, "Где здесь паспортные данные?"),
    (12.0, "Мне непонятно, что писать в этом поле"),
    (5.0, "Готово, заявление отправлено"),
];

#[derive(serde::Deserialize)]
struct RefWord {
    word: String,
    start: f64,
    end: f64,
}

#[derive(serde::Deserialize)]
struct Reference {
    words: Vec<RefWord>,
}

fn norm(w: &str) -> String {
    w.to_lowercase()
        .replace('ё', "е")
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// Pairs (reference index, hypothesis index) of equal words on a minimal
/// Levenshtein alignment.
fn matches(r: &[String], h: &[String]) -> Vec<(usize, usize)> {
    let (n, m) = (r.len(), h.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=m).collect();
    for i in 1..=n {
        for j in 1..=m {
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + usize::from(r[i - 1] != h[j - 1]));
        }
    }
    let (mut i, mut j, mut out) = (n, m, Vec::new());
    while i > 0 && j > 0 {
        let same = r[i - 1] == h[j - 1];
        if d[i][j] == d[i - 1][j - 1] + usize::from(!same) {
            if same {
                out.push((i - 1, j - 1));
            }
            (i, j) = (i - 1, j - 1);
        } else if d[i][j] == d[i - 1][j] + 1 {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    out.reverse();
    out
}

#[test]
fn first_words_after_long_pauses_stay_in_their_own_speech_span() {
    require("espeak-ng");
    require("python3");
    let models = common::models();
    let dir = std::env::temp_dir().join(format!("analyzer-word-times-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let phrases: String = PHRASES.iter().map(|(p, t)| format!("{p}|{t}\n")).collect();
    std::fs::write(dir.join("phrases.txt"), phrases).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/speech_fixture.py");
    let status = Command::new("python3")
        .arg(&fixture)
        .arg(dir.join("phrases.txt"))
        .arg(dir.join("speech.wav"))
        .arg(dir.join("reference.json"))
        .status()
        .unwrap();
    assert!(status.success(), "{} failed", fixture.display());
    let reference: Reference =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();

    // The utterance of each reference word, and each utterance's extent.
    let mut utterance = Vec::new();
    let mut last_of_utterance = Vec::new();
    let mut extent: Vec<(f64, f64)> = Vec::new();
    let mut k = 0;
    for (u, (_, text)) in PHRASES.iter().enumerate() {
        let n = text.split_whitespace().count();
        let ws = &reference.words[k..k + n];
        extent.push((ws[0].start, ws[n - 1].end));
        utterance.extend(std::iter::repeat_n(u, n));
        last_of_utterance.extend((0..n).map(|i| i + 1 == n));
        k += n;
    }

    let pcm = audio::decode(&dir.join("speech.wav")).unwrap();
    let mono = pcm.mono();
    let mut vad = Vad::new(&models.onnxruntime(), &models.vad()).unwrap();
    let found = speech::detect(&mut vad, &mono, 0, Speaker::Mixed).unwrap();
    let whisper = Transcriber::new(&models.whisper()).unwrap();
    // Greedy, like `lab-analyze run`, whose detectors read these times.
    let opts = Options {
        beam: 1,
        threads: 2,
        ..Options::default()
    };
    let segments = speech::transcribe_speech(
        &whisper,
        &mono,
        &found,
        0,
        Speaker::Mixed,
        &opts,
        &mut |_, _| {},
    )
    .unwrap();
    let hyp: Vec<&lab_model::analysis::Word> = segments.iter().flat_map(|s| &s.words).collect();
    for w in &hyp {
        println!(
            "{:7.2} {:7.2} {}",
            w.start_ns as f64 / 1e9,
            w.end_ns as f64 / 1e9,
            w.text
        );
    }

    // Every word lies inside one tight speech span.
    for w in &hyp {
        assert!(
            found
                .timed
                .iter()
                .any(|s| s.start_ns <= w.start_ns && w.end_ns <= s.end_ns),
            "{:?} at {}..{} ns is outside every speech span {:?}",
            w.text,
            w.start_ns,
            w.end_ns,
            found.timed
        );
    }

    let r: Vec<String> = reference.words.iter().map(|w| norm(&w.word)).collect();
    let h: Vec<String> = hyp.iter().map(|w| norm(&w.text)).collect();
    let pairs = matches(&r, &h);
    assert!(
        pairs.len() * 3 >= r.len(),
        "only {} of {} reference words recognised: {h:?}",
        pairs.len(),
        r.len()
    );
    let mut errors_ms = Vec::new();
    let mut wrong = Vec::new();
    let mut wrong_last = Vec::new();
    for &(i, j) in &pairs {
        let start = hyp[j].start_ns as f64 / 1e9;
        errors_ms.push(((start - reference.words[i].start) * 1000.0).abs());
        // Its own utterance, with 0.5 s of slack: every pause is 1 s or more.
        let (a, b) = extent[utterance[i]];
        if !(a - 0.5..=b + 0.5).contains(&start) {
            let what = format!(
                "{:?} at {start:.2} s, said at {:.2}-{:.2} s",
                hyp[j].text, reference.words[i].start, reference.words[i].end
            );
            if last_of_utterance[i] {
                wrong_last.push(what);
            } else {
                wrong.push(what);
            }
        }
    }
    errors_ms.sort_by(f64::total_cmp);
    let median = errors_ms[errors_ms.len() / 2];
    let p90 = errors_ms[(errors_ms.len() - 1) * 9 / 10];
    println!(
        "{} of {} words matched; word-start error median {median:.0} ms, p90 {p90:.0} ms",
        pairs.len(),
        r.len()
    );
    println!("last words of an utterance placed in another: {wrong_last:?}");
    assert!(
        wrong.is_empty(),
        "words placed outside their utterance: {wrong:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
