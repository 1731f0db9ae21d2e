//! Running a program to completion: [`CommandRunExt`] on
//! [`std::process::Command`] and [`Task`], a user-visible step.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use crate::{cmdline, scrub_secrets, CmdError};

/// How many trailing lines of a failed command's output go into its error.
pub const TAIL_LINES: usize = 40;

/// A bounded buffer of the last lines a program printed.
#[derive(Debug, Default)]
struct Tail(VecDeque<String>);

impl Tail {
    fn push(&mut self, line: &str) {
        if self.0.len() == TAIL_LINES {
            self.0.pop_front();
        }
        self.0.push_back(line.to_string());
    }
    fn from_bytes(bytes: &[u8]) -> Self {
        let mut t = Tail::default();
        for l in String::from_utf8_lossy(bytes).lines() {
            t.push(l);
        }
        t
    }
    fn render(&self) -> String {
        if self.0.is_empty() {
            "(no output)".to_string()
        } else {
            self.0.iter().cloned().collect::<Vec<_>>().join("\n")
        }
    }
}

/// Extension methods on [`std::process::Command`]; see the module docs.
pub trait CommandRunExt {
    /// Runs to completion; stdout and stderr are captured, and the tail of
    /// stderr (or stdout when stderr is empty) goes into the error.
    fn run(&mut self) -> Result<(), CmdError>;
    /// Runs to completion and returns stdout as UTF-8.
    fn run_get_string(&mut self) -> Result<String, CmdError>;
    /// Runs to completion and parses stdout as JSON.
    fn run_get_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, CmdError>;
    /// Runs to completion, calling `on_line` with each line of stdout and
    /// stderr as it is printed (merged, in arrival order per stream). The last
    /// [`TAIL_LINES`] lines go into the error on failure.
    fn run_streaming(&mut self, on_line: &mut dyn FnMut(&str)) -> Result<(), CmdError>;
}

impl CommandRunExt for Command {
    fn run(&mut self) -> Result<(), CmdError> {
        self.run_get_string().map(|_| ())
    }

    fn run_get_string(&mut self) -> Result<String, CmdError> {
        let line = cmdline(self);
        tracing::debug!(command = %line, "running");
        scrub_secrets(self);
        let out = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| spawn_error(self, source))?;
        if !out.status.success() {
            let tail = if out.stderr.iter().all(u8::is_ascii_whitespace) {
                Tail::from_bytes(&out.stdout)
            } else {
                Tail::from_bytes(&out.stderr)
            };
            return Err(CmdError::Failed {
                cmdline: line,
                status: out.status,
                tail: tail.render(),
            });
        }
        String::from_utf8(out.stdout).map_err(|_| CmdError::Utf8 { cmdline: line })
    }

    fn run_get_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, CmdError> {
        let line = cmdline(self);
        let s = self.run_get_string()?;
        serde_json::from_str(&s).map_err(|source| CmdError::Json {
            cmdline: line,
            source,
        })
    }

    fn run_streaming(&mut self, on_line: &mut dyn FnMut(&str)) -> Result<(), CmdError> {
        let line = cmdline(self);
        tracing::debug!(command = %line, "running");
        scrub_secrets(self);
        let mut child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| spawn_error(self, source))?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let mut readers = Vec::new();
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ];
        for pipe in pipes.into_iter().flatten() {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                let mut r = BufReader::new(pipe);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let l = String::from_utf8_lossy(&buf);
                            // Progress bars redraw with \r: keep the last frame.
                            let l = l.trim_end_matches(['\n', '\r']);
                            let l = l.rsplit('\r').next().unwrap_or_default();
                            if tx.send(l.to_string()).is_err() {
                                break;
                            }
                        }
                    }
                }
            }));
        }
        drop(tx);
        let mut tail = Tail::default();
        for l in rx {
            tail.push(&l);
            on_line(&l);
        }
        for r in readers {
            let _ = r.join();
        }
        let status = child.wait().map_err(|source| CmdError::Io {
            cmdline: line.clone(),
            source,
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(CmdError::Failed {
                cmdline: line,
                status,
                tail: tail.render(),
            })
        }
    }
}

fn spawn_error(cmd: &Command, source: std::io::Error) -> CmdError {
    CmdError::Spawn {
        program: cmd.get_program().to_string_lossy().into_owned(),
        source,
    }
}

/// A user-visible step: a description plus the command that carries it out.
#[derive(Debug)]
pub struct Task {
    description: String,
    cmd: Command,
}

impl Task {
    /// A step described as `description` (sentence case, no trailing dot).
    pub fn new(description: impl Into<String>, program: impl AsRef<std::ffi::OsStr>) -> Self {
        Task {
            description: description.into(),
            cmd: Command::new(program),
        }
    }
    /// The command, to add arguments, environment, working directory.
    pub fn cmd(&mut self) -> &mut Command {
        &mut self.cmd
    }
    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }
    /// The description given to [`Task::new`].
    pub fn description(&self) -> &str {
        &self.description
    }
    /// Logs the description, then runs the command like [`CommandRunExt::run`].
    pub fn run(mut self) -> Result<(), CmdError> {
        tracing::info!("{}", self.description);
        self.cmd.run()
    }
    /// Logs the description, then runs the command like [`CommandRunExt::run_get_string`].
    pub fn run_get_string(mut self) -> Result<String, CmdError> {
        tracing::info!("{}", self.description);
        self.cmd.run_get_string()
    }
    /// Logs the description, then streams output like [`CommandRunExt::run_streaming`].
    pub fn run_streaming(mut self, on_line: &mut dyn FnMut(&str)) -> Result<(), CmdError> {
        tracing::info!("{}", self.description);
        self.cmd.run_streaming(on_line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_carries_stderr_tail_and_status() {
        let err = Command::new("sh")
            .args([
                "-c",
                "echo out; for i in $(seq 1 100); do echo line$i >&2; done; exit 3",
            ])
            .run()
            .expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("line100"), "{msg}");
        assert!(!msg.contains("line10\n"), "tail is bounded: {msg}");
        assert_eq!(err.status().and_then(|s| s.code()), Some(3));
    }

    #[test]
    fn stdout_used_when_stderr_empty() {
        let err = Command::new("sh")
            .args(["-c", "echo only-stdout; exit 1"])
            .run()
            .expect_err("must fail");
        assert!(err.to_string().contains("only-stdout"));
    }

    #[test]
    fn stdin_is_closed() {
        // `cat` would hang forever on an inherited terminal; with stdin closed it ends.
        let out = Command::new("cat").run_get_string().expect("cat runs");
        assert_eq!(out, "");
    }

    #[test]
    fn json_output_parses_and_bad_json_is_an_error() {
        let v: serde_json::Value = Command::new("echo")
            .arg(r#"{"a": 1}"#)
            .run_get_json()
            .expect("json");
        assert_eq!(v["a"], 1);
        let e = Command::new("echo")
            .arg("not json")
            .run_get_json::<serde_json::Value>()
            .expect_err("bad json");
        assert!(matches!(e, CmdError::Json { .. }));
    }

    #[test]
    fn streaming_sees_every_line_of_both_streams() {
        let mut seen = Vec::new();
        Command::new("sh")
            .args(["-c", "echo a; echo b >&2; printf 'x\\ry\\n'"])
            .run_streaming(&mut |l| seen.push(l.to_string()))
            .expect("runs");
        seen.sort();
        assert_eq!(seen, ["a", "b", "y"]);
    }

    #[test]
    fn missing_program_says_so() {
        let e = Command::new("/nonexistent/keel-tool")
            .run()
            .expect_err("missing");
        assert!(e.to_string().contains("could not start"));
    }
}
