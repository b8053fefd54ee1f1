//! The journey map as one self-contained HTML page: the table labs hand to
//! service teams, steps as columns and significance, time, completion,
//! emotions and problems as rows. Inline CSS only (no scripts, fonts or
//! images to fetch), so it can be mailed, archived and printed on A4
//! landscape as it is.

use super::escape::html as esc;
use crate::types::{Completion, Emotions, JourneyMap, MapStep, Problem, TimeStats, category_name};
use std::fmt::Write;

struct Labels {
    lang: &'static str,
    heading: &'static str,
    situation: &'static str,
    version: &'static str,
    sessions: &'static str,
    participants: &'static str,
    generated: &'static str,
    significance: &'static str,
    time: &'static str,
    median: &'static str,
    expected: &'static str,
    over: &'static str,
    completion: &'static str,
    of: &'static str,
    percent: &'static str,
    emotions: &'static str,
    self_emotions: &'static str,
    self_significance: &'static str,
    ratings: &'static str,
    task: &'static str,
    participant: &'static str,
    mean: &'static str,
    problems: &'static str,
    proposed: &'static str,
    severity: &'static str,
    clip: &'static str,
    none: &'static str,
}

const RU: Labels = Labels {
    lang: "ru",
    heading: "Карта пути пользователя",
    situation: "Жизненная ситуация",
    version: "версия",
    sessions: "Сессий",
    participants: "Участников",
    generated: "Сформировано",
    significance: "Значимость (1–5)",
    time: "Время на шаге",
    median: "медиана",
    expected: "ожидается",
    over: "дольше ожидаемого",
    completion: "Прохождение",
    of: "из",
    percent: "&nbsp;%",
    emotions: "Эмоции по тегам исследователей (позитив / нейтр. / негатив)",
    self_emotions: "Эмоции участников, самоотчёт (позитив / нейтр. / негатив)",
    self_significance: "Значимость по оценкам участников (среднее ± ст. откл.)",
    ratings: "Оценки участников: SEQ по заданиям (1–7) и SUS (0–100), среднее ± 95&nbsp;% доверительный интервал",
    task: "Задание",
    participant: "Участник",
    mean: "Среднее",
    problems: "Проблемы",
    proposed: "Предложено анализом",
    severity: "серьёзность до",
    clip: "клип",
    none: "—",
};

const EN: Labels = Labels {
    lang: "en",
    heading: "Customer journey map",
    situation: "Life situation",
    version: "version",
    sessions: "Sessions",
    participants: "Participants",
    generated: "Generated",
    significance: "Significance (1–5)",
    time: "Time on step",
    median: "median",
    expected: "expected",
    over: "longer than expected",
    completion: "Completion",
    of: "of",
    percent: "%",
    emotions: "Emotions coded by researchers (positive / neutral / negative)",
    self_emotions: "Participants emotions, self-reported (positive / neutral / negative)",
    self_significance: "Significance as participants rated it (mean ± sd)",
    ratings: "Participants ratings: SEQ per task (1–7) and SUS (0–100), mean ± 95&nbsp;% confidence interval",
    task: "Task",
    participant: "Participant",
    mean: "Mean",
    problems: "Problems",
    proposed: "Proposed by analysis",
    severity: "severity up to",
    clip: "clip",
    none: "—",
};

const STYLE: &str = "\
@page { size: A4 landscape; margin: 10mm; }
* { box-sizing: border-box; }
body { font: 10pt/1.35 \"Segoe UI\", \"Helvetica Neue\", Arial, sans-serif; color: #1a1a1a; margin: 16px;
  -webkit-print-color-adjust: exact; print-color-adjust: exact; }
h1 { font-size: 16pt; margin: 0 0 4px; }
p { margin: 2px 0; }
.muted, .who { color: #555; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; margin-top: 10px; }
th, td { border: 1px solid #b8bec6; padding: 4px 6px; vertical-align: top; text-align: left; overflow-wrap: anywhere; }
thead th { background: #e8edf3; }
th.row { width: 9.5em; background: #f5f6f8; font-weight: 600; }
td.over { background: #fde2e1; color: #8a0000; }
.dots { letter-spacing: 1px; color: #2c5d9f; }
.bar { display: flex; height: 10px; border-radius: 2px; overflow: hidden; background: #eee; margin-bottom: 2px; }
.bar span { display: block; height: 100%; }
.pos { background: #3a9d5d; } .neu { background: #a8adb3; } .neg { background: #d9534f; }
.problem + .problem { border-top: 1px dotted #bbb; margin-top: 4px; padding-top: 4px; }
.quotes { margin: 2px 0; padding-left: 1em; }
.quotes q { font-style: italic; }
a { color: #0645ad; }
footer { margin-top: 8px; font-size: 8pt; color: #666; }
@page { size: A4 landscape; margin: 10mm; }
@media print { body { margin: 0; font-size: 9pt; } thead { display: table-header-group; } a { text-decoration: none; } }
";

/// Renders the journey map report. `lang` is `ru` (default) or `en`;
/// `generated_at` is shown as given; `base_url` (e.g. `https://lab.example`)
/// is prepended to the map's root-relative clip links so they work from a
/// saved file.
pub fn html(map: &JourneyMap, lang: &str, generated_at: &str, base_url: &str) -> String {
    let l = if lang == "en" { &EN } else { &RU };
    let title = &map.journey.title;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} — {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n\
         <p>{}: <strong>{}</strong> <span class=\"muted\">({} {})</span></p>\n\
         <p class=\"muted\">{}: {} · {}: {}{} · {}: {}</p>\n</header>\n",
        l.lang,
        l.heading,
        esc(title),
        l.heading,
        l.situation,
        esc(title),
        l.version,
        esc(&map.journey.version),
        l.sessions,
        map.sessions,
        l.participants,
        map.participants.len(),
        if map.participants.is_empty() {
            String::new()
        } else {
            format!(" ({})", esc(&map.participants.join(", ")))
        },
        l.generated,
        esc(generated_at),
    );

    out.push_str("<table>\n<thead><tr><th class=\"row\"></th>");
    for (i, step) in map.steps.iter().enumerate() {
        let _ = write!(out, "<th>{}. {}</th>", i + 1, esc(&step.title));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    row(&mut out, l.significance, &map.steps, |s| {
        ("", significance(s.significance))
    });
    row(&mut out, l.time, &map.steps, |s| {
        time(&s.time, s.expected_ms, l)
    });
    row(&mut out, l.completion, &map.steps, |s| {
        ("", completion(&s.completion, l))
    });
    row(&mut out, l.emotions, &map.steps, |s| {
        ("", emotions(&s.emotions, l))
    });
    if map.steps.iter().any(|s| s.self_significance.is_some()) {
        row(&mut out, l.self_emotions, &map.steps, |s| {
            ("", emotions(&s.self_emotions, l))
        });
        row(&mut out, l.self_significance, &map.steps, |s| {
            let cell = match &s.self_significance {
                Some(p) => format!("{} ± {} (n={})", decimal(p.mean, l), decimal(p.sd, l), p.n),
                None => l.none.to_string(),
            };
            ("", cell)
        });
    }
    row(&mut out, l.problems, &map.steps, |s| {
        ("", problems(&s.problems, l, base_url))
    });
    row(&mut out, l.proposed, &map.steps, |s| {
        ("", proposed(&s.proposed, l))
    });
    out.push_str("</tbody>\n</table>\n");
    ratings(&mut out, &map.self_reported, l);
    let _ = write!(
        out,
        "<footer>lab-web · {} · {} {} · {}: {}</footer>\n</body>\n</html>\n",
        esc(&map.journey.id),
        l.version,
        esc(&map.journey.version),
        l.generated,
        esc(generated_at)
    );
    out
}

/// A number with one decimal, a decimal comma in Russian.
fn decimal(x: f64, l: &Labels) -> String {
    let s = format!("{x:.1}");
    if l.lang == "ru" {
        s.replace('.', ",")
    } else {
        s
    }
}

fn mean_ci(m: &crate::types::MeanCi, l: &Labels) -> String {
    match m.ci95 {
        Some(h) => format!("{} ± {} (n={})", decimal(m.mean, l), decimal(h, l), m.n),
        None => format!("{} (n={})", decimal(m.mean, l), m.n),
    }
}

/// SEQ per task and SUS per participant, when participants answered.
fn ratings(out: &mut String, r: &crate::types::SelfReported, l: &Labels) {
    if r.tasks.is_empty() && r.sus.is_empty() {
        return;
    }
    let _ = write!(out, "<h2>{}</h2>\n<table class=\"ratings\">\n", l.ratings);
    for t in &r.tasks {
        let _ = writeln!(
            out,
            "<tr><th class=\"row\">{} {}</th><td>SEQ {}</td></tr>",
            l.task,
            esc(&t.task),
            mean_ci(&t.seq, l)
        );
    }
    for s in &r.sus {
        let _ = writeln!(
            out,
            "<tr><th class=\"row\">{} {}</th><td>SUS {}</td></tr>",
            l.participant,
            esc(&s.participant),
            decimal(s.score, l)
        );
    }
    if let Some(m) = &r.sus_mean {
        let _ = writeln!(
            out,
            "<tr><th class=\"row\">{}</th><td>SUS {}</td></tr>",
            l.mean,
            mean_ci(m, l)
        );
    }
    out.push_str("</table>\n");
}

/// One table row: the label, then one cell per step as (class, inner HTML).
fn row(
    out: &mut String,
    label: &str,
    steps: &[MapStep],
    cell: impl Fn(&MapStep) -> (&'static str, String),
) {
    let _ = write!(out, "<tr><th class=\"row\">{label}</th>");
    for step in steps {
        let (class, inner) = cell(step);
        if class.is_empty() {
            let _ = write!(out, "<td>{inner}</td>");
        } else {
            let _ = write!(out, "<td class=\"{class}\">{inner}</td>");
        }
    }
    out.push_str("</tr>\n");
}

fn significance(n: i64) -> String {
    let n = n.clamp(0, 5) as usize;
    format!(
        "<span class=\"dots\">{}{}</span> {n}",
        "●".repeat(n),
        "○".repeat(5 - n)
    )
}

/// Median with its interquartile range against the expected time; red when
/// the median exceeds it.
fn time(t: &TimeStats, expected_ms: i64, l: &Labels) -> (&'static str, String) {
    let expected = if expected_ms > 0 {
        format!(
            "<br><span class=\"muted\">{} {}</span>",
            l.expected,
            duration(expected_ms)
        )
    } else {
        String::new()
    };
    if t.n == 0 {
        return ("", format!("{}{expected}", l.none));
    }
    let over = expected_ms > 0 && t.median_ms > expected_ms;
    let inner = format!(
        "{}{} {} <span class=\"muted\">(n&nbsp;=&nbsp;{})</span><br>p25–p75: {}–{}{expected}",
        if over {
            format!("<span title=\"{}\">▲</span> ", l.over)
        } else {
            String::new()
        },
        l.median,
        duration(t.median_ms),
        t.n,
        duration(t.p25_ms),
        duration(t.p75_ms),
    );
    (if over { "over" } else { "" }, inner)
}

fn completion(c: &Completion, l: &Labels) -> String {
    if c.reached == 0 {
        return l.none.to_string();
    }
    format!(
        "{:.0}{} ({} {} {})",
        c.rate * 100.0,
        l.percent,
        c.completed,
        l.of,
        c.reached
    )
}

fn emotions(e: &Emotions, l: &Labels) -> String {
    let counts = [(e.positive, "pos"), (e.neutral, "neu"), (e.negative, "neg")];
    let total: i64 = counts.iter().map(|c| c.0.max(0)).sum();
    if total == 0 {
        return l.none.to_string();
    }
    let mut out = String::from("<div class=\"bar\">");
    for (n, class) in counts {
        if n > 0 {
            let _ = write!(
                out,
                "<span class=\"{class}\" style=\"width:{:.1}%\"></span>",
                n as f64 * 100.0 / total as f64
            );
        }
    }
    let _ = write!(out, "</div>{} / {} / {}", e.positive, e.neutral, e.negative);
    out
}

/// Candidates per detector: "rage_click ×2 (P01, P03)".
fn proposed(list: &[crate::types::ProposedFriction], l: &Labels) -> String {
    if list.is_empty() {
        return l.none.to_string();
    }
    let mut out = String::new();
    for p in list {
        let who: Vec<String> = p.sessions.iter().map(|s| esc(&s.participant)).collect();
        let _ = write!(
            out,
            "<div class=\"problem\"><strong>{}</strong> ×{} <span class=\"who\">({})</span></div>",
            esc(&p.detector),
            p.count,
            who.join(", ")
        );
    }
    out
}

fn problems(problems: &[Problem], l: &Labels, base_url: &str) -> String {
    if problems.is_empty() {
        return l.none.to_string();
    }
    let mut out = String::new();
    for p in problems {
        let _ = write!(
            out,
            "<div class=\"problem\"><strong>{}</strong> ×{}, {} {}",
            esc(&category_name(&p.category, l.lang)),
            p.count,
            l.severity,
            p.max_severity
        );
        let quotes: Vec<_> = p
            .quotes
            .iter()
            .filter(|q| !q.text.trim().is_empty())
            .collect();
        if !quotes.is_empty() {
            out.push_str("<ul class=\"quotes\">");
            for q in quotes {
                let _ = write!(out, "<li><q>{}</q>", esc(q.text.trim()));
                if !q.participant.is_empty() {
                    let _ = write!(out, " <span class=\"who\">— {}</span>", esc(&q.participant));
                }
                out.push_str("</li>");
            }
            out.push_str("</ul>");
        }
        let links: Vec<String> = p
            .clips
            .iter()
            .filter_map(|url| absolute_url(base_url, url))
            .enumerate()
            .map(|(i, url)| format!("<a href=\"{}\">{} {}</a>", esc(&url), l.clip, i + 1))
            .collect();
        out.push_str(&links.join(" "));
        out.push_str("</div>");
    }
    out
}

/// Makes a clip link absolute against `base_url`; links with a scheme other
/// than http(s) (`javascript:`) are dropped.
fn absolute_url(base_url: &str, url: &str) -> Option<String> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Some(url.to_string());
    }
    let scheme_end = url.find(':');
    let path_start = url.find(['/', '?', '#']);
    if url.is_empty()
        || url.starts_with("//")
        || scheme_end.is_some_and(|c| path_start.is_none_or(|p| c < p))
    {
        return None;
    }
    let base = base_url.trim_end_matches('/');
    Some(if url.starts_with('/') {
        format!("{base}{url}")
    } else {
        format!("{base}/{url}")
    })
}

/// `m:ss`, or `h:mm:ss` from an hour on.
fn duration(ms: i64) -> String {
    let s = ms
        .clamp(0, crate::limits::MAX_SESSION_MS)
        .saturating_add(500)
        / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{JourneyInfo, Quote};

    const HOSTILE: &str = "<script>alert('x')</script> & \"q\"";

    fn step(id: &str, title: &str, median_ms: i64, expected_ms: i64) -> MapStep {
        MapStep {
            id: id.into(),
            title: title.into(),
            significance: 4,
            expected_ms,
            time: TimeStats {
                n: 5,
                median_ms,
                p25_ms: median_ms - 10_000,
                p75_ms: median_ms + 20_000,
                min_ms: 1_000,
                max_ms: 200_000,
            },
            completion: Completion {
                completed: 4,
                reached: 5,
                rate: 0.8,
            },
            emotions: Emotions {
                positive: 1,
                neutral: 1,
                negative: 2,
            },
            problems: vec![],
            proposed: vec![],
            self_emotions: Emotions::default(),
            self_significance: None,
            arousal: None,
        }
    }

    fn map() -> JourneyMap {
        let mut form = step("form", "Заполнение <заявления>", 150_000, 90_000);
        form.problems = vec![Problem {
            category: "form_input".into(),
            count: 3,
            max_severity: 4,
            quotes: vec![Quote {
                text: HOSTILE.into(),
                session_id: "s1".into(),
                participant: "P<01>".into(),
                tag_id: 7,
                start_ms: 1_000,
            }],
            clips: vec![
                "/api/v1/clips/7.mp4".into(),
                "javascript:alert(1)".into(),
                "https://cdn.example/c.mp4".into(),
            ],
        }];
        JourneyMap {
            journey: JourneyInfo {
                id: "benefit".into(),
                title: "Оформление пособия".into(),
                version: "3".into(),
                steps: vec![],
            },
            sessions: 5,
            participants: vec!["P01".into(), "P02".into()],
            steps: vec![
                step("login", "Вход", 30_000, 60_000),
                form,
                step("done", HOSTILE, 40_000, 0),
            ],
            detectors: vec![],
            self_reported: crate::types::SelfReported {
                tasks: vec![crate::types::TaskEase {
                    task: "t<1>".into(),
                    seq: crate::types::MeanCi {
                        mean: 4.5,
                        ci95: Some(1.25),
                        n: 4,
                    },
                }],
                sus: vec![crate::types::SusScore {
                    session_id: "s1".into(),
                    participant: "P01".into(),
                    score: 77.5,
                }],
                sus_mean: None,
            },
        }
    }

    #[test]
    fn report_carries_what_participants_said() {
        let mut m = map();
        m.steps[0].self_significance = Some(crate::types::Spread {
            mean: 4.25,
            sd: 0.5,
            n: 4,
        });
        m.steps[0].self_emotions.negative = 3;
        let page = html(&m, "ru", "2025-03-02 12:00", "https://lab.example/");
        assert!(page.contains("Эмоции участников"), "self-reported row");
        assert!(
            page.contains("4,2 ± 0,5 (n=4)") || page.contains("4,3 ± 0,5 (n=4)"),
            "significance"
        );
        assert!(
            page.contains("Задание t&lt;1&gt;") && page.contains("SEQ 4,5 ± 1,2"),
            "SEQ, escaped"
        );
        assert!(page.contains("SUS 77,5"), "SUS");
        // Without answers the rows are not drawn.
        let page = html(&map(), "en", "2025-03-02 12:00", "https://lab.example/");
        assert!(!page.contains("self-reported"));
    }

    #[test]
    fn report_escapes_hostile_text_and_shows_every_step() {
        let page = html(&map(), "ru", "2025-03-02 12:00", "https://lab.example/");
        assert!(
            !page.contains("<script"),
            "hostile text is escaped and the page has no scripts"
        );
        assert!(
            page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;")
        );
        assert!(page.contains("— P&lt;01&gt;"));
        for title in ["Вход", "Заполнение &lt;заявления&gt;", "&lt;script&gt;"]
        {
            assert!(
                page.contains(&format!(". {title}")),
                "step {title} is a column"
            );
        }
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"ru\">"));
        assert!(page.contains("Оформление пособия"));
        assert!(page.contains("Сессий: 5 · Участников: 2 (P01, P02)"));
    }

    #[test]
    fn report_is_self_contained_with_absolute_safe_clip_links() {
        let page = html(&map(), "ru", "now", "https://lab.example/");
        assert!(page.contains("href=\"https://lab.example/api/v1/clips/7.mp4\""));
        assert!(page.contains("href=\"https://cdn.example/c.mp4\""));
        assert!(!page.contains("javascript:"));
        for external in ["<link", " src=", "@import", "url("] {
            assert!(
                !page.contains(external),
                "no external resources: {external}"
            );
        }
        assert!(page.contains("size: A4 landscape"));
    }

    #[test]
    fn report_highlights_steps_slower_than_expected() {
        let page = html(&map(), "ru", "now", "");
        let cells: Vec<&str> = page
            .lines()
            .find(|l| l.contains("Время на шаге"))
            .unwrap()
            .split("<td")
            .skip(1)
            .collect();
        assert_eq!(cells.len(), 3);
        assert!(
            !cells[0].starts_with(" class=\"over\""),
            "0:30 against 1:00"
        );
        assert!(
            cells[1].starts_with(" class=\"over\""),
            "2:30 against 1:30: {}",
            cells[1]
        );
        assert!(cells[1].contains("медиана 2:30") && cells[1].contains("ожидается 1:30"));
        assert!(
            !cells[2].starts_with(" class=\"over\""),
            "no expectation, no highlight"
        );
    }

    #[test]
    fn report_rows_in_english() {
        let page = html(&map(), "en", "now", "https://lab.example");
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        for label in [
            "Customer journey map",
            "Significance",
            "Time on step",
            "Completion",
            "Emotions",
            "Problems",
        ] {
            assert!(page.contains(label), "{label}");
        }
        assert!(page.contains("<strong>Form input</strong> ×3, severity up to 4"));
        assert!(page.contains("80% (4 of 5)"));
        assert!(page.contains("<span class=\"dots\">●●●●○</span> 4"));
        assert!(
            page.contains("style=\"width:50.0%\""),
            "2 of 4 emotions negative"
        );
    }

    #[test]
    fn durations_and_urls() {
        assert_eq!(duration(0), "0:00");
        assert_eq!(duration(89_600), "1:30");
        assert_eq!(duration(3_725_000), "1:02:05");
        assert_eq!(
            absolute_url("https://l.example/", "clips/1.mp4").as_deref(),
            Some("https://l.example/clips/1.mp4")
        );
        assert_eq!(
            absolute_url("https://l.example", "/a?x=1:2").as_deref(),
            Some("https://l.example/a?x=1:2")
        );
        assert_eq!(absolute_url("https://l.example", "data:text/html,x"), None);
        assert_eq!(absolute_url("https://l.example", "//evil.example/x"), None);
    }
}
