//! Phrase lexicons for the transcript: confusion cues in Russian and English
//! speech, matched on word forms.
//!
//! File format (`lexicons/confusion-ru.txt`, `confusion-en.txt`): one phrase
//! a line, `#` starts a comment, a word ending in `*` is a stem that matches
//! any word beginning with it (`понима*` → понимаю, понимаешь, понимает).
//! Phrase words and transcript words go through the same [`normalize`]:
//! lower case, ё → е, punctuation dropped. Between two consecutive words of a
//! phrase one other word may stand (`куда нажима*` finds «куда тут нажимать»).

use std::path::Path;

/// Built-in Russian confusion cues.
pub const CONFUSION_RU: &str = include_str!("../lexicons/confusion-ru.txt");
/// Built-in English confusion cues.
pub const CONFUSION_EN: &str = include_str!("../lexicons/confusion-en.txt");

/// How many other words may stand between two consecutive phrase words.
/// One lets «куда тут нажимать» and "don't really understand" through; two
/// would start joining words of different clauses.
pub const MAX_FILLER: usize = 1;

/// One word of a phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// The normalised word must equal it.
    Word(String),
    /// The normalised word must begin with it.
    Stem(String),
}

/// Words (and stems) at least this long also match a recognised word one
/// edit away («понемаю» for «понимаю», «непонятен» for «непонятн*»): the
/// recogniser's near misses. Shorter ones must match exactly: one edit
/// turns «странн*» into «страна» and «где» into «все».
pub const TOLERANT_MIN_CHARS: usize = 7;

impl Term {
    pub fn matches(&self, token: &str) -> bool {
        let chars = |t: &str| t.chars().collect::<Vec<char>>();
        match self {
            Term::Word(w) => {
                token == w
                    || (w.chars().count() >= TOLERANT_MIN_CHARS
                        && within_one_edit(&chars(token), &chars(w)))
            }
            Term::Stem(s) => {
                if token.starts_with(s.as_str()) {
                    return true;
                }
                let stem = chars(s);
                let n = stem.len();
                if n < TOLERANT_MIN_CHARS {
                    return false;
                }
                // The token's beginning, one letter shorter, as long or one
                // longer than the stem, one edit from it.
                let token = chars(token);
                (n - 1..=n + 1)
                    .filter(|&k| k <= token.len())
                    .any(|k| within_one_edit(&token[..k], &stem))
            }
        }
    }
}

/// Whether `a` becomes `b` by at most one insertion, deletion or
/// substitution of a letter.
fn within_one_edit(a: &[char], b: &[char]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let head = short
        .iter()
        .zip(long.iter())
        .take_while(|(x, y)| x == y)
        .count();
    if head == short.len() {
        // Equal, or the longer has one letter more at its end.
        return true;
    }
    if short.len() == long.len() {
        short[head + 1..] == long[head + 1..]
    } else {
        short[head..] == long[head + 1..]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phrase {
    /// As written in the lexicon, for notes.
    pub text: String,
    pub terms: Vec<Term>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lexicon {
    pub phrases: Vec<Phrase>,
}

#[derive(Debug, thiserror::Error)]
pub enum LexiconError {
    #[error("lexicon {name}, line {line}: {message}")]
    Syntax {
        name: String,
        line: usize,
        message: String,
    },
    #[error("reading lexicon {path}: {error}")]
    Io {
        path: String,
        #[source]
        error: std::io::Error,
    },
}

/// A phrase found in a token sequence: `tokens[first..=last]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Index into [`Lexicon::phrases`].
    pub phrase: usize,
    pub first: usize,
    pub last: usize,
}

impl Lexicon {
    /// The built-in Russian and English confusion cues.
    pub fn builtin() -> Self {
        let mut lexicon =
            Lexicon::parse(CONFUSION_RU, "confusion-ru.txt").expect("built-in lexicon");
        lexicon.extend(Lexicon::parse(CONFUSION_EN, "confusion-en.txt").expect("built-in lexicon"));
        lexicon
    }

    /// Parses lexicon text; `name` appears in errors.
    pub fn parse(text: &str, name: &str) -> Result<Self, LexiconError> {
        let mut phrases = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let err = |message: String| LexiconError::Syntax {
                name: name.to_string(),
                line: i + 1,
                message,
            };
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut terms = Vec::new();
            for word in line.split_whitespace() {
                let (body, stem) = match word.strip_suffix('*') {
                    Some(body) => (body, true),
                    None => (word, false),
                };
                if body.contains('*') {
                    return Err(err(format!("{word:?}: '*' may only end a word")));
                }
                let mut normal = tokens(body);
                if normal.len() != 1 {
                    return Err(err(format!("{word:?} is not one word")));
                }
                let normal = normal.remove(0);
                terms.push(if stem {
                    Term::Stem(normal)
                } else {
                    Term::Word(normal)
                });
            }
            phrases.push(Phrase {
                text: line.split_whitespace().collect::<Vec<_>>().join(" "),
                terms,
            });
        }
        Ok(Lexicon { phrases })
    }

    /// Reads a lexicon file.
    pub fn load(path: &Path) -> Result<Self, LexiconError> {
        let text = std::fs::read_to_string(path).map_err(|error| LexiconError::Io {
            path: path.display().to_string(),
            error,
        })?;
        Lexicon::parse(&text, &path.display().to_string())
    }

    pub fn extend(&mut self, other: Lexicon) {
        self.phrases.extend(other.phrases);
    }

    /// The phrase that matches starting at `tokens[start]`: the one with the
    /// most words, then the shortest span, then the first in the lexicon.
    pub fn match_at(&self, tokens: &[String], start: usize) -> Option<Hit> {
        let mut best: Option<(usize, Hit)> = None;
        for (phrase, p) in self.phrases.iter().enumerate() {
            let Some(last) = match_terms(&p.terms, tokens, start) else {
                continue;
            };
            let better = best
                .is_none_or(|(n, b)| p.terms.len() > n || (p.terms.len() == n && last < b.last));
            if better {
                best = Some((
                    p.terms.len(),
                    Hit {
                        phrase,
                        first: start,
                        last,
                    },
                ));
            }
        }
        best.map(|(_, hit)| hit)
    }

    /// All phrases in the token sequence, left to right, not overlapping.
    pub fn find(&self, tokens: &[String]) -> Vec<Hit> {
        let mut hits = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            match self.match_at(tokens, i) {
                Some(hit) => {
                    hits.push(hit);
                    i = hit.last + 1;
                }
                None => i += 1,
            }
        }
        hits
    }
}

/// Index of the last token if `terms` match from `tokens[pos]` on, with at
/// most [`MAX_FILLER`] other tokens between consecutive terms.
fn match_terms(terms: &[Term], tokens: &[String], pos: usize) -> Option<usize> {
    let (first, rest) = terms.split_first()?;
    if !first.matches(tokens.get(pos)?) {
        return None;
    }
    if rest.is_empty() {
        return Some(pos);
    }
    (pos + 1..=pos + 1 + MAX_FILLER).find_map(|next| match_terms(rest, tokens, next))
}

/// Normalised words of a text: lower case, ё → е; apostrophes and hyphens
/// inside a word are dropped (don't → dont, где-то → гдето), any other
/// character that is not a letter or digit separates words.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                word.push(if l == 'ё' { 'е' } else { l });
            }
        } else if matches!(c, '\'' | '’' | 'ʼ' | '-' | '‐' | '‑') {
            continue;
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// One word normalised as in [`tokens`], the parts joined if punctuation split it.
pub fn normalize(word: &str) -> String {
    tokens(word).concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        tokens(s)
    }

    /// The phrase texts found in a sentence, with the words they cover.
    fn found(lexicon: &Lexicon, text: &str) -> Vec<(String, String)> {
        let t = toks(text);
        lexicon
            .find(&t)
            .into_iter()
            .map(|h| {
                (
                    lexicon.phrases[h.phrase].text.clone(),
                    t[h.first..=h.last].join(" "),
                )
            })
            .collect()
    }

    #[test]
    fn near_misses_of_long_words_match() {
        let cases = [
            ("понимаю", "понимаю", true),
            ("понимаю", "понемаю", true),
            ("понимаю", "понимаюх", true),
            ("понимаю", "понмаю", true),
            ("понимаю", "поминаю", false),
            ("где", "все", false),
        ];
        for (term, token, want) in cases {
            assert_eq!(
                Term::Word(term.into()).matches(token),
                want,
                "{term} ~ {token}"
            );
        }
        let stems = [
            ("непонятн", "непонятен", true),
            ("непонятн", "непонятно", true),
            ("непонятн", "непанятно", true),
            ("непонятн", "неприятно", false),
            ("странн", "страна", false),
            ("понима", "понемаю", false),
        ];
        for (stem, token, want) in stems {
            assert_eq!(
                Term::Stem(stem.into()).matches(token),
                want,
                "{stem}* ~ {token}"
            );
        }
        let c = |t: &str| t.chars().collect::<Vec<char>>();
        assert!(within_one_edit(&c(""), &c("а")));
        assert!(!within_one_edit(&c(""), &c("аб")));
        assert!(within_one_edit(&c("аб"), &c("аб")));
    }

    /// Uncertainty and not-knowing in the forms people use, written apart
    /// from the lexicon (not phrase by phrase from it), and sentences a
    /// participant says while things go fine: coverage and false hits.
    #[test]
    fn coverage_of_common_forms() {
        let lexicon = Lexicon::builtin();
        let confused = [
            "Не знаю, что тут выбрать",
            "Я не уверена, что это правильно",
            "А где тут загрузить документ",
            "Что значит льготная категория",
            "Понимаю, что такое льготная категория", // «не» lost by the recogniser
            "Зачем это здесь нужно",
            "Что это за поле такое",
            "Что имеется в виду под доходом",
            "Ничего не понятно",
            "Я запуталась",
            "Не могу понять, куда дальше",
            "Куда тут нажимать",
            "Почему не нажимается кнопка",
            "Не помню свой СНИЛС",
            "Без понятия, что сюда писать",
            "В смысле реквизиты",
            "Не нахожу, где отправить",
            "Кнопка не работает",
            "Ничего не происходит",
            "Что теперь делать",
            "Где же эта справка",
            "Как понять, что заявление ушло",
            "Сомневаюсь, что так можно",
            "I'm not sure what to pick",
            "What does this field mean",
        ];
        let missed: Vec<&str> = confused
            .iter()
            .copied()
            .filter(|s| lexicon.find(&toks(s)).is_empty())
            .collect();
        assert!(missed.is_empty(), "not recognised: {missed:?}");
        let fine = [
            "Так, ввожу дату рождения",
            "Отлично, заявление отправлено",
            "Выбираю способ получения",
            "Здесь всё понятно",
            "Страна гражданства Россия",
            "Теперь прикрепляю свидетельство",
            "Нажимаю далее",
            "Хорошо, всё получилось",
        ];
        for s in fine {
            assert!(
                lexicon.find(&toks(s)).is_empty(),
                "{s}: {:?}",
                found(&lexicon, s)
            );
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(
            toks("Непонятно! Где ЁЛКА?"),
            vec!["непонятно", "где", "елка"]
        );
        assert_eq!(
            toks("«куда, тут нажимать…»"),
            vec!["куда", "тут", "нажимать"]
        );
        assert_eq!(
            toks("I don’t  know—where"),
            vec!["i", "dont", "know", "where"]
        );
        assert_eq!(toks("где-то"), vec!["гдето"]);
        assert_eq!(normalize("Ну,"), "ну");
        assert!(toks(" — ... ").is_empty());
    }

    #[test]
    fn word_forms_table() {
        let lex = Lexicon::builtin();
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("я не понимаю", &[("не понима*", "не понимаю")]),
            ("ты не понимаешь", &[("не понима*", "не понимаешь")]),
            ("Не понимает ничего", &[("не понима*", "не понимает")]),
            ("непонятно", &[("непонятн*", "непонятно")]),
            ("Непонятно!", &[("непонятн*", "непонятно")]),
            ("не совсем понятно", &[("не поня*", "не совсем понятно")]),
            (
                "Куда тут нажимать?",
                &[("куда нажима*", "куда тут нажимать")],
            ),
            ("куда нажать", &[("куда нажат*", "куда нажать")]),
            ("я запуталась", &[("запута*", "запуталась")]),
            ("Запутался совсем", &[("запута*", "запутался")]),
            (
                "ёлки, не могу найти кнопку",
                &[("не мог* найт*", "не могу найти")],
            ),
            ("что мне делать", &[("что делать", "что мне делать")]),
            (
                "не понимаю, где это, не работает",
                &[
                    ("не понима*", "не понимаю"),
                    ("где это", "где это"),
                    ("не работа*", "не работает"),
                ],
            ),
            (
                "I don't understand",
                &[("don't understand", "dont understand")],
            ),
            ("This is confusing", &[("confus*", "confusing")]),
            ("where is the button", &[("where is", "where is")]),
            ("what do I do now", &[("what do i do", "what do i do")]),
            ("it doesn't work", &[("doesn't work", "doesnt work")]),
        ];
        for (text, want) in cases {
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(p, w)| (p.to_string(), w.to_string()))
                .collect();
            assert_eq!(found(&lex, text), want, "{text}");
        }
    }

    #[test]
    fn no_cue_in_ordinary_speech() {
        let lex = Lexicon::builtin();
        for text in [
            "понятно",
            "всё понятно, нажимаю далее",
            "понимаю",
            "куда-нибудь",
            "где-то здесь", // «гдето» is not «где»
            "нажимаю отправить",
            "ну вот так, а теперь дальше",
            "куда мне потом нажимать", // two words between: not one phrase
            "I understand",
            "it works",
        ] {
            assert_eq!(found(&lex, text), vec![], "{text}");
        }
    }

    #[test]
    fn parse_and_errors() {
        let lex = Lexicon::parse("# comment\n\n  где  это  # inline\nпонима*\n", "t").unwrap();
        assert_eq!(lex.phrases.len(), 2);
        assert_eq!(lex.phrases[0].text, "где это");
        assert_eq!(lex.phrases[1].terms, vec![Term::Stem("понима".into())]);
        for (text, want) in [
            ("a\nпо*ним", "line 2: \"по*ним\": '*' may only end a word"),
            ("*", "\"*\" is not one word"),
            ("где,это", "is not one word"),
        ] {
            let err = Lexicon::parse(text, "t").unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let err = Lexicon::load(Path::new("/nonexistent/lexicon.txt")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/lexicon.txt"),
            "{err}"
        );
    }

    #[test]
    fn loads_from_a_path() {
        let dir = std::env::temp_dir().join(format!("lexicon-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("extra.txt");
        std::fs::write(&path, "# свой словарь\nне туда*\n").unwrap();
        let lex = Lexicon::load(&path).unwrap();
        assert_eq!(
            found(&lex, "я не туда нажала"),
            vec![("не туда*".into(), "не туда".into())]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn builtin_lexicons_parse() {
        let ru = Lexicon::parse(CONFUSION_RU, "ru").unwrap();
        let en = Lexicon::parse(CONFUSION_EN, "en").unwrap();
        assert!(ru.phrases.len() > 30 && en.phrases.len() > 20);
        assert_eq!(
            Lexicon::builtin().phrases.len(),
            ru.phrases.len() + en.phrases.len()
        );
    }
}
