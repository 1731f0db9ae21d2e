//! `KEEL-CHECK key=value ...` lines: what a test image's check unit prints
//! on the serial console once the system is up (see
//! images/test-tiny's `keel-check` script), parsed into a map.

use std::collections::BTreeMap;

/// The prefix of a check line.
pub const PREFIX: &str = "KEEL-CHECK";

/// A regex matching a whole check line, for `Vm::wait_for_console`.
pub const LINE_REGEX: &str = r"^KEEL-CHECK( [a-z0-9-]+=\S*)+ end=1$";

/// Parses a check line into its key/value pairs; `None` if it is not one.
pub fn parse(line: &str) -> Option<BTreeMap<String, String>> {
    let rest = line.trim().strip_prefix(PREFIX)?.strip_prefix(' ')?;
    let mut map = BTreeMap::new();
    for word in rest.split_whitespace() {
        let (k, v) = word.split_once('=')?;
        if k.is_empty() {
            return None;
        }
        map.insert(k.to_string(), v.to_string());
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_check_lines() {
        let m = parse("KEEL-CHECK multi-user=active usr-writable=no tpmrm0=yes usr-source=/dev/mapper/usr end=1")
            .expect("parses");
        assert_eq!(m["multi-user"], "active");
        assert_eq!(m["usr-writable"], "no");
        assert_eq!(m["usr-source"], "/dev/mapper/usr");
        assert_eq!(m["end"], "1");
    }

    #[test]
    fn rejects_other_lines() {
        for l in [
            "",
            "KEEL-CHECKX a=1",
            "KEEL-CHECK a",
            "KEEL-CHECK =1",
            "echo KEEL-CHECK a=1",
        ] {
            assert!(parse(l).is_none(), "{l:?}");
        }
    }

    #[test]
    fn line_regex_needs_the_end_marker() {
        let re = regex_lite(LINE_REGEX);
        assert!(re("KEEL-CHECK a=1 b=2 end=1"));
        assert!(
            !re("KEEL-CHECK a=1 b=2 en"),
            "a line still being printed must not match"
        );
    }

    fn regex_lite(p: &str) -> impl Fn(&str) -> bool {
        let re = regex::Regex::new(p).expect("regex");
        move |s| re.is_match(s)
    }
}
