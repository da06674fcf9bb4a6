//! Free text from clients, such as a concert's title.

/// Checks that `value` (the field `field`) is text people can read and Postgres can store: no
/// control characters (NUL is refused by Postgres, the others break logs and displays), no
/// bidirectional embeddings, overrides or isolates (they make a title read differently from
/// what it is: "Trojan Source", CVE-2021-42574), and something visible besides whitespace.
/// Right-to-left scripts and the bidi marks LRM/RLM stay allowed.
pub fn check_text(field: &str, value: &str) -> Result<(), String> {
    if let Some(bad) = value
        .chars()
        .find(|c| c.is_control() || is_bidi_control(*c))
    {
        return Err(format!(
            "{field} must not contain control or bidi-override characters, found U+{:04X}",
            u32::from(bad)
        ));
    }
    if value.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        return Err(format!("{field} must not be blank"));
    }
    Ok(())
}

/// Bidi embeddings and overrides (U+202A..U+202E) and isolates (U+2066..U+2069).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that render as nothing but are not whitespace to `char::is_whitespace`: soft
/// hyphen, Mongolian vowel separator, zero-width space/joiners, word joiner and invisible
/// operators, byte order mark.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_text_in_any_script_passes() {
        for text in ["IU HEREH", "아이유", "שלום", "a\u{200F}b", " padded "] {
            assert_eq!(check_text("title", text), Ok(()), "{text:?}");
        }
    }

    #[test]
    fn control_bidi_and_blank_text_is_refused() {
        for text in [
            "a\u{0}b",
            "a\nb",
            "\u{7F}",
            "a\u{9F}",
            "a\u{202E}b",
            "\u{2067}",
            "",
            " \t",
            "\u{3000}",
            "\u{200B}\u{FEFF}",
        ] {
            assert!(check_text("title", text).is_err(), "{text:?}");
        }
    }
}
