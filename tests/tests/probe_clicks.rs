//! The probe in the station's real Chromium, clicked with a real mouse
//! (Playwright over CDP: trusted input events), and the dead-click detector
//! reading what it recorded. A click inside a control is described as that
//! control; what only looks clickable (a card among cards, a hand cursor, a
//! button's words) says why; plain text and a lone bordered notice do not.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use analyzer::friction::dead_click;
use analyzer::timeline::{Timeline, data_str};
use lab_model::Bundle;
use lab_tests::{RecorderProcess, Xvfb, require, serve_page, station_devtools, temp_dir};

const PAGE: &str = r##"<!doctype html><html lang="ru"><head><meta charset="utf-8"><title>Выбор услуги</title>
<style>
  body { font: 16px sans-serif; margin: 20px; background: #fff; }
  .grid { display: flex; gap: 16px; }
  .card { width: 220px; padding: 12px; border: 1px solid #ccd; border-radius: 8px; }
  .notice { width: 600px; padding: 12px; border: 1px solid #e0c000; margin: 16px 0; }
</style></head><body>
<h1>Выберите услугу</h1>
<button id="buy" type="button"><span class="label">Оформить</span></button>
<a id="help" href="#help-text"><svg width="24" height="24"><circle cx="12" cy="12" r="10"/></svg></a>
<div class="grid" id="cards">
  <div class="card"><h3>Пособие</h3><p>Единое пособие на детей</p></div>
  <div class="card"><h3>Выплата</h3><p>Материнский капитал</p></div>
  <div class="card"><h3>Справка</h3><p>О составе семьи</p></div>
</div>
<div class="notice" id="notice"><h3>Важно</h3><p id="notice-text">Заявление рассматривается десять рабочих дней.</p></div>
<p id="plain">Услуга предоставляется бесплатно. Результат придёт в личный кабинет.</p>
<div id="region" style="cursor: pointer; display: inline-block">Выбрать регион</div>
<button id="check" type="button">Проверить данные</button>
<button id="send" type="button" disabled>Отправить</button>
<label for="birth">Дата рождения</label>
<input id="birth" aria-describedby="birth-error"><span id="birth-error"></span>
<button id="birth-next" type="button">Далее</button>
<script>
  // Validation that marks the field again on every failed «Далее», and live
  // validation that re-marks it on every keystroke: only the former counts.
  const birth = document.getElementById('birth');
  const mark = () => {
    birth.setAttribute('aria-invalid', 'true');
    document.getElementById('birth-error').textContent = 'Введите дату в формате ДД.ММ.ГГГГ';
  };
  document.getElementById('birth-next').addEventListener('click', mark);
  birth.addEventListener('input', () => { if (birth.getAttribute('aria-invalid') === 'true') mark(); });
  document.getElementById('check').addEventListener('click', () => {
    const d = document.createElement('div');
    d.setAttribute('role', 'dialog');
    d.setAttribute('aria-modal', 'true');
    d.innerHTML = '<h2>Подтверждение данных</h2><p>Проверьте сведения о ребёнке.</p>';
    document.body.appendChild(d);
  });
</script>
<div id="ready"></div>
</body></html>"##;

#[test]
fn clicks_name_their_control_and_why_they_look_clickable() {
    require("chromium");
    require("node");
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in tests/e2e (scripts/test does)"
    );
    let x = Xvfb::start(1280, 720).unwrap();
    let url = format!("http://127.0.0.1:{}/", serve_page(PAGE));
    let out = temp_dir("probe-clicks");
    let mut rec = RecorderProcess::spawn(
        &[
            "--test-sources",
            "--participant",
            "P21",
            "--consent",
            "C21",
            "--browser",
            &url,
            "--no-kiosk",
            "--browser-arg=--disable-gpu",
        ],
        &[("DISPLAY", &x.display)],
        &out,
    )
    .unwrap();
    let (dir, _) = rec.wait_started().unwrap();
    let ws = station_devtools(rec.child.id());
    let targets = [
        "#buy > span",
        "#help > svg",
        "#cards > div:nth-of-type(2) > h3",
        "#notice-text",
        "#plain",
        "#region",
        "#check",
        "#send",
        // An error, a retyped value and the error again (2 errors), then
        // «Далее» again without a change (no new error).
        "#birth-next",
        "type:#birth=31.02.2020",
        "#birth-next",
        "#birth-next",
    ];
    let run = Command::new("node")
        .arg(e2e.join("clicks.mjs"))
        .arg(&ws)
        .args(targets)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "clicks.mjs: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let bundle = Bundle::new(&dir);
    let t = Instant::now();
    while !bundle.read_events().unwrap().0.iter().any(|e| {
        e.kind == "navigation" && e.data["url"].as_str().is_some_and(|u| u.ends_with("/done"))
    }) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the last navigation was not recorded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    rec.signal(libc::SIGTERM);
    let (ok, _, stderr) = rec.wait().unwrap();
    assert!(ok, "{stderr}");
    let (events, _) = bundle.read_events().unwrap();
    let clicks: Vec<_> = events.iter().filter(|e| e.kind == "click").collect();
    for c in &clicks {
        println!("{}", c.data);
    }
    let typed = targets.iter().filter(|t| t.starts_with("type:")).count();
    assert_eq!(
        clicks.len(),
        targets.len() - typed,
        "one click event per click"
    );
    // The field marked invalid on each failed «Далее» after a change: two
    // errors; the keystrokes (live validation) and the unchanged third try
    // add none.
    let errors: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "validation_error")
        .collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors.iter().all(|e| e.data["selector"] == "#birth"
        && e.data["message"] == "Введите дату в формате ДД.ММ.ГГГГ"));
    assert!(errors[0].t_ns >= clicks[8].t_ns && errors[0].t_ns < clicks[9].t_ns);
    assert!(errors[1].t_ns >= clicks[9].t_ns && errors[1].t_ns < clicks[10].t_ns);
    assert_eq!(clicks[6].data["text"], "Проверить данные");
    let field = |i: usize, k: &str| clicks[i].data[k].clone();

    // Inside a control: described as the control, the inner element kept.
    assert_eq!(field(0, "selector"), "#buy");
    assert_eq!(field(0, "tag"), "button");
    assert_eq!(field(0, "target_tag"), "span");
    assert_eq!(field(0, "text"), "Оформить");
    assert_eq!(field(1, "selector"), "#help");
    assert_eq!(field(1, "tag"), "a");
    assert!(
        field(1, "target_selector")
            .as_str()
            .is_some_and(|s| s.starts_with("#help > svg")),
        "{}",
        clicks[1].data
    );
    // A card among cards.
    assert_eq!(field(2, "tag"), "h3");
    assert_eq!(
        field(2, "affordance")["card"],
        "#cards > div:nth-of-type(2)",
        "{}",
        clicks[2].data
    );
    // The browser fires no click on a disabled button; its press is one.
    assert_eq!(field(7, "selector"), "#send");
    assert_eq!(field(7, "disabled"), true);
    // Text to read: no affordance at all.
    assert!(field(3, "affordance").is_null(), "{}", clicks[3].data);
    assert!(field(4, "affordance").is_null(), "{}", clicks[4].data);
    // The hand cursor.
    assert_eq!(
        field(5, "affordance")["cursor"],
        "pointer",
        "{}",
        clicks[5].data
    );

    // A modal dialog the page opened: an event with its title, and a step
    // entered by it (a single-page app's step without a URL of its own).
    let opened: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "dialog" && e.data["action"] == "open")
        .collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0].data["title"], "Подтверждение данных");
    assert!(
        opened[0].t_ns >= clicks[6].t_ns,
        "the dialog opened after its click"
    );
    let journey = lab_model::journey::Journey::from_toml(
        r#"format_version = 1
id = "probe-test"
title = "Проверка"
version = "1"

[[steps]]
id = "choose"
title = "Выбрать услугу"
significance = 3
expected_seconds = 30
enter = [{ url = "http://127.0.0.1:*/" }]

[[steps]]
id = "confirm"
title = "Подтвердить данные"
significance = 4
expected_seconds = 30
enter = [{ dialog = "Подтверждение*" }]
"#,
    )
    .unwrap();

    let end = events.iter().map(|e| e.t_ns).max().unwrap_or(0);
    let timeline = Timeline::new(events.clone(), Vec::new(), end);
    let steps = analyzer::steps::segment(&journey, &timeline);
    let visits: Vec<(&str, i64)> = steps
        .intervals
        .iter()
        .map(|i| (i.step.as_str(), i.start_ns))
        .collect();
    assert_eq!(
        visits.iter().map(|v| v.0).collect::<Vec<_>>(),
        ["choose", "confirm"],
        "{visits:?}"
    );
    assert_eq!(visits[1].1, opened[0].t_ns);

    // The detector on what was recorded: the button that does nothing, the
    // card, the pointer and the disabled button are dead clicks; the link
    // navigated (hash), the notice and the paragraph were read.
    let dead = dead_click::detect(&timeline, &steps);
    let mut on: Vec<String> = dead
        .iter()
        .map(|c| {
            let click = c
                .evidence
                .events
                .iter()
                .find_map(|s| timeline.event(*s).filter(|e| e.kind == "click"))
                .unwrap();
            data_str(click, "selector").unwrap_or("").to_string()
        })
        .collect();
    on.sort();
    assert_eq!(
        on,
        [
            "#buy",
            "#cards > div:nth-of-type(2) > h3",
            "#region",
            "#send"
        ],
        "{dead:#?}"
    );
    let card = dead
        .iter()
        .find(|c| c.evidence.note.contains("карточка"))
        .unwrap();
    assert_eq!(card.confidence, dead_click::CONFIDENCE_DEAD_LOOKS);
    drop(x);
    let _ = std::fs::remove_dir_all(&out);
}
