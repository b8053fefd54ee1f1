//! The findings export: JSON for tools (`docs/findings-schema.json`) and CSV
//! for the spreadsheets service teams live in.
//!
//! The CSV is made for Excel: a BOM so it reads as UTF-8, CRLF line ends,
//! RFC 4180 quoting, column names in the reader's language, and no cell that
//! Excel would run as a formula: quotes and notes are typed by people and
//! recognized from speech, so a leading `=`, `+`, `-`, `@`, tab or CR gets an
//! apostrophe in front (OWASP's advice on CSV injection).

use crate::types::{Finding, FindingsExport, category_name};

/// Column names in Russian and English, in output order.
const COLUMNS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Шаг", "Step"),
    ("Участник", "Participant"),
    ("Сегмент", "Segment"),
    ("Исследование", "Study"),
    ("Сессия", "Session"),
    ("Начало, с", "Start, s"),
    ("Конец, с", "End, s"),
    ("Время (мм:сс)", "Time (mm:ss)"),
    ("Категория", "Category"),
    ("Серьёзность (1–4)", "Severity (1–4)"),
    ("Эмоция", "Emotion"),
    ("Цитата", "Quote"),
    ("Заметка", "Note"),
    ("Экран (URL)", "Screen (URL)"),
    ("Элемент (селектор)", "Element (selector)"),
    ("Клип", "Clip"),
    ("Ссылка на сессию", "Session link"),
];

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The export as pretty-printed JSON.
pub fn to_json(export: &FindingsExport) -> String {
    serde_json::to_string_pretty(export).expect("findings are plain data and always serialize")
}

/// The findings as an Excel-ready CSV; `lang` is `ru` (default) or `en` and
/// picks the column names, category and emotion names and the decimal
/// separator of the seconds.
pub fn to_csv(findings: &[Finding], lang: &str) -> Vec<u8> {
    let en = lang == "en";
    let mut csv = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(BOM.to_vec());
    let header = COLUMNS
        .iter()
        .map(|(ru, en_name)| if en { en_name } else { ru });
    csv.write_record(header)
        .expect("writing to memory cannot fail");
    for f in findings {
        let step = f.step_title.as_deref().or(f.step.as_deref()).unwrap_or("");
        let record = [
            f.id.to_string(),
            guard(step),
            guard(&f.participant),
            guard(&f.segment),
            guard(&f.study),
            guard(&f.session_id),
            seconds(f.start_ms, en),
            seconds(f.end_ms, en),
            format!("{}–{}", minutes(f.start_ms), minutes(f.end_ms)),
            guard(&category_name(&f.category, if en { "en" } else { "ru" })),
            f.severity.to_string(),
            guard(emotion_name(&f.emotion, en)),
            guard(&f.quote),
            guard(&f.note),
            guard(f.url.as_deref().unwrap_or("")),
            guard(f.selector.as_deref().unwrap_or("")),
            guard(f.clip_url.as_deref().unwrap_or("")),
            guard(&f.session_url),
        ];
        csv.write_record(&record)
            .expect("writing to memory cannot fail");
    }
    csv.into_inner().expect("writing to memory cannot fail")
}

/// Neutralizes a cell a spreadsheet would read as a formula.
fn guard(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

/// Seconds with one decimal, with the decimal comma a Russian spreadsheet
/// expects (the cell is quoted, so the comma is not a separator).
fn seconds(ms: i64, en: bool) -> String {
    let s = format!("{:.1}", ms as f64 / 1000.0);
    if en { s } else { s.replace('.', ",") }
}

/// `mm:ss`; minutes go past 59 rather than add an hour field.
fn minutes(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    format!("{:02}:{:02}", s / 60, s % 60)
}

fn emotion_name(emotion: &str, en: bool) -> &str {
    match (emotion, en) {
        ("positive", false) => "позитивная",
        ("neutral", false) => "нейтральная",
        ("negative", false) => "негативная",
        _ => emotion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{CATEGORIES, EMOTIONS, FINDINGS_SCHEMA_VERSION, FindingsFilters};
    use serde_json::{Value, json};

    fn finding(quote: &str, note: &str) -> Finding {
        Finding {
            id: 7,
            journey_id: Some("benefit".into()),
            step: Some("form".into()),
            step_title: Some("Заполнение заявления".into()),
            session_id: "2025-03-01-p01".into(),
            participant: "P01".into(),
            segment: "пенсионеры".into(),
            study: "Пособие, весна".into(),
            url: Some("https://proto.example/form?step=2".into()),
            selector: Some("#submit".into()),
            start_ms: 83_420,
            end_ms: 90_000,
            category: "form_input".into(),
            severity: 3,
            emotion: "negative".into(),
            quote: quote.into(),
            note: note.into(),
            clip_url: Some("https://lab.example/api/v1/clips/7.mp4".into()),
            session_url: "https://lab.example/sessions/2025-03-01-p01".into(),
        }
    }

    fn read(bytes: &[u8]) -> Vec<csv::StringRecord> {
        assert!(bytes.starts_with(BOM), "CSV starts with a UTF-8 BOM");
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&bytes[BOM.len()..])
            .records()
            .collect::<Result<_, _>>()
            .expect("CSV parses")
    }

    #[test]
    fn csv_round_trips_with_cyrillic_and_russian_header() {
        let quote = "Не понимаю, где \"Далее\"\nи что писать";
        let bytes = to_csv(&[finding(quote, "поле СНИЛС")], "ru");
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains("\r\n") && !text.replace("\r\n", "").contains("\r"));
        let rows = read(&bytes);
        assert_eq!(rows.len(), 2);
        let header: Vec<&str> = rows[0].iter().collect();
        let ru: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
        assert_eq!(header, ru);
        assert_eq!(&rows[0][1], "Шаг");
        assert_eq!(&rows[0][2], "Участник");
        let row = &rows[1];
        assert_eq!(row.len(), COLUMNS.len());
        assert_eq!(&row[1], "Заполнение заявления");
        assert_eq!(&row[3], "пенсионеры");
        assert_eq!(&row[4], "Пособие, весна");
        assert_eq!(&row[6], "83,4");
        assert_eq!(&row[7], "90,0");
        assert_eq!(&row[8], "01:23–01:30");
        assert_eq!(&row[9], "Ввод данных");
        assert_eq!(&row[10], "3");
        assert_eq!(&row[11], "негативная");
        assert_eq!(&row[12], quote);
        assert_eq!(&row[13], "поле СНИЛС");
    }

    #[test]
    fn csv_in_english_uses_english_names_and_decimal_point() {
        let rows = read(&to_csv(&[finding("ok", "")], "en"));
        assert_eq!(&rows[0][1], "Step");
        assert_eq!(&rows[0][2], "Participant");
        assert_eq!(&rows[1][6], "83.4");
        assert_eq!(&rows[1][9], "Form input");
        assert_eq!(&rows[1][11], "negative");
    }

    #[test]
    fn csv_neutralizes_formula_injection() {
        let mut f = finding("=HYPERLINK(\"http://evil\",\"клик\")", "+7 999 000");
        f.selector = Some("@SUM(A1)".into());
        f.participant = "-1+2".into();
        f.segment = "\tтаб".into();
        f.study = "\rcr".into();
        f.url = Some("https://proto.example/a=b".into());
        let rows = read(&to_csv(&[f], "ru"));
        let row = &rows[1];
        assert_eq!(&row[12], "'=HYPERLINK(\"http://evil\",\"клик\")");
        assert_eq!(&row[13], "'+7 999 000");
        assert_eq!(&row[15], "'@SUM(A1)");
        assert_eq!(&row[2], "'-1+2");
        assert_eq!(&row[3], "'\tтаб");
        assert_eq!(&row[4], "'\rcr");
        assert_eq!(
            &row[14], "https://proto.example/a=b",
            "only a leading character is dangerous"
        );
        for cell in row.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell:?}"
            );
        }
    }

    #[test]
    fn json_round_trips() {
        let export = FindingsExport {
            schema_version: FINDINGS_SCHEMA_VERSION,
            generated_at: "2025-03-02T12:00:00Z".into(),
            filters: FindingsFilters {
                journey: "benefit".into(),
                ..Default::default()
            },
            findings: vec![finding("<quote> & \"x\"", "")],
        };
        let text = to_json(&export);
        assert!(
            text.contains("\n  \"schema_version\": 1,"),
            "pretty-printed"
        );
        assert_eq!(
            serde_json::from_str::<FindingsExport>(&text).unwrap(),
            export
        );
    }

    /// The schema documents exactly the fields `Finding` serializes, with the
    /// app's category and emotion lists.
    #[test]
    fn schema_matches_the_types() {
        let schema: Value =
            serde_json::from_str(include_str!("../../../docs/findings-schema.json")).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(
            schema["properties"]["schema_version"]["const"],
            json!(FINDINGS_SCHEMA_VERSION)
        );
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let export = FindingsExport {
            schema_version: 1,
            generated_at: String::new(),
            filters: FindingsFilters::default(),
            findings: vec![],
        };
        assert_eq!(
            keys(&schema["properties"]),
            keys(&serde_json::to_value(&export).unwrap())
        );
        let item = &schema["$defs"]["finding"];
        let fields = keys(&serde_json::to_value(finding("", "")).unwrap());
        assert_eq!(keys(&item["properties"]), fields);
        let mut required: Vec<String> = serde_json::from_value(item["required"].clone()).unwrap();
        required.sort();
        assert_eq!(required, fields);
        for (name, field) in item["properties"].as_object().unwrap() {
            assert!(field["description"].is_string(), "{name} is documented");
        }
        let categories: Vec<&str> = CATEGORIES.iter().map(|c| c.0).collect();
        assert_eq!(item["properties"]["category"]["enum"], json!(categories));
        assert_eq!(item["properties"]["emotion"]["enum"], json!(EMOTIONS));
        assert_eq!(item["properties"]["severity"]["minimum"], 1);
        assert_eq!(item["properties"]["severity"]["maximum"], 4);
    }
}
