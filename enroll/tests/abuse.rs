//! keel-enroll under abuse: slowloris connections are closed by the server's
//! timeouts, per-address connection and request-rate limits answer (or close)
//! as configured, input quoted into the audit log is bounded and escaped, and
//! real enrollments finish while 500 abusive clients hammer the service
//! (`abuse/load.rs`). Every case runs against the real HTTPS service; the
//! assertions are on outcomes (closed, refused with which code, admitted),
//! never on durations.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "abuse/load.rs"]
mod load;
#[path = "abuse/raw.rs"]
mod raw;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;
use keel_attest::protocol::RejectCode;
use keel_enroll_bench::harness::{Harness, Options};
use raw::{dribble, status_code, End, Target, SLOW_BODY_HEAD, SLOW_HEAD};

/// A service with `[limits]` set to `limits` (TOML lines).
pub async fn limited(limits: &str) -> Harness {
    Harness::start(Options {
        policy: keel_enroll_bench::bench_policy(),
        max_body: Some(256 * 1024),
        extra_config: format!("[limits]\n{limits}\n"),
        ..Default::default()
    })
    .await
    .unwrap()
}

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_while_a_node_enrolls() {
    let h = limited(
        "tls-handshake-timeout-secs = 2\nheader-read-timeout-secs = 2\nrequest-timeout-secs = 3",
    )
    .await;
    let t = Target::new(&h);
    // Give up on a connection after 20 times the timeout: only a server that
    // never closes it gets there.
    let cap = Duration::from_secs(40);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let t = t.clone();
        tasks.spawn(async move {
            let every = Duration::from_millis(300);
            match i % 3 {
                // The header never ends.
                0 => (
                    "header",
                    dribble(t.tls(LOCAL).await.unwrap(), SLOW_HEAD, b'x', every, cap).await,
                ),
                // The header is complete, the body trickles.
                1 => (
                    "body",
                    dribble(
                        t.tls(LOCAL).await.unwrap(),
                        SLOW_BODY_HEAD,
                        b'a',
                        every,
                        cap,
                    )
                    .await,
                ),
                // Not even the TLS handshake: a ClientHello that never ends.
                _ => (
                    "handshake",
                    // A handshake record announcing 16 KB, sent 3 bytes a second.
                    dribble(
                        t.tcp(LOCAL).await.unwrap(),
                        &[0x16, 3, 1, 0x40, 0],
                        b'a',
                        every,
                        cap,
                    )
                    .await,
                ),
            }
        });
    }
    // Meanwhile a real node enrolls.
    let node = Node::new("amid-slowloris");
    allow(&h, &node).await;
    let t0 = Instant::now();
    admitted(node.enroll(&client(&h)).await.unwrap());
    keel_testbed::report!(
        "slowloris: a node enrolled in {:?} beside 30 dribbling connections",
        t0.elapsed()
    );
    let mut seen = std::collections::BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        let (kind, end) = r.unwrap();
        match &end {
            End::StillOpen => panic!("a slow {kind} connection was never closed by the server"),
            End::Closed { answer } => {
                if kind == "body" {
                    // The request timeout answers before closing.
                    let a = answer.as_deref().unwrap_or("");
                    assert!(a.starts_with("HTTP/1.1 503"), "slow body answered {a:?}");
                }
                *seen
                    .entry(format!("{kind}: {}", answer.as_deref().unwrap_or("closed")))
                    .or_insert(0) += 1;
            }
        }
    }
    keel_testbed::report!("slowloris: server closed every connection: {seen:?}");
    assert_eq!(seen.values().sum::<i32>(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rate_past_the_burst_is_rate_limited() {
    // Five requests, then one token per 100 s: the sixth is refused.
    let h = limited("burst = 5\nrequests-per-second = 0.01").await;
    let t = Target::new(&h);
    let http = t.http(&h, LOCAL);
    let url = format!("{}/v1/enroll/start", h.base_url);
    for _ in 0..5 {
        let r = http.post(&url).body("{not json").send().await.unwrap();
        let (status, code, _) = status_code(r).await;
        assert_eq!((status, code.as_str()), (400, "malformed-request"));
    }
    let r = http.post(&url).body("{not json").send().await.unwrap();
    let (status, code, retry) = status_code(r).await;
    assert_eq!((status, code.as_str()), (429, "rate-limited"));
    let retry: u64 = retry.expect("Retry-After header").parse().unwrap();
    assert!((1..=100).contains(&retry), "Retry-After {retry}");
    keel_testbed::report!("rate limit: 6th request answered {status} {code}, Retry-After {retry}");
    // A node sees the code through the client library, retryable.
    let n = Node::new("rate-limited-node");
    allow(&h, &n).await;
    let err = n.start(&client(&h)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(code_of(err), RejectCode::RateLimited);
    // The report endpoint answers in its own format (a bare reason).
    let r = http
        .post(format!("{}/v1/nodes/report", h.base_url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(status_code(r).await.1, "rate-limited");
    // Refusals by the limiter are not audit events: only the five malformed
    // requests and the allow-list import are in the log.
    let rows = h.store().audit_rows().await.unwrap();
    assert_eq!(rows.len(), 6, "{rows:#?}");
}

fn code_of(e: keel_attest::client::ClientError) -> RejectCode {
    e.rejection().expect("a rejection").code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_address_limit_are_closed() {
    let h = limited("max-connections-per-address = 3").await;
    let t = Target::new(&h);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(t.tls(LOCAL).await.unwrap());
    }
    // The fourth is closed before the handshake.
    let fourth = t.tls(LOCAL).await;
    assert!(fourth.is_err(), "a 4th connection was served");
    keel_testbed::report!(
        "connection limit: 4th connection refused: {}",
        fourth.err().unwrap()
    );
    // The three are served.
    let mut s = open.pop().unwrap();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = dribble(
        &mut s,
        head,
        b' ',
        Duration::from_secs(3600),
        Duration::from_secs(30),
    )
    .await;
    match answer {
        End::Closed { answer: Some(a) } => assert!(a.starts_with("HTTP/1.1 200"), "{a}"),
        other => panic!("healthz over an admitted connection: {other:?}"),
    }
    drop(s);
    // Its slot is free again once the server has seen it close.
    let mut again = None;
    for _ in 0..100 {
        if let Ok(c) = t.tls(LOCAL).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        again.is_some(),
        "the closed connection's slot was never freed"
    );
    // Another address is counted apart.
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    if raw::can_bind(other) {
        assert!(t.tls(other).await.is_ok());
    } else {
        keel_testbed::skip("cannot use 127.0.0.2 as a source address here");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_bounded_and_escaped_in_the_audit_log() {
    let h = harness(None).await;
    let t = Target::new(&h);
    let http = t.http(&h, LOCAL);
    let url = format!("{}/v1/enroll/start", h.base_url);
    // A well-formed start request whose host name is 100 KB with terminal
    // escapes and a bidi override in front.
    let n = Node::new("x");
    let mut req = n.start_request();
    req.claims.hostname = format!("evil\x1b[2J\n\u{202e}{}", "a".repeat(100_000));
    let r = http.post(&url).json(&req).send().await.unwrap();
    let (status, code, _) = status_code(r).await;
    assert_eq!((status, code.as_str()), (400, "malformed-request"));
    // A body whose parser error quotes 100 KB of input.
    let body = format!("{{\"version\": \"\\u0007{}\"}}", "b".repeat(100_000));
    let r = http.post(&url).body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 400);
    assert!(
        text.len() < 4096,
        "answer of {} bytes quotes the input",
        text.len()
    );

    let rows = h.store().audit_rows().await.unwrap();
    let host_row = &rows[rows.len() - 2].entry;
    let serde_row = &rows[rows.len() - 1].entry;
    keel_testbed::report!(
        "audit: node-id stored as {} bytes: {:?}",
        host_row.node_id.len(),
        &host_row.node_id[..40]
    );
    keel_testbed::report!(
        "audit: parser detail stored as {} bytes: {:?}",
        serde_row.detail.len(),
        &serde_row.detail[..80]
    );
    assert!(host_row
        .node_id
        .starts_with("evil\\u{1b}[2J\\n\\u{202e}aaa"));
    assert!(
        host_row.node_id.ends_with("…[cut, 100012 bytes]"),
        "{}",
        host_row.node_id
    );
    assert!(host_row.node_id.len() <= keel_enroll::audit::FIELD_MAX + 32);
    assert!(serde_row.detail.len() <= keel_enroll::audit::DETAIL_MAX + 32);
    assert!(serde_row.detail.contains("\\u{7}"), "{}", serde_row.detail);
    for r in &rows {
        let all = serde_json::to_string(&r.entry).unwrap();
        assert!(
            !all.contains("\\u001b") && !all.contains("\\u0007"),
            "{all}"
        );
        assert!(!r.entry.node_id.contains('\n') && !r.entry.detail.contains('\u{202e}'));
    }
    let (n, _) = h.admin().audit_verify().await.unwrap();
    assert_eq!(n, rows.len());
}

/// With one async worker only, a request whose audit write waits on a
/// database lock (held here through a second connection, as an admin command
/// would) must not stall the service: `/healthz` is answered meanwhile.
#[tokio::test(flavor = "current_thread")]
async fn a_request_waiting_on_sqlite_does_not_block_the_worker() {
    let h = harness(None).await;
    let db = h.loaded.config.database.strip_prefix("sqlite:").unwrap();
    let lock = rusqlite::Connection::open(db).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let t = Target::new(&h);
    let http = t.http(&h, LOCAL);
    let url = format!("{}/v1/enroll/start", h.base_url);
    let waiting = {
        let http = http.clone();
        tokio::spawn(async move { http.post(url).body("{").send().await })
    };
    // Give the request time to reach the store and wait on the lock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = http
        .get(format!("{}/healthz", h.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !waiting.is_finished(),
        "the malformed request was answered before the lock was released"
    );
    lock.execute_batch("COMMIT").unwrap();
    let r = waiting.await.unwrap().unwrap();
    let (status, code, _) = status_code(r).await;
    assert_eq!((status, code.as_str()), (400, "malformed-request"));
    keel_testbed::report!("sqlite: /healthz answered while a request waited on the database lock");
}
