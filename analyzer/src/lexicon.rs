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

/// A stem whose sound key is shorter than this matches only as written:
/// «зна*» sounds like the start of «сначала», «поня*» like that of
/// «понимаю» («как я понимаю» is no confusion).
pub const SOUND_MIN_CHARS: usize = 5;

/// A term whose sound key is shorter than this takes no edits (it may still
/// sound the same): among the commonest words, one edit turns «куда» into
/// «туда», «поня*» into «они», «пойму» into «почему».
pub const EDIT_MIN_CHARS: usize = 6;
/// A term takes two edits only from this long («ничего» is two from «чего»).
pub const EDIT_TWO_CHARS: usize = 10;

/// Edits a phrase may take from its written form, by the length of its
/// sound keys together: none under [`TOLERANCE_ONE`] letters (a sound-alike
/// still matches), one from it, two from [`TOLERANCE_TWO`]. The longer the
/// phrase, the less likely a near miss is another phrase of the language
/// (`scripts/lexicon-coverage` measures what each tolerance lets through
/// among the 50,000 commonest Russian words).
pub const TOLERANCE_ONE: usize = 7;
pub const TOLERANCE_TWO: usize = 13;

fn tolerance(key_chars: usize) -> usize {
    match key_chars {
        n if n >= TOLERANCE_TWO => 2,
        n if n >= TOLERANCE_ONE => 1,
        _ => 0,
    }
}

/// How a word sounds, roughly, for matching what the recogniser misheard:
/// unstressed vowels merge (о/а, е/и/я/ы/э, у/ю), voiced consonants become
/// their voiceless pairs (б/п, в/ф, г/к, д/т, ж/ш, з/с, щ/ш), soft and hard
/// signs go. «понемаю» and «понимаю» sound alike; «уверя» is one sound from
/// «уверен». Other scripts are kept as they are.
pub fn sound_key(word: &str) -> Vec<char> {
    word.chars()
        .filter_map(|c| {
            Some(match c {
                'а' | 'о' => 'а',
                'е' | 'ё' | 'э' | 'и' | 'ы' | 'я' | 'й' => 'и',
                'у' | 'ю' => 'у',
                'б' => 'п',
                'в' => 'ф',
                'г' => 'к',
                'д' => 'т',
                'ж' | 'щ' => 'ш',
                'з' => 'с',
                'ь' | 'ъ' => return None,
                c => c,
            })
        })
        .collect()
}

impl Term {
    /// The term as written (without its `*`).
    pub fn text(&self) -> &str {
        match self {
            Term::Word(w) | Term::Stem(w) => w,
        }
    }

    /// Edits between this term (whose sound key is `key`) and a token: 0
    /// when the token is written as the term asks or sounds the same, else
    /// the edit distance of the sound keys (a stem against the token's
    /// beginning), `None` beyond two or for a term too short to take edits
    /// ([`EDIT_MIN_CHARS`]).
    pub fn distance(&self, key: &[char], token: &str, token_key: &[char]) -> Option<usize> {
        let exact = match self {
            Term::Word(w) => token == w,
            Term::Stem(s) => token.starts_with(s.as_str()),
        };
        if exact {
            return Some(0);
        }
        let sounds_alike = match self {
            Term::Word(_) => token_key == key,
            Term::Stem(_) => key.len() >= SOUND_MIN_CHARS && token_key.starts_with(key),
        };
        if sounds_alike {
            return Some(0);
        }
        if key.len() < EDIT_MIN_CHARS {
            return None;
        }
        let d = match self {
            Term::Word(_) => edit_distance(token_key, key),
            // The token's beginning as long as the stem or one longer, ending
            // in the stem's last sound (that sound tells the word's forms
            // apart: «работа*» is not «работу», «получа*» not «получил»), or
            // the whole token when it is one shorter (the recogniser cut the
            // word: «уверя» for «уверен…»).
            Term::Stem(_) => [key.len(), key.len() + 1]
                .into_iter()
                .filter(|&k| k <= token_key.len() && token_key[k - 1] == key[key.len() - 1])
                .chain((token_key.len() + 1 == key.len()).then_some(token_key.len()))
                .map(|k| edit_distance(&token_key[..k], key))
                .min()?,
        };
        let cap = if key.len() >= EDIT_TWO_CHARS { 2 } else { 1 };
        (d <= cap).then_some(d)
    }
}

/// Levenshtein distance: insertions, deletions and substitutions of letters.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let next = (diagonal + usize::from(x != y))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phrase {
    /// As written in the lexicon, for notes.
    pub text: String,
    pub terms: Vec<Term>,
    /// Each term's [`sound_key`].
    pub keys: Vec<Vec<char>>,
    /// Edits the whole phrase may take ([`tolerance`] of its keys' length).
    pub tolerance: usize,
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
    /// Sound edits from the written phrase: 0 when the words are as written
    /// or sound the same, more when the recogniser's words were near misses.
    pub edits: usize,
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
            let keys: Vec<Vec<char>> = terms.iter().map(|t| sound_key(t.text())).collect();
            let tolerance = tolerance(keys.iter().map(Vec::len).sum());
            phrases.push(Phrase {
                text: line.split_whitespace().collect::<Vec<_>>().join(" "),
                terms,
                keys,
                tolerance,
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
    /// most words, then the fewest edits, then the shortest span, then the
    /// first in the lexicon.
    pub fn match_at(&self, tokens: &[String], start: usize) -> Option<Hit> {
        let keys: Vec<Vec<char>> = tokens.iter().map(|t| sound_key(t)).collect();
        self.match_keyed(tokens, &keys, start)
    }

    fn match_keyed(&self, tokens: &[String], keys: &[Vec<char>], start: usize) -> Option<Hit> {
        let mut best: Option<(usize, Hit)> = None;
        for (phrase, p) in self.phrases.iter().enumerate() {
            let Some((last, edits)) = match_terms(p, 0, tokens, keys, start, p.tolerance) else {
                continue;
            };
            let rank = |n: usize, h: &Hit| (std::cmp::Reverse(n), h.edits, h.last);
            let hit = Hit {
                phrase,
                first: start,
                last,
                edits,
            };
            if best.is_none_or(|(n, b)| rank(p.terms.len(), &hit) < rank(n, &b)) {
                best = Some((p.terms.len(), hit));
            }
        }
        best.map(|(_, hit)| hit)
    }

    /// All phrases in the token sequence, left to right, not overlapping.
    pub fn find(&self, tokens: &[String]) -> Vec<Hit> {
        let keys: Vec<Vec<char>> = tokens.iter().map(|t| sound_key(t)).collect();
        let mut hits = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            match self.match_keyed(tokens, &keys, i) {
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

/// The last token and the edits spent if the phrase's terms from `term` on
/// match from `tokens[pos]` on within `budget` edits, with at most
/// [`MAX_FILLER`] other tokens between consecutive terms.
fn match_terms(
    phrase: &Phrase,
    term: usize,
    tokens: &[String],
    keys: &[Vec<char>],
    pos: usize,
    budget: usize,
) -> Option<(usize, usize)> {
    let spent = phrase.terms[term]
        .distance(&phrase.keys[term], tokens.get(pos)?, &keys[pos])
        .filter(|&d| d <= budget)?;
    if term + 1 == phrase.terms.len() {
        return Some((pos, spent));
    }
    (pos + 1..=pos + 1 + MAX_FILLER)
        .filter_map(|next| match_terms(phrase, term + 1, tokens, keys, next, budget - spent))
        .min_by_key(|&(last, edits)| (edits, last))
        .map(|(last, edits)| (last, edits + spent))
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

    /// Edits a one-phrase lexicon takes to find its phrase in `text`.
    fn edits(phrase: &str, text: &str) -> Option<usize> {
        let lexicon = Lexicon::parse(phrase, "t").unwrap();
        lexicon.find(&toks(text)).first().map(|h| h.edits)
    }

    #[test]
    fn near_misses_match_within_the_phrase_tolerance() {
        let cases: &[(&str, &str, Option<usize>)] = &[
            ("понимаю", "понимаю", Some(0)),
            // Sounds alike: unstressed vowels, voicing.
            ("понимаю", "понемаю", Some(0)),
            ("не понима*", "не понемаю", Some(0)),
            ("не зна*", "ни знаю", Some(0)),
            // One edit within a 7-letter key.
            ("понимаю", "понмаю", Some(1)),
            ("понимаю", "понимаюх", Some(1)),
            ("непонятн*", "непанятно", Some(0)),
            ("непонятн*", "непонятен", Some(1)),
            ("не уверен*", "не уверя", Some(1)),
            ("понимаю", "поминаю", None),
            ("непонятн*", "неприятно", None),
            ("не работа*", "не работу", None),
            ("не получа*", "не получил", None),
            ("ничего не происход*", "чего не происходит", None),
            // Short keys match only as written or sounding the same.
            ("где", "все", None),
            ("не зна*", "не сначала", None),
            ("странн*", "страна", None),
            ("странн*", "странную", Some(0)),
            // Two edits only in long phrases.
            ("ничего не происход*", "ничего не праисходит", Some(0)),
            ("ничего не происход*", "ничево не праисходит", Some(1)),
            ("не пойму", "не знаю почему", None),
            ("как поня*", "как они", None),
            ("как поня*", "как я понимаю", None),
            ("что име* в виду", "что имеют в веду", Some(0)),
        ];
        for &(phrase, text, want) in cases {
            assert_eq!(edits(phrase, text), want, "{phrase} ~ {text}");
        }
        assert_eq!(sound_key("здоровье"), "старафи".chars().collect::<Vec<_>>());
        let c = |t: &str| t.chars().collect::<Vec<char>>();
        assert_eq!(edit_distance(&c(""), &c("аб")), 2);
        assert_eq!(edit_distance(&c("уфири"), &c("уфирин")), 1);
        assert_eq!(edit_distance(&c("кот"), &c("ток")), 2);
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
        assert_eq!(lex.phrases[1].tolerance, 0);
        assert_eq!(lex.phrases[0].tolerance, 0); // «кти» + «ита»: 6 sounds
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
