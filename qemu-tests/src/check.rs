//! `KEEL-CHECK key=value ...` lines: what a test image's check unit prints
//! on the serial console once the system is up (see
//! images/test-tiny's `keel-check` script), parsed into a map.

use std::collections::BTreeMap;

/// The prefix of a check line.
pub const PREFIX: &str = "KEEL-CHECK";

/// A regex matching a whole check line, for `Vm::wait_for_console`. The unit
/// prints through the journal to the console, which may put the kernel-log
/// prefix (`[  140.449257] keel-check[379]: `) in front.
pub const LINE_REGEX: &str =
    r"^(?:\S+ login: )?(?:\[[^\]]*\] \S+: )?KEEL-CHECK( [a-z0-9-]+=\S*)+ end=1$";

/// Parses a check line into its key/value pairs; `None` if it is not one.
pub fn parse(line: &str) -> Option<BTreeMap<String, String>> {
    let line = line.trim();
    // The serial getty's prompt has no newline: a kernel console message
    // printed right after it lands on the same line ("test-tiny login: [...").
    let line = match line.split_once(" login: ") {
        Some((host, rest)) if !host.contains(' ') && rest.starts_with('[') => rest,
        _ => line,
    };
    let line = match line.strip_prefix('[') {
        // "[  140.449257] keel-check[379]: KEEL-CHECK ..."
        Some(rest) => rest.split_once("]: ")?.1,
        None => line,
    };
    let rest = line.strip_prefix(PREFIX)?.strip_prefix(' ')?;
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
        let m = parse("[  140.449257] keel-check[379]: KEEL-CHECK multi-user=active end=1")
            .expect("parses with the kernel-log prefix");
        assert_eq!(m["multi-user"], "active");
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
        assert!(re("[  140.449257] keel-check[379]: KEEL-CHECK a=1 end=1"));
        // Behind the serial getty's prompt (it prints no newline).
        let behind = "test-tiny login: [   86.452669] keel-check[393]: KEEL-CHECK a=1 end=1";
        assert!(re(behind));
        assert_eq!(parse(behind).expect("parses")["a"], "1");
        assert!(!re("echo KEEL-CHECK a=1 end=1"));
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
