//! Build progress: a spinner with mkosi's current step on a terminal, plain
//! timestamped lines otherwise (CI=true or output not a TTY).

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Shows what a long-running step is doing.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
}

/// Whether to draw a spinner: stderr is a terminal and CI is not set.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
        && !std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

impl Progress {
    /// Starts showing progress for `what`.
    pub fn start(what: &str) -> Progress {
        let bar = interactive().then(|| {
            let b = ProgressBar::new_spinner();
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix}: {wide_msg}")
            {
                b.set_style(style);
            }
            b.set_prefix(what.to_string());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        if bar.is_none() {
            eprintln!("[keel +0s] {what}");
        }
        Progress {
            bar,
            started: Instant::now(),
        }
    }

    /// One line of the tool's output. Step lines (mkosi marks them with ‣)
    /// are shown; everything else only at debug level.
    pub fn line(&self, line: &str) {
        let step = line.trim_start().strip_prefix('‣').map(str::trim);
        match (&self.bar, step) {
            (Some(b), Some(s)) => b.set_message(s.to_string()),
            (None, Some(s)) => eprintln!("[keel +{}s] {s}", self.started.elapsed().as_secs()),
            _ => tracing::debug!("{line}"),
        }
    }

    /// Stops the spinner.
    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
