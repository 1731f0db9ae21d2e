//! `GET /metrics` after real enrollments: the figures match what happened,
//! `promtool check metrics` accepts the text, and a real Prometheus scrapes
//! it over HTTPS and answers queries on it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use keel_attest::protocol::RejectCode;
use keel_testbed::{or_skip, promtool_check, Prometheus};

fn line_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_outcomes_and_prometheus_scrapes_them() {
    let h = harness(None).await;
    let c = client(&h);
    for id in ["m-1", "m-2"] {
        let n = Node::new(id);
        allow(&h, &n).await;
        admitted(n.enroll(&c).await.unwrap());
    }
    let stranger = Node::new("m-3");
    assert_eq!(code(stranger.start(&c).await), RejectCode::EkNotAllowed);

    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(h.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let text = http
        .get(format!("{}/metrics", h.base_url))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    let get = |s: &str| line_value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(
        get(r#"keel_enroll_requests_total{endpoint="finish",outcome="admitted",code=""}"#),
        2.0
    );
    assert_eq!(
        get(r#"keel_enroll_requests_total{endpoint="start",outcome="challenge",code=""}"#),
        2.0
    );
    assert_eq!(
        get(
            r#"keel_enroll_requests_total{endpoint="start",outcome="rejected",code="ek-not-allowed"}"#
        ),
        1.0
    );
    assert_eq!(
        get(r#"keel_enroll_request_duration_seconds_count{endpoint="start"}"#),
        3.0
    );
    assert_eq!(
        get(r#"keel_enroll_nodes{store="store-1",status="admitted",release="bench 1"}"#),
        2.0
    );
    assert_eq!(get("keel_enroll_pending_approvals"), 0.0);

    // The official linter of the text format.
    let Some(lint) = or_skip(promtool_check(&text)) else {
        return;
    };
    keel_testbed::report!("promtool check metrics: ok {}", lint.trim());

    // A real Prometheus scrapes the endpoint over HTTPS.
    let target = h.base_url.trim_start_matches("https://").to_string();
    let ca = h.ca_pem.clone();
    let Some(prom) = or_skip(
        tokio::task::spawn_blocking(move || Prometheus::scrape_https(&target, &ca))
            .await
            .unwrap(),
    ) else {
        return;
    };
    let query = format!(
        "{}/api/v1/query?query={}",
        prom.api_url(),
        "sum(keel_enroll_requests_total%7Boutcome%3D%22admitted%22%7D)"
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let value = loop {
        // Until it is ready Prometheus answers 503 with a plain-text body.
        let r = http.get(&query).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if let Some(x) = v["data"]["result"][0]["value"][1].as_str() {
            break x.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never ingested a scrape: HTTP {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    keel_testbed::report!("Prometheus scraped /metrics over HTTPS: admitted = {value}");
    assert_eq!(value, "2");
}
