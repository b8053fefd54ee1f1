//! How a candidate's note reads: Russian durations and counts, quoted
//! words, clipped text.

use lab_model::analysis::Word;

/// A duration for a note: «1,2 с», «14 с», «2 мин 5 с».
pub fn duration_ru(ns: i64) -> String {
    let s = ns as f64 / 1e9;
    if s < 10.0 {
        format!("{:.1} с", s).replace('.', ",")
    } else if s < 60.0 {
        format!("{} с", s.round())
    } else {
        let total = s.round() as i64;
        match total % 60 {
            0 => format!("{} мин", total / 60),
            rest => format!("{} мин {rest} с", total / 60),
        }
    }
}

/// `n` with the Russian noun form for it: (клик, клика, кликов).
pub fn count_ru(n: usize, one: &str, few: &str, many: &str) -> String {
    let form = match (n % 10, n % 100) {
        (1, m) if m != 11 => one,
        (2..=4, m) if !(12..=14).contains(&m) => few,
        _ => many,
    };
    format!("{n} {form}")
}

/// Words as spoken, at most `max` of them.
pub fn quote(words: &[Word], max: usize) -> String {
    let mut text = words
        .iter()
        .take(max)
        .map(|w| w.text.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if words.len() > max {
        text.push('…');
    }
    text
}

/// A string cut to `max` characters for a note.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max).collect::<String>() + "…"
    }
}
