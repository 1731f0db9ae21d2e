use super::*;
use std::thread::sleep;

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

#[test]
fn stop_terminates_and_reaps() {
    let mut t = Supervised::spawn("sleep", Command::new("sleep").arg("600")).expect("spawn");
    let pid = t.pid();
    assert!(alive(pid) && t.is_running());
    let s = t.stop(Duration::from_secs(5)).expect("stop");
    assert!(!s.success());
    assert!(!alive(pid), "process {pid} still exists (not reaped?)");
    assert!(!t.is_running());
    assert_eq!(
        t.stop(Duration::ZERO).expect("again"),
        s,
        "stop is idempotent"
    );
}

#[test]
fn sigterm_ignored_means_sigkill() {
    let mut t = Supervised::spawn(
        "stubborn",
        &mut sh("trap '' TERM; while :; do sleep 0.1; done"),
    )
    .expect("spawn");
    // Give the shell time to install its trap.
    sleep(Duration::from_millis(300));
    let pid = t.pid();
    let s = t.stop(Duration::from_millis(300)).expect("stop");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&s),
        Some(9),
        "{s}"
    );
    assert!(!alive(pid));
}

#[test]
fn drop_stops_the_child_and_detach_does_not() {
    let t = Supervised::spawn("sleep", Command::new("sleep").arg("600")).expect("spawn");
    let pid = t.pid();
    drop(t);
    assert!(!alive(pid));

    let t = Supervised::spawn("daemon", Command::new("sleep").arg("600")).expect("spawn");
    let pid = t.detach();
    assert!(alive(pid), "a detached child outlives its handle");
    let _ = kill(
        Pid::from_raw(i32::try_from(pid).expect("pid")),
        Signal::SIGKILL,
    );
}

#[test]
fn exit_status_of_a_finished_child() {
    let mut t = Supervised::spawn("sh", &mut sh("exit 7")).expect("spawn");
    let s = t
        .wait_timeout(Duration::from_secs(10))
        .expect("wait")
        .expect("ended");
    assert_eq!(s.code(), Some(7));
    assert_eq!(t.try_wait().expect("cached"), Some(s));
}

#[test]
fn output_goes_to_the_log_and_explains_an_early_exit() {
    let d = tempfile::tempdir().expect("tempdir");
    let log = d.path().join("svc.log");
    std::fs::write(&log, "earlier run\n").expect("old log");
    let opts = SpawnOptions::default().log_to(&log);
    let mut t = Supervised::spawn_with(
        "svc",
        &mut sh("echo starting; echo 'bad config' >&2; exit 2"),
        &opts,
    )
    .expect("spawn");
    let e = t
        .wait_ready(Duration::from_secs(10), || false)
        .expect_err("exits");
    assert!(
        matches!(e, NotReady::Exited(s) if s.code() == Some(2)),
        "{e}"
    );
    assert_eq!(t.log_path(), Some(log.as_path()));
    assert_eq!(t.log_tail(2), "starting\nbad config");
    assert!(t.log_tail(10).starts_with("earlier run\n"), "appended");

    let fresh = SpawnOptions::default().log_to(&log).fresh_log();
    let mut t = Supervised::spawn_with("svc", &mut sh("echo again"), &fresh).expect("spawn");
    t.wait_timeout(Duration::from_secs(10)).expect("wait");
    assert_eq!(log_tail(&log, 10), "again");
}

#[test]
fn stdin_is_closed_with_a_log() {
    // `cat` ends at once on a closed stdin; on an inherited one it would wait.
    let d = tempfile::tempdir().expect("tempdir");
    let opts = SpawnOptions::default().log_to(&d.path().join("cat.log"));
    let mut t = Supervised::spawn_with("cat", &mut Command::new("cat"), &opts).expect("spawn");
    let s = t.wait_timeout(Duration::from_secs(10)).expect("wait");
    assert_eq!(s.and_then(|s| s.code()), Some(0));
}

#[test]
fn wait_ready_passes_or_times_out() {
    let d = tempfile::tempdir().expect("tempdir");
    let flag = d.path().join("ready");
    let script = format!("sleep 0.2; touch {}; sleep 600", flag.display());
    let mut t = Supervised::spawn("svc", &mut sh(&script)).expect("spawn");
    t.wait_ready(Duration::from_secs(10), || flag.exists())
        .expect("ready");
    let e = t
        .wait_ready(Duration::from_millis(100), || false)
        .expect_err("never ready");
    assert!(matches!(e, NotReady::TimedOut(_)), "{e}");
    assert!(t.is_running());
}

/// Starts a shell that forks a `sleep` helper, stops the shell, and says
/// whether the helper survived.
fn helper_survives_stop(opts: &SpawnOptions) -> bool {
    let d = tempfile::tempdir().expect("tempdir");
    let pidfile = d.path().join("helper.pid");
    let script = format!("sleep 600 & echo $! > {}; wait", pidfile.display());
    let mut t = Supervised::spawn_with("parent", &mut sh(&script), opts).expect("spawn");
    t.wait_ready(Duration::from_secs(10), || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
    })
    .expect("helper started");
    let helper: u32 = std::fs::read_to_string(&pidfile)
        .expect("pid")
        .trim()
        .parse()
        .expect("number");
    assert!(alive(helper));
    t.stop(Duration::from_secs(5)).expect("stop");
    // A killed helper is reparented to init (or a subreaper), which reaps it.
    let end = Instant::now() + Duration::from_secs(2);
    let running = || {
        std::fs::read_to_string(format!("/proc/{helper}/stat")).is_ok_and(|s| !s.contains(") Z"))
    };
    while running() && Instant::now() < end {
        sleep(POLL);
    }
    let survived = running();
    if survived {
        let _ = kill(
            Pid::from_raw(i32::try_from(helper).expect("pid")),
            Signal::SIGKILL,
        );
    }
    survived
}

#[test]
fn own_process_group_takes_forked_helpers_along() {
    assert!(!helper_survives_stop(
        &SpawnOptions::default().own_process_group()
    ));
    // By default only the child itself is signalled.
    assert!(helper_survives_stop(&SpawnOptions::default()));
}

#[test]
fn missing_program_is_a_spawn_error() {
    let e = Supervised::spawn("nothing", &mut Command::new("/nonexistent/keel-daemon"))
        .expect_err("missing");
    assert!(
        matches!(&e, CmdError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{e}"
    );
}
