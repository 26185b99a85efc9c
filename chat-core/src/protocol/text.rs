//! What a text may hold: bodies that show nothing, and names that could mislead.

/// Unicode format characters (general category Cf): zero-width spaces and joiners, bidi
/// controls, the byte-order mark, tags. They print nothing by themselves.
pub fn is_format(c: char) -> bool {
    matches!(c,
        '\u{AD}' | '\u{600}'..='\u{605}' | '\u{61C}' | '\u{6DD}' | '\u{70F}' | '\u{890}'..='\u{891}'
        | '\u{8E2}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// Private-use characters: their meaning is private to some font or system.
pub fn is_private_use(c: char) -> bool {
    matches!(c, '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{FFFFD}' | '\u{100000}'..='\u{10FFFD}')
}

/// Characters that show as nothing: whitespace, format characters, and the fillers that
/// render blank (Hangul fillers, the combining grapheme joiner, the braille blank).
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || is_format(c)
        || matches!(
            c,
            '\u{34F}' | '\u{115F}' | '\u{1160}' | '\u{2800}' | '\u{3164}' | '\u{FFA0}'
        )
}

/// Whether `text` shows nothing at all (empty, or only invisible characters).
pub fn is_blank(text: &str) -> bool {
    text.chars().all(is_invisible)
}

/// Why a display name is refused, if it is: control, format (bidi overrides, zero-width
/// characters) and private-use characters can make one name pass for another.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.chars().any(char::is_control) {
        Some("control characters")
    } else if name.chars().any(is_format) {
        Some("invisible formatting characters (bidi controls, zero-width characters)")
    } else if name.chars().any(is_private_use) {
        Some("private-use characters")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_bodies_and_misleading_names() {
        assert!(is_blank(""));
        assert!(is_blank(" \n\t"));
        assert!(is_blank("\u{200B}\u{200D}\u{FEFF}\u{3164}"));
        assert!(!is_blank("\u{200B}a"));
        assert!(!is_blank("👍"));
        assert_eq!(name_problem("Zoë 🌱"), None);
        assert!(name_problem("evil\u{202E}txt.exe").is_some());
        assert!(name_problem("a\u{200B}b").is_some());
        assert!(name_problem("tab\there").is_some());
        assert!(name_problem("\u{E000}").is_some());
    }
}
