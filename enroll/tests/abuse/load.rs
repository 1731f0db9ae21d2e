//! The load test: 500 concurrent abusive clients (slow headers, slow bodies,
//! silent TCP connections, garbage bodies and floods of start requests from
//! unknown TPMs) from 38 loopback addresses, while real nodes, allow-listed,
//! enroll from 127.0.0.1. Every real node must be admitted; every abusive
//! connection must end with a refusal or be closed by the server.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::common::*;
use super::limited;
use super::raw::{self, dribble, status_code, End, Target, SLOW_BODY_HEAD, SLOW_HEAD};

/// Real nodes enrolling during the attack.
const NODES: usize = 12;

type Tally = Arc<Mutex<BTreeMap<String, u64>>>;

fn count(t: &Tally, what: String) {
    *t.lock().unwrap().entry(what).or_insert(0) += 1;
}

fn src(net: u8, host: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, net, host as u8 + 1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_enrollments_finish_under_500_abusive_clients() {
    if !raw::can_bind(src(2, 0)) {
        keel_testbed::skip("this host does not route 127.0.2.1 to lo (needed as attacker source)");
        return;
    }
    let h = limited(
        "tls-handshake-timeout-secs = 5\nheader-read-timeout-secs = 3\nrequest-timeout-secs = 10\n\
         max-connections-per-address = 16\nburst = 40\nrequests-per-second = 5",
    )
    .await;
    let t = Target::new(&h);
    let tally: Tally = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let start_url = format!("{}/v1/enroll/start", h.base_url);
    // Unknown TPMs for the start flood (a few, reused: generating keys is slow).
    let strangers: Arc<Vec<String>> = Arc::new(
        (0..4)
            .map(|i| {
                serde_json::to_string(&Node::new(&format!("stranger-{i}")).start_request()).unwrap()
            })
            .collect(),
    );

    let mut abusers = tokio::task::JoinSet::new();
    for i in 0..500usize {
        let (t, tally, stop) = (t.clone(), tally.clone(), stop.clone());
        let (url, strangers) = (start_url.clone(), strangers.clone());
        // Kind by i % 20, source address by i / 20 (25 clients of a kind).
        let (kind, nth) = (i % 20, i / 20);
        let http = match kind {
            10..=14 => Some(t.http(&h, src(4, nth % 10))),
            15..=19 => Some(t.http(&h, src(5, nth % 10))),
            _ => None,
        };
        abusers.spawn(async move {
            let cap = Duration::from_secs(60);
            let drip = Duration::from_millis(500);
            while !stop.load(Ordering::Relaxed) {
                match kind {
                    // 125 slow headers from 3 addresses: 42 each, over the
                    // connection limit of 16.
                    0..=4 => match t.tls(src(2, i % 3)).await {
                        Err(_) => {
                            count(&tally, "slow-header: refused at connect".into());
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Ok(s) => match dribble(s, SLOW_HEAD, b'x', drip, cap).await {
                            End::StillOpen => count(&tally, "slow-header: STILL OPEN".into()),
                            End::Closed { .. } => {
                                count(&tally, "slow-header: closed by server".into())
                            }
                        },
                    },
                    // 25 slow bodies from 5 addresses.
                    5 => match t.tls(src(3, nth % 5)).await {
                        Err(_) => count(&tally, "slow-body: refused at connect".into()),
                        Ok(s) => match dribble(s, SLOW_BODY_HEAD, b'a', drip, cap).await {
                            End::StillOpen => count(&tally, "slow-body: STILL OPEN".into()),
                            End::Closed { answer } => count(
                                &tally,
                                format!("slow-body: {}", answer.unwrap_or_else(|| "closed".into())),
                            ),
                        },
                    },
                    // 100 silent TCP connections (no TLS handshake) from 10 addresses.
                    6..=9 => match t.tcp(src(3, 5 + nth % 10)).await {
                        Err(_) => count(&tally, "silent: refused at connect".into()),
                        Ok(s) => match dribble(s, b"", 0, Duration::from_secs(3600), cap).await {
                            End::StillOpen => count(&tally, "silent: STILL OPEN".into()),
                            End::Closed { .. } => count(&tally, "silent: closed by server".into()),
                        },
                    },
                    // 125 garbage bodies and 125 start floods, from 10
                    // addresses each, as fast as the answers come.
                    _ => {
                        let (what, body) = if kind < 15 {
                            (
                                "garbage",
                                format!("{{\"version\": 1, \"junk\": [{i}, \u{1}]"),
                            )
                        } else {
                            ("start-flood", strangers[i % strangers.len()].clone())
                        };
                        let http = http.as_ref().unwrap();
                        match http.post(&url).body(body).send().await {
                            Ok(r) => {
                                let (status, code, _) = status_code(r).await;
                                count(&tally, format!("{what}: {status} {code}"));
                            }
                            Err(e) => {
                                count(&tally, format!("{what}: network error"));
                                eprintln!("{what}: {e}");
                            }
                        }
                    }
                }
            }
        });
    }

    // The attack is under way once every kind has had some answers.
    let ramp = Instant::now();
    while tally.lock().unwrap().values().sum::<u64>() < 1000
        && ramp.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let nodes: Vec<Node> = (0..NODES)
        .map(|i| Node::new(&format!("real-{i}")))
        .collect();
    for n in &nodes {
        allow(&h, n).await;
    }
    let t0 = Instant::now();
    let mut real = tokio::task::JoinSet::new();
    for n in nodes {
        let c = client(&h);
        real.spawn(async move {
            let t = Instant::now();
            let d = n.enroll(&c).await;
            (n.id.clone(), d, t.elapsed())
        });
    }
    let mut took = Vec::new();
    while let Some(r) = real.join_next().await {
        let (id, d, elapsed) = r.unwrap();
        match d {
            Ok(d) => {
                admitted(d);
            }
            Err(e) => panic!("{id} was not admitted under attack: {e}"),
        }
        took.push(elapsed);
    }
    let all_done = t0.elapsed();
    // Let the slow kinds reach their timeouts at least once more, then stop.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    // Connections still dribbling end when the server closes them (or at
    // the cap, which the tally then shows as STILL OPEN).
    while abusers.join_next().await.is_some() {}

    took.sort();
    let tally = tally.lock().unwrap().clone();
    keel_testbed::report!(
        "load: {NODES} real nodes admitted under 500 abusive clients; each took {:?} (min) .. {:?} (max), all {:?}",
        took[0],
        took[took.len() - 1],
        all_done
    );
    for (what, n) in &tally {
        keel_testbed::report!("load: {n:>7} {what}");
    }
    let sum = |prefix: &str| -> u64 {
        tally
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    };
    assert!(
        !tally.keys().any(|k| k.contains("STILL OPEN")),
        "{tally:#?}"
    );
    // Each defence was exercised.
    assert!(
        sum("slow-header: refused at connect") > 0,
        "connection limit never hit"
    );
    assert!(sum("slow-header: closed by server") > 0);
    assert!(
        sum("slow-body: HTTP/1.1 503") > 0,
        "request timeout never hit"
    );
    assert!(
        sum("silent: closed by server") > 0,
        "handshake timeout never hit"
    );
    assert!(sum("garbage: 400 malformed-request") > 0);
    assert!(sum("start-flood: 403 ek-not-allowed") > 0);
    assert!(sum("garbage: 429 rate-limited") + sum("start-flood: 429 rate-limited") > 0);
    // Nothing else came back: every answer to the floods is one of those.
    for (k, _) in tally
        .iter()
        .filter(|(k, _)| k.starts_with("garbage") || k.starts_with("start-flood"))
    {
        assert!(
            k.ends_with("400 malformed-request")
                || k.ends_with("403 ek-not-allowed")
                || k.ends_with("429 rate-limited")
                || k.ends_with("network error"),
            "unexpected answer {k}"
        );
    }
    let (rows, _) = h.admin().audit_verify().await.unwrap();
    keel_testbed::report!("load: audit chain verifies over {rows} rows");
}
