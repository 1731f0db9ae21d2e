//! Reading a VM's serial console log: the tests' eyes on the guest.
//!
//! QEMU appends everything the guest prints on its serial port to a log file.
//! A [`ConsoleLog`] reads that file and looks for patterns from a cursor that
//! moves past each match, so a test can expect events in order ("reached
//! multi-user", then "check passed") without an old line matching twice.

use std::path::{Path, PathBuf};

use regex::Regex;

/// A serial console log file with a read cursor.
#[derive(Debug)]
pub struct ConsoleLog {
    path: PathBuf,
    cursor: usize,
}

/// A match found in the console log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleMatch {
    /// The whole line holding the match (console noise such as \r removed).
    pub line: String,
    /// The regex's capture groups (index 0 is the whole match; missing groups are empty).
    pub groups: Vec<String>,
}

impl ConsoleLog {
    /// A reader of `path`, with the cursor at its start.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ConsoleLog {
            path: path.into(),
            cursor: 0,
        }
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything logged so far (lossy UTF-8; a missing file reads as empty).
    pub fn text(&self) -> String {
        std::fs::read(&self.path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Looks for `re` in the log after the cursor; on a match, moves the
    /// cursor past the matched line and returns it.
    pub fn find_next(&mut self, re: &Regex) -> Option<ConsoleMatch> {
        self.find_next_any(std::slice::from_ref(re)).map(|(_, m)| m)
    }

    /// Like [`ConsoleLog::find_next`] for several patterns: the first line
    /// (after the cursor) that matches any of them, and which one matched.
    pub fn find_next_any(&mut self, res: &[Regex]) -> Option<(usize, ConsoleMatch)> {
        let text = self.text();
        let (i, m, end) = find_any_after(&text, self.cursor, res)?;
        self.cursor = end;
        Some((i, m))
    }

    /// The last `n` lines of the log, for error messages.
    pub fn tail(&self, n: usize) -> String {
        tail_lines(&self.text(), n)
    }
}

/// Finds `re` in `text[from..]`, line by line; returns the match and the
/// byte offset just past its line. The last line counts even without its
/// line ending (a `login: ` prompt has none), so anchor patterns that could
/// match a line still being printed (`$`, or a full value like `=yes`).
pub fn find_after(text: &str, from: usize, re: &Regex) -> Option<(ConsoleMatch, usize)> {
    find_any_after(text, from, std::slice::from_ref(re)).map(|(_, m, end)| (m, end))
}

/// Like [`find_after`] for several patterns: the first line matching any
/// of them, the index of the pattern that matched (the lowest if several
/// match that line), the match and the offset past its line.
pub fn find_any_after(
    text: &str,
    from: usize,
    res: &[Regex],
) -> Option<(usize, ConsoleMatch, usize)> {
    let rest = text.get(from..)?;
    let mut offset = from;
    for raw in rest.split_inclusive('\n') {
        let line_end = offset + raw.len();
        let line = clean_line(raw);
        for (i, re) in res.iter().enumerate() {
            if let Some(c) = re.captures(&line) {
                let groups = c
                    .iter()
                    .map(|g| g.map(|m| m.as_str().to_string()).unwrap_or_default())
                    .collect();
                return Some((i, ConsoleMatch { line, groups }, line_end));
            }
        }
        offset = line_end;
    }
    None
}

/// A console line without its line ending, carriage returns and ANSI colour
/// or cursor sequences (systemd's status output uses them).
pub fn clean_line(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI: ESC [ params final-byte (0x40..=0x7e)
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for n in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&n) {
                            break;
                        }
                    }
                }
            }
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// The last `n` lines of `text`, cleaned.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<String> = text.lines().map(clean_line).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(s: &str) -> Regex {
        Regex::new(s).expect("regex")
    }

    #[test]
    fn clean_line_strips_ansi_and_cr() {
        let raw =
            "[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mMulti-User System\x1b[0m.\r\n";
        assert_eq!(
            clean_line(raw),
            "[  OK  ] Reached target Multi-User System."
        );
    }

    #[test]
    fn matches_in_order_and_cursor_moves_on() {
        let text = "boot\nKEEL-CHECK a=1\nmore\nKEEL-CHECK a=2\n";
        let r = re(r"KEEL-CHECK a=(\d)");
        let (m1, end1) = find_after(text, 0, &r).expect("first");
        assert_eq!(m1.groups, ["KEEL-CHECK a=1", "1"]);
        let (m2, end2) = find_after(text, end1, &r).expect("second");
        assert_eq!(m2.groups[1], "2");
        assert_eq!(end2, text.len());
        assert!(find_after(text, end2, &r).is_none());
    }

    #[test]
    fn first_line_matching_any_pattern_wins() {
        let text = "ok\nYou are in emergency mode.\nReached target Multi-User System.\n";
        let res = [re("Multi-User System"), re("emergency mode")];
        let (i, m, _) = find_any_after(text, 0, &res).expect("match");
        assert_eq!(i, 1, "the emergency line comes first");
        assert_eq!(m.line, "You are in emergency mode.");
    }

    #[test]
    fn prompt_without_newline_matches() {
        let r = re(r"login: $");
        assert!(find_after("boot\nkeel login: ", 0, &r).is_some());
        assert!(find_after("KEEL-CHECK done=ye", 0, &re("done=yes")).is_none());
    }

    #[test]
    fn cursor_beyond_text_or_inside_a_char_is_none() {
        let r = re("x");
        assert!(find_after("x\n", 10, &r).is_none());
        assert!(find_after("é\n", 1, &r).is_none());
    }

    #[test]
    fn file_reader_moves_past_matches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("console.log");
        let mut log = ConsoleLog::new(&p);
        assert!(
            log.find_next(&re("login:")).is_none(),
            "missing file reads as empty"
        );
        std::fs::write(&p, "a\nlocalhost login: \n").expect("write");
        assert!(log.find_next(&re("login:")).is_some());
        assert!(log.find_next(&re("login:")).is_none());
        assert_eq!(log.tail(1), "localhost login: ");
    }
}
