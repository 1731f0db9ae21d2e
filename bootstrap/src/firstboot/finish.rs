//! BundleSynced → Done: check that what the `renew` and `sync` timers rely
//! on is in place; and the agent's own resource use, reported at the end.

use super::acme::ACME_CONFIG;
use super::enroll::files;
use super::gitops::SYNC_CONFIG;
use super::{Ctx, Step, StepError};

/// BundleSynced → Done: checks the pieces later timers rely on exist.
#[derive(Debug)]
pub struct FinishStep;

impl Step for FinishStep {
    fn describe(&self, _ctx: &Ctx) -> String {
        "finishing first boot".into()
    }

    fn run(&mut self, ctx: &Ctx) -> Result<(), StepError> {
        for f in [files::JOIN, files::NODE_KEY, ACME_CONFIG, SYNC_CONFIG] {
            let p = ctx.state_dir.file(f);
            if !p.exists() {
                return Err(StepError::Other(anyhow::anyhow!(
                    "{} is missing",
                    p.display()
                )));
            }
        }
        Ok(())
    }
}

/// The agent's own CPU time and peak RSS, read from `/proc/self` (child
/// processes such as `ceph`, `git` and `ceph-osd --mkfs` are not counted):
/// `user_ms=.. sys_ms=.. maxrss_kb=..`. `None` where /proc is unavailable.
pub fn own_usage() -> Option<String> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_usage(&stat, &status)
}

/// [`own_usage`] over the texts of `/proc/self/stat` and `/proc/self/status`.
fn parse_usage(stat: &str, status: &str) -> Option<String> {
    // Fields after "(comm)": state is field 3, utime 14, stime 15 (clock ticks;
    // USER_HZ is 100 on Linux).
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| f.get(i)?.parse::<u64>().ok().map(|t| t * 10);
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(format!(
        "user_ms={} sys_ms={} maxrss_kb={hwm}",
        ticks(11)?,
        ticks(12)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_parses_proc_texts() {
        let stat =
            "4242 (keel boot) S 1 4242 4242 0 -1 4194560 1 0 0 0 12 3 0 0 20 0 1 0 5 1000 200";
        let status = "Name:\tkeel\nVmHWM:\t   14320 kB\nVmRSS:\t 9000 kB\n";
        assert_eq!(
            parse_usage(stat, status).as_deref(),
            Some("user_ms=120 sys_ms=30 maxrss_kb=14320")
        );
        assert_eq!(parse_usage("garbage", status), None);
        assert_eq!(parse_usage(stat, "Name: x\n"), None);
        assert!(own_usage().is_some());
    }
}
