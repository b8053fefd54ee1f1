//! The analyzer on real inputs: Russian speech synthesised with espeak-ng,
//! transcribed by whisper.cpp with the model `lab-setup models` installed;
//! silence that must stay silent; bad files that must be named; and a real
//! recorded bundle (test video, PulseAudio speech, browser and operator
//! events) through every `lab-analyze run` stage.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lab_model::analysis::{
    AnalysisDoc, AnalysisFile, CandidateList, Renditions, StepAnalysis, Transcript, video_file,
};
use lab_model::{Bundle, SessionStatus};
use lab_tests::scripted::{models, record_session, speech, wer, words};
use lab_tests::{RecorderProcess, bin, ffprobe, require, temp_dir};

fn analyze(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(bin("lab-analyze"))
        .arg("--models")
        .arg(models())
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn russian_speech_is_transcribed_with_word_times_inside_the_speech() {
    let dir = temp_dir("transcribe");
    let text = "Кнопка не работает. Я не понимаю, что делать дальше.";
    let wav = speech(&dir, "ru", text, 3.0);
    let (ok, out, err) = analyze(&["transcribe", wav.to_str().unwrap(), "--format", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["language"], "ru");
    let segs = v["segments"].as_array().unwrap();
    let hyp: String = segs
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    let w = wer(text, &hyp);
    println!("transcribe: WER {w:.2}: {hyp:?}");
    // Whisper base on espeak-ng Russian is far from perfect (see docs/measurements.md);
    // the bound catches a broken model, decoder or time mapping, not accent quality.
    assert!(w <= 0.6, "WER {w:.2} for {hyp:?}");
    assert!(
        words(&hyp).iter().any(|w| w == "кнопка") && hyp.contains("понима"),
        "{hyp:?}"
    );
    // Word times lie within the speech (3 s of silence before and after).
    let speech_end = 3.0 + (std::fs::metadata(&wav).unwrap().len() as f64 / 44_100.0) - 6.0 + 0.5;
    for s in segs {
        for word in s["words"].as_array().unwrap() {
            let (a, b) = (
                word["start"].as_f64().unwrap(),
                word["end"].as_f64().unwrap(),
            );
            assert!(
                a >= 2.5 && b <= speech_end + 1.0 && a <= b,
                "word {word} outside the speech"
            );
            let c = word["confidence"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&c));
        }
    }
    for (format, marker) in [("vtt", "WEBVTT"), ("srt", " --> "), ("txt", "")] {
        let (ok, out, err) = analyze(&["transcribe", wav.to_str().unwrap(), "--format", format]);
        assert!(
            ok && out.contains(marker) && !out.trim().is_empty(),
            "{format}: {err}"
        );
    }
}

#[test]
fn silence_and_noise_floor_produce_no_text() {
    let dir = temp_dir("silence");
    let wav = dir.join("silence.wav");
    assert!(
        Command::new("sox")
            .args(["-n", "-r", "16000", "-c", "1"])
            .arg(&wav)
            .args(["synth", "20", "whitenoise", "vol", "0.002"])
            .status()
            .unwrap()
            .success()
    );
    let (ok, out, err) = analyze(&["transcribe", wav.to_str().unwrap(), "--format", "txt"]);
    assert!(ok, "{err}");
    assert!(out.trim().is_empty(), "hallucinated on silence: {out:?}");
}

/// A token-free loop check on the output words: the same word n-gram
/// (1-6 words) 4 or more times in a row, or one character 8 times in a row.
fn has_loop(text: &str) -> bool {
    let w = words(text);
    let ngram = (1..=6).any(|n| {
        (0..w.len()).any(|s| {
            (1..4)
                .all(|k| s + (k + 1) * n <= w.len() && w[s + k * n..s + (k + 1) * n] == w[s..s + n])
        })
    });
    let chars: Vec<char> = text.chars().collect();
    ngram
        || chars
            .windows(8)
            .any(|c| !c[0].is_whitespace() && c.iter().all(|&x| x == c[0]))
}

/// Regression: whisper.cpp without our fallback rules fell into repetition
/// loops on espeak-ng Russian («…ну-ну-ну-ю-ю-ю-ю-ю-ю-ю-ю.»), and a loop
/// that survived went into the transcript unmarked. Here «да» said 14 times
/// makes Whisper loop at temperature 0 («Та-та-та-та-…»): the output must
/// not loop, and anything flagged suspect says why; ordinary phrases must
/// pass unflagged.
#[test]
fn repetition_loops_are_cut_and_flagged_suspect() {
    let dir = temp_dir("loops");
    let wav = speech(
        &dir,
        "loop",
        "Да да да да да да да да да да да да да да.",
        2.0,
    );
    let (ok, out, err) = analyze(&["transcribe", wav.to_str().unwrap(), "--format", "json"]);
    assert!(ok, "{err}");
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    let segs = t["segments"].as_array().unwrap();
    let all: Vec<&str> = segs.iter().map(|s| s["text"].as_str().unwrap()).collect();
    println!("loop clip: {all:?}");
    for s in segs {
        let text = s["text"].as_str().unwrap();
        assert!(!has_loop(text), "a loop reached the transcript: {text:?}");
    }
    // Whisper repeats «да» at temperature 0; a hotter attempt may find a
    // short, loop-free reading (accepted, unflagged), else the loop is cut
    // and flagged. Either way a flag always says why.
    for s in segs.iter().filter(|s| s["suspect"] == true) {
        let reason = s["suspect_reason"].as_str().unwrap_or_default();
        assert!(
            ["repetition", "compression", "low_logprob"].contains(&reason),
            "{s}"
        );
    }

    // Ordinary think-aloud speech: no loop, nothing flagged.
    let text = "Так, ищу услугу в каталоге. Не понимаю, что такое льготная категория. \
                Где здесь кнопка отправить?";
    let wav = speech(&dir, "plain", text, 2.0);
    let (ok, out, err) = analyze(&["transcribe", wav.to_str().unwrap(), "--format", "json"]);
    assert!(ok, "{err}");
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    for s in t["segments"].as_array().unwrap() {
        let text = s["text"].as_str().unwrap();
        assert!(!has_loop(text), "{text:?}");
        assert!(s.get("suspect").is_none(), "ordinary speech flagged: {s}");
    }
}

#[test]
fn unreadable_input_names_the_file() {
    let dir = temp_dir("corrupt");
    let bad = dir.join("corrupt.mkv");
    std::fs::write(&bad, b"\x1a\x45\xdf\xa3 this is not a matroska file at all").unwrap();
    let (ok, _, err) = analyze(&["transcribe", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("corrupt.mkv"), "{err}");
    let (ok, _, err) = analyze(&["transcribe", "/nonexistent/interview.wav"]);
    assert!(!ok && err.contains("interview.wav"), "{err}");
}

#[test]
fn a_recorded_bundle_goes_through_every_stage_and_a_rerun_is_a_no_op() {
    require("paplay");
    let dir = temp_dir("analyze-run");
    // Three sentences: over the first two alone (9 words) the recorded
    // transcript's WER ranged 0.22-0.89 in five runs on an idle machine (the
    // recording's offset changes what Whisper base hears of espeak-ng), too
    // few words for one run to judge the path.
    let text = "Кнопка не работает. Я не понимаю, что делать дальше. \
                Так, попробую ещё раз нажать на эту кнопку и подождать.";
    let wav = speech(&dir, "think", text, 0.5);
    let bundle_dir = record_session(&dir, &wav);
    let journey = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/journey-test.toml");
    let b = bundle_dir.to_str().unwrap();
    let (ok, out, err) = analyze(&["run", b, "--journey", journey.to_str().unwrap()]);
    assert!(ok, "{err}");
    println!("{out}");
    let transcript = Transcript::read(&bundle_dir).unwrap();
    let hyp: String = transcript
        .segments
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let w = wer(text, &hyp);
    println!("bundle transcript: WER {w:.2}: {hyp:?}");
    // Loose: the recording path (PulseAudio, Opus) and espeak-ng make single runs vary
    // (0.32-0.42 in five runs of these three sentences); what must hold is that the cue words
    // arrive (checked via the candidate below).
    assert!(w <= 0.85, "WER {w:.2}: {hyp:?}");
    assert!(
        transcript
            .words()
            .all(|w| w.speaker == lab_model::ChannelRole::Participant)
    );

    let steps = StepAnalysis::read(&bundle_dir).unwrap();
    let visited: Vec<_> = steps.intervals.iter().map(|i| i.step.as_str()).collect();
    assert_eq!(visited, ["catalog", "form", "done"]);

    let candidates = CandidateList::read(&bundle_dir).unwrap();
    let found: Vec<_> = candidates
        .candidates
        .iter()
        .map(|c| (c.detector.as_str(), c.step.as_deref()))
        .collect();
    println!("candidates: {found:?}");
    assert!(found.contains(&("rage_click", Some("form"))), "{found:?}");
    assert!(found.contains(&("js_error", Some("form"))), "{found:?}");
    assert!(
        found
            .iter()
            .any(|(d, s)| *d == "verbal_confusion" && *s == Some("form")),
        "{found:?}"
    );

    for track in ["screen", "camera"] {
        let (video, audio, end) = ffprobe(&bundle_dir.join(video_file(track))).unwrap();
        assert!(
            video && audio && end > 5.0,
            "{track}.mp4: video {video} audio {audio} end {end}"
        );
    }
    assert!(
        AnalysisFile::Peaks.path(&bundle_dir).exists()
            && AnalysisFile::Qa.path(&bundle_dir).exists()
    );
    let renditions = Renditions::read(&bundle_dir).unwrap();
    let thumbs = &renditions.thumbnails;
    assert!(!thumbs.is_empty(), "no thumbnails");
    let jpeg = std::fs::read(bundle_dir.join(&thumbs[0].file)).unwrap();
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "thumbnail is not a JPEG");

    // Idempotent: a second run does nothing; --force redoes one stage and what follows.
    let (ok, out, _) = analyze(&["run", b, "--journey", journey.to_str().unwrap()]);
    assert!(ok && out.matches("already done").count() == 5, "{out}");
    let (ok, out, _) = analyze(&[
        "run",
        b,
        "--journey",
        journey.to_str().unwrap(),
        "--force",
        "candidates",
    ]);
    assert!(ok && out.matches("already done").count() == 2, "{out}");
}

#[test]
fn a_crashed_bundle_is_analysed_up_to_the_break_and_silence_skips_transcription() {
    let dir = temp_dir("analyze-crash");
    let mut rec = RecorderProcess::spawn(
        &["--test-sources", "--participant", "P11", "--consent", "C11"],
        &[],
        &dir,
    )
    .unwrap();
    let (bundle_dir, _) = rec.wait_started().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    rec.signal(libc::SIGKILL);
    let _ = rec.child.wait();
    // Without recovery the analyzer still reads what is there.
    assert_eq!(
        Bundle::new(&bundle_dir).read_manifest().unwrap().status,
        SessionStatus::Recording
    );
    let (ok, out, err) = analyze(&["run", bundle_dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    println!("{out}");
    let transcript = Transcript::read(&bundle_dir).unwrap();
    // The test source is ticks, not speech: VAD finds none, or the track is reported silent.
    assert!(transcript.segments.is_empty(), "{:?}", transcript.segments);
    let (video, _, end) = ffprobe(&bundle_dir.join(video_file("screen"))).unwrap();
    assert!(video && end >= 3.0, "rendition ends at {end}");
    let steps = std::fs::read_to_string(AnalysisFile::Steps.path(&bundle_dir)).unwrap();
    assert!(steps.contains("\"intervals\": []"), "{steps}");
    let qa: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(AnalysisFile::Qa.path(&bundle_dir)).unwrap())
            .unwrap();
    assert!(
        qa["status"].as_str().unwrap().starts_with("interrupted"),
        "{qa}"
    );
    assert!(
        !qa["recovered_segments"].as_array().unwrap().is_empty(),
        "the cut-off segments are reported: {qa}"
    );
}

#[test]
fn a_bundle_without_a_microphone_skips_transcription_with_a_clear_status() {
    let dir = temp_dir("analyze-nomic");
    let station = dir.join("station.toml");
    std::fs::write(
        &station,
        "format_version = 1\nstation = \"no-mic\"\n\n[screen]\nsource = \"test\"\nwidth = 320\nheight = 240\nframerate = 30\n",
    )
    .unwrap();
    let o = Command::new(bin("lab-recorder"))
        .args([
            "record",
            "--station",
            station.to_str().unwrap(),
            "--duration",
            "3",
            "--participant",
            "P13",
            "--consent",
            "C13",
        ])
        .args(["--listen", "127.0.0.1:0", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bundle = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let (ok, out, err) = analyze(&["run", &bundle]);
    assert!(ok, "{err}");
    assert!(out.contains("skipped: no audio track"), "{out}");
    let t = Transcript::read(Path::new(&bundle)).unwrap();
    assert_eq!(t.status, "skipped: no audio track");
}

#[test]
fn a_malformed_journey_names_the_line_and_field() {
    let dir = temp_dir("journey");
    let out = Command::new(bin("lab-recorder"))
        .args([
            "record",
            "--test-sources",
            "--duration",
            "2",
            "--participant",
            "P12",
            "--consent",
            "C12",
            "--listen",
            "127.0.0.1:0",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let bundle = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let journey = dir.join("bad.toml");
    let good = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/journey-test.toml"),
    )
    .unwrap();
    std::fs::write(
        &journey,
        good.replace("significance = 5", "significance = 7"),
    )
    .unwrap();
    let (ok, _, err) = analyze(&["run", &bundle, "--journey", journey.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("bad.toml") && err.contains("significance 7") && err.contains("line 17"),
        "{err}"
    );
}
