//! What changed between two locks, for `keel lock --update` and
//! `keel build --relock` to print.

use std::collections::BTreeMap;

use super::Lock;

/// One line per changed, added or removed package, then a count line.
pub fn describe(old: &Lock, new: &Lock) -> String {
    let map = |l: &Lock| -> BTreeMap<String, String> {
        l.all_packages()
            .into_iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect()
    };
    let (a, b) = (map(old), map(new));
    let mut out = String::new();
    let mut n = 0;
    for (name, v) in &a {
        match b.get(name) {
            Some(w) if w != v => out.push_str(&format!("  {name} {v} -> {w}\n")),
            Some(_) => continue,
            None => out.push_str(&format!("  {name} {v} removed\n")),
        }
        n += 1;
    }
    for (name, w) in &b {
        if !a.contains_key(name) {
            out.push_str(&format!("  {name} {w} added\n"));
            n += 1;
        }
    }
    if n == 0 {
        "  no package changed\n".to_string()
    } else {
        format!("{out}  {n} package(s) changed\n")
    }
}
