//! Client-supplied text made safe to print: to an operator's terminal
//! (the CLI) and into log lines (span names built from a method or tool).

use std::borrow::Cow;

/// `s` safe to print to a terminal: control characters (C0, DEL, C1, so
/// no escape sequence a client put in its name or a method can recolour,
/// move or retitle the operator's terminal) and bidirectional overrides
/// (which can make text read other than it is) become `\u{…}`.
pub fn printable(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_and_bidi_overrides_are_escaped() {
        assert_eq!(printable("claude-desktop 1.2"), "claude-desktop 1.2");
        assert!(matches!(printable("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            printable("evil\x1b]0;pwned\x07"),
            "evil\\u{1b}]0;pwned\\u{7}"
        );
        assert_eq!(printable("a\nb\tc\x7f"), "a\\u{a}b\\u{9}c\\u{7f}");
        assert_eq!(printable("x\u{9b}31m"), "x\\u{9b}31m");
        assert_eq!(printable("abc\u{202e}gpj.exe"), "abc\\u{202e}gpj.exe");
        assert_eq!(printable("名前 ✓"), "名前 ✓");
    }
}
