//! Escaping untrusted text (transcripts, notes, quotes, URLs) for the XML of
//! ELAN files and the HTML of reports. Both drop the characters XML 1.0
//! forbids, so a stray control character from speech recognition or a paste
//! cannot make a document unreadable.

/// Escapes `s` for XML 1.0 element content or attribute values.
///
/// Tab, newline and carriage return become character references: parsers
/// normalize them in attributes and turn a literal CR into LF, so only the
/// references round-trip exactly.
pub(crate) fn xml(s: &str) -> String {
    escape(s, true)
}

/// Escapes `s` for HTML text or a quoted attribute value.
pub(crate) fn html(s: &str) -> String {
    escape(s, false)
}

fn escape(s: &str, xml: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|&c| is_xml_char(c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' if xml => out.push_str(&format!("&#{};", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The `Char` production of XML 1.0; Rust's `char` already excludes surrogates.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_drops_forbidden_characters() {
        assert_eq!(
            xml("<a href=\"x\">&'\u{0}\u{7}\u{FFFE}\t\n\r</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&#9;&#10;&#13;&lt;/a&gt;"
        );
        assert_eq!(html("a\u{1b}<b>\n"), "a&lt;b&gt;\n");
    }
}
