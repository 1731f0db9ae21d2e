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

/// Progress of a byte transfer (`keel flash`): a bar with bytes, throughput
/// and time left on a terminal; a plain line every 10 % otherwise.
#[derive(Debug)]
pub struct Transfer {
    bar: Option<ProgressBar>,
    what: String,
    total: u64,
    done: u64,
    next_line: u64,
    started: Instant,
}

impl Transfer {
    /// Starts showing the transfer of `total` bytes, described by `what`.
    pub fn start(what: &str, total: u64) -> Transfer {
        let bar = interactive().then(|| {
            let b = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix}: [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ({eta} left)",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_prefix(what.to_string());
            b
        });
        Transfer {
            bar,
            what: what.to_string(),
            total,
            done: 0,
            next_line: 0,
            started: Instant::now(),
        }
    }

    /// `n` more bytes were transferred.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(b) => b.set_position(self.done),
            None if self.done >= self.next_line || self.done == self.total => {
                let pct = (self.done * 100).checked_div(self.total).unwrap_or(100);
                eprintln!(
                    "[keel +{}s] {}: {pct}% ({} of {}, {}/s)",
                    self.started.elapsed().as_secs(),
                    self.what,
                    indicatif::BinaryBytes(self.done),
                    indicatif::BinaryBytes(self.total),
                    indicatif::BinaryBytes(self.rate()),
                );
                self.next_line = self.done + self.total.div_ceil(10).max(1);
            }
            None => {}
        }
    }

    /// Bytes per second so far.
    pub fn rate(&self) -> u64 {
        let ms = self.started.elapsed().as_millis().max(1);
        (u128::from(self.done) * 1000 / ms) as u64
    }

    /// Stops the bar; returns the elapsed time and bytes per second.
    pub fn finish(self) -> (Duration, u64) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        (self.started.elapsed(), self.rate())
    }
}
