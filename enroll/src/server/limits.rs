//! `[limits]`: what one client may cost the service. Timeouts close
//! connections that dribble bytes (slowloris) or never finish a request; the
//! per-address limits keep one source from taking every connection or every
//! worker. Loopback is not exempt: a proxy on the same host would otherwise
//! lift every limit for everyone behind it.
//!
//! The defaults are generous for a fleet: a store's nodes usually share one
//! NAT address, and a store rebooting 100 nodes at once sends about 200
//! requests within seconds (start and finish per node).

use std::time::Duration;

use serde::Deserialize;

/// `[limits]` in `keel-enroll.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Limits {
    /// Seconds a client has to complete the TLS handshake (default 10).
    pub tls_handshake_timeout_secs: f64,
    /// Seconds a client has to send a request's complete header, counted
    /// from when the server starts reading it, including the wait for the
    /// next request on a kept-alive connection (default 10). A connection
    /// that dribbles its header (slowloris) is closed.
    pub header_read_timeout_secs: f64,
    /// Seconds from a request's header to its answer, reading the body
    /// included (default 60: a Ceph key issued on a slow cluster fits).
    /// Past it the request is answered `503` with the code `internal`.
    pub request_timeout_secs: f64,
    /// Open connections one address may hold (default 64); more are closed
    /// at once, before the TLS handshake. IPv6 addresses count per /64.
    pub max_connections_per_address: u32,
    /// Requests per second one address may send on average (default 20): the
    /// refill rate of its token bucket.
    pub requests_per_second: f64,
    /// Requests one address may send in a burst (default 200): the bucket's
    /// size. Beyond it requests are answered `429` with the code
    /// `rate-limited` and a `Retry-After` header.
    pub burst: u32,
    /// Addresses the rate limiter remembers (default 65536, about 3 MB).
    /// Addresses whose bucket has refilled are forgotten first; when the
    /// table is full of active addresses, new addresses are answered
    /// `rate-limited` until some refill.
    pub max_tracked_addresses: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tls_handshake_timeout_secs: 10.0,
            header_read_timeout_secs: 10.0,
            request_timeout_secs: 60.0,
            max_connections_per_address: 64,
            requests_per_second: 20.0,
            burst: 200,
            max_tracked_addresses: 65536,
        }
    }
}

/// A `[limits]` value that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("[limits] {key} = {value}: {why}")]
pub struct LimitsError {
    /// The key.
    pub key: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong and what to write instead.
    pub why: &'static str,
}

impl Limits {
    /// Checks that every value is usable.
    pub fn check(&self) -> Result<(), LimitsError> {
        let secs = [
            (
                "tls-handshake-timeout-secs",
                self.tls_handshake_timeout_secs,
            ),
            ("header-read-timeout-secs", self.header_read_timeout_secs),
            ("request-timeout-secs", self.request_timeout_secs),
            ("requests-per-second", self.requests_per_second),
        ];
        for (key, v) in secs {
            if !(v.is_finite() && v > 0.0 && v <= 1e9) {
                return Err(LimitsError {
                    key,
                    value: v.to_string(),
                    why: "must be a positive number (no limit is not offered; use a large value)",
                });
            }
        }
        let counts = [
            (
                "max-connections-per-address",
                self.max_connections_per_address as usize,
            ),
            ("burst", self.burst as usize),
            ("max-tracked-addresses", self.max_tracked_addresses),
        ];
        for (key, v) in counts {
            if v == 0 {
                return Err(LimitsError {
                    key,
                    value: "0".into(),
                    why: "must be at least 1",
                });
            }
        }
        Ok(())
    }

    /// The TLS handshake timeout.
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.tls_handshake_timeout_secs)
    }

    /// The header read timeout.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.header_read_timeout_secs)
    }

    /// The whole-request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_bad_values_are_named() {
        assert!(Limits::default().check().is_ok());
        let e = Limits {
            burst: 0,
            ..Default::default()
        }
        .check()
        .expect_err("burst 0");
        assert_eq!(e.key, "burst");
        let e = Limits {
            request_timeout_secs: -1.0,
            ..Default::default()
        }
        .check()
        .expect_err("negative timeout");
        assert!(e.to_string().contains("request-timeout-secs"), "{e}");
    }
}
