//! Whisper's initial prompt: the domain's words, so the model spells
//! «СНИЛС» and «льготная категория» instead of something that sounds alike.
//! Whisper reads the prompt as text said just before the window; it holds
//! ~200 tokens ([`crate::transcribe::MAX_PROMPT_TOKENS`]), so the most
//! specific words go first. For a journey, only its `vocabulary`: with the
//! step titles added, Whisper wrote title words into the demo's transcripts
//! («Так, пособие, льготная.» for «Так, пособие на ребёнка.»). Opt-in
//! (`lab-analyze run --vocabulary-prompt`, `transcribe --prompt/--vocabulary`):
//! measured, a prompt raises the error rate where its words are not said.

use lab_model::Journey;

/// Longest prompt text built here (characters); the token limit cuts it
/// further in [`crate::transcribe::Transcriber::prompt_tokens`].
pub const MAX_PROMPT_CHARS: usize = 600;

/// The prompt for a journey: its vocabulary terms, comma-separated. `None`
/// when it has none.
pub fn for_journey(journey: &Journey) -> Option<String> {
    let terms: Vec<&str> = journey.vocabulary.iter().map(String::as_str).collect();
    build(&terms, &[])
}

/// The prompt from vocabulary terms and free sentences, in that order;
/// duplicates (ignoring case) and blanks dropped, cut at a whole term or
/// sentence under [`MAX_PROMPT_CHARS`].
pub fn build<'a>(terms: &[&'a str], sentences: &[&'a str]) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    let mut fresh = |list: &[&'a str]| -> Vec<&'a str> {
        list.iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty() && seen.insert(t.to_lowercase()))
            .collect()
    };
    let terms = fresh(terms);
    let sentences = fresh(sentences);
    let mut out = String::new();
    let fits = |out: &str, add: &str| out.chars().count() + add.chars().count() <= MAX_PROMPT_CHARS;
    for (i, t) in terms.iter().enumerate() {
        let piece = if i == 0 {
            (*t).to_string()
        } else {
            format!(", {t}")
        };
        if !fits(&out, &piece) {
            break;
        }
        out.push_str(&piece);
    }
    if !out.is_empty() {
        out.push('.');
    }
    for s in sentences {
        let end = if s.ends_with(['.', '!', '?', '…']) {
            ""
        } else {
            "."
        };
        let piece = format!("{}{s}{end}", if out.is_empty() { "" } else { " " });
        if !fits(&out, &piece) {
            break;
        }
        out.push_str(&piece);
    }
    (!out.is_empty()).then_some(out)
}

/// Terms of a vocabulary file (`lab-analyze transcribe --vocabulary FILE`):
/// one per line; blank lines and lines starting with `#` are skipped.
pub fn parse_vocabulary(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_comes_first_then_step_titles() {
        let p = build(
            &["СНИЛС", "Госуслуги", "снилс", " ", "льготная категория"],
            &[
                "Найти услугу в каталоге",
                "Войти через Госуслуги (ЕСИА)",
                "Готово!",
            ],
        );
        assert_eq!(
            p.as_deref(),
            Some(
                "СНИЛС, Госуслуги, льготная категория. Найти услугу в каталоге. \
                 Войти через Госуслуги (ЕСИА). Готово!"
            )
        );
        assert_eq!(build(&[], &[]), None);
        assert_eq!(build(&[], &["Войти"]).as_deref(), Some("Войти."));
    }

    #[test]
    fn a_long_prompt_is_cut_at_a_whole_term_keeping_the_vocabulary() {
        let terms: Vec<String> = (0..200).map(|i| format!("термин{i}")).collect();
        let refs: Vec<&str> = terms.iter().map(String::as_str).collect();
        let p = build(&refs, &["Шаг первый"]).unwrap();
        assert!(p.chars().count() <= MAX_PROMPT_CHARS + 1, "{}", p.len());
        assert!(p.starts_with("термин0, термин1, "));
        assert!(p.ends_with('.') && !p.contains("Шаг"));
        let last = p.trim_end_matches('.').rsplit(", ").next().unwrap();
        assert!(terms.iter().any(|t| t == last), "cut inside a term: {last}");
    }

    #[test]
    fn the_journey_prompt_and_a_vocabulary_file() {
        let mut j = crate::timeline::testkit::journey();
        j.vocabulary = vec!["СНИЛС".into(), "льготная категория".into()];
        let p = for_journey(&j).unwrap();
        // The terms only: step titles in the prompt leaked into transcripts.
        assert_eq!(p, "СНИЛС, льготная категория.");
        j.vocabulary.clear();
        assert_eq!(for_journey(&j), None);
        assert_eq!(
            parse_vocabulary("# термины\nСНИЛС\n\n  Госуслуги  \n"),
            ["СНИЛС", "Госуслуги"]
        );
    }
}
