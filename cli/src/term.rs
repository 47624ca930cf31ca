//! Text that came from strangers (post titles, bodies, authors, asset paths, descriptors, a
//! peer's answer), made safe to print on the operator's terminal.
//!
//! A title holding `ESC ] 52 ; …` could set the clipboard, `ESC [ 2 J` clear the screen, a CR
//! overwrite the line before it, a right-to-left override reorder what is read. [`safe`] writes
//! every control character (C0, DEL, C1) and every bidirectional control as `\u{..}` instead.
//! JSON output needs none of this: serde escapes C0, and it is meant for programs.

use std::fmt::{self, Write as _};

/// `text` as it will be printed: one line, controls escaped.
pub(crate) fn safe(text: &str) -> Safe<'_> {
    Safe {
        text,
        newlines: false,
    }
}

/// `text` over several lines: `\n` kept, every other control escaped (a CR too).
pub(crate) fn safe_lines(text: &str) -> Safe<'_> {
    Safe {
        text,
        newlines: true,
    }
}

/// See [`safe`]. Width and alignment flags are not applied: pad `to_string()` instead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Safe<'a> {
    text: &'a str,
    newlines: bool,
}

impl fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.text.chars() {
            if self.newlines && c == '\n' || !needs_escape(c) {
                f.write_char(c)?;
            } else {
                write!(f, "{}", c.escape_unicode())?;
            }
        }
        Ok(())
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        let osc52 = "a\u{1b}]52;c;aGk=\u{7}b\rc\u{9b}2J\u{202e}d";
        assert_eq!(
            safe(osc52).to_string(),
            "a\\u{1b}]52;c;aGk=\\u{7}b\\u{d}c\\u{9b}2J\\u{202e}d"
        );
        assert_eq!(safe("one\ntwo\t").to_string(), "one\\u{a}two\\u{9}");
        assert_eq!(safe_lines("one\ntwo\r\n").to_string(), "one\ntwo\\u{d}\n");
        assert_eq!(safe("Grüße, 世界 🦀").to_string(), "Grüße, 世界 🦀");
    }

    proptest! {
        #[test]
        fn nothing_a_terminal_acts_on_gets_through(s in any::<String>()) {
            let out = safe_lines(&s).to_string();
            prop_assert!(out.chars().all(|c| c == '\n' || !needs_escape(c)));
            let out = safe(&s).to_string();
            prop_assert!(out.chars().all(|c| !needs_escape(c)));
        }
    }
}
