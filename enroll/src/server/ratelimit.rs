//! Per-address request rate limit (a token bucket per address) and the count
//! of open connections per address.
//!
//! Both tables sit behind a `std::sync::Mutex` that is held for one hash-map
//! lookup and never across an `.await`, which is the case tokio recommends a
//! std mutex for: nothing in the critical section waits on I/O. The
//! connection table only holds addresses with open connections; the bucket
//! table is bounded by `max-tracked-addresses`, and addresses whose bucket has
//! refilled (idle ones) are evicted first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::limits::Limits;

/// The key an address is limited under: IPv4 addresses (also IPv4-mapped
/// IPv6) as they are, IPv6 addresses by their /64, the smallest block a
/// single site is usually given.
pub fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Buckets {
    map: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

/// The per-address token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max: usize,
    buckets: Mutex<Buckets>,
}

/// Sweeps of a full table happen at most this often, so that a flood of new
/// addresses cannot make every request scan the table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl RateLimiter {
    /// A limiter with the configured rate, burst and table size.
    pub fn new(l: &Limits) -> Self {
        RateLimiter {
            rate: l.requests_per_second,
            burst: f64::from(l.burst),
            max: l.max_tracked_addresses,
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    /// Takes one token for `ip`. `Err(wait)`: refused, retry after `wait`.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let k = key(ip);
        let Ok(mut b) = self.buckets.lock() else {
            // A panic elsewhere poisoned the table: refuse rather than let
            // everyone through unlimited.
            return Err(Duration::from_secs(1));
        };
        if !b.map.contains_key(&k) && b.map.len() >= self.max {
            let due = b
                .last_sweep
                .is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY);
            if due {
                b.last_sweep = Some(now);
                let (rate, burst) = (self.rate, self.burst);
                b.map.retain(|_, v| !refilled(v, now, rate, burst));
            }
            if b.map.len() >= self.max {
                tracing::warn!(
                    "rate limiter: {} active addresses (max-tracked-addresses); refusing new ones",
                    b.map.len()
                );
                return Err(SWEEP_EVERY);
            }
        }
        let bucket = b.map.entry(k).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }

    /// Forgets addresses whose bucket has refilled (they would start full
    /// anyway). Returns how many remain.
    pub fn sweep(&self, now: Instant) -> usize {
        let Ok(mut b) = self.buckets.lock() else {
            return 0;
        };
        let (rate, burst) = (self.rate, self.burst);
        b.map.retain(|_, v| !refilled(v, now, rate, burst));
        b.last_sweep = Some(now);
        b.map.len()
    }

    /// Addresses remembered now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map(|b| b.map.len()).unwrap_or(0)
    }
}

fn refilled(b: &Bucket, now: Instant, rate: f64, burst: f64) -> bool {
    b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate >= burst
}

/// Open connections per address.
#[derive(Debug)]
pub struct ConnLimiter {
    max: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One open connection; dropping it (when the connection closes) frees its slot.
#[derive(Debug)]
pub struct ConnSlot {
    limiter: Arc<ConnLimiter>,
    key: IpAddr,
}

impl ConnLimiter {
    /// At most `max` open connections per address.
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(ConnLimiter {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection from `ip`, or `None` when the address
    /// already holds the maximum.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        let k = key(ip);
        let mut open = self.open.lock().ok()?;
        let n = open.entry(k).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            limiter: self.clone(),
            key: k,
        })
    }

    /// Open connections of `ip`'s key.
    pub fn open(&self, ip: IpAddr) -> u32 {
        self.open
            .lock()
            .ok()
            .and_then(|o| o.get(&key(ip)).copied())
            .unwrap_or(0)
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.limiter.open.lock() {
            if let Some(n) = open.get_mut(&self.key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(&self.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: f64, burst: u32, max: usize) -> Limits {
        Limits {
            requests_per_second: rate,
            burst,
            max_tracked_addresses: max,
            ..Default::default()
        }
    }

    #[test]
    fn bucket_refuses_past_burst_and_refills() {
        let l = RateLimiter::new(&limits(2.0, 3, 10));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.check(ip, t).is_ok());
        }
        let wait = l.check(ip, t).expect_err("burst spent");
        assert_eq!(wait, Duration::from_millis(500));
        // Another address has its own bucket.
        assert!(l.check("192.0.2.2".parse().expect("ip"), t).is_ok());
        // Half a second later one token is back, and only one.
        let t2 = t + Duration::from_millis(500);
        assert!(l.check(ip, t2).is_ok());
        assert!(l.check(ip, t2).is_err());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        assert_eq!(key(a), key(b));
        let m: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(key(m), "192.0.2.7".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn table_is_bounded_and_evicts_idle_addresses() {
        let l = RateLimiter::new(&limits(1.0, 2, 4));
        let t = Instant::now();
        for i in 0..4u8 {
            assert!(l.check(IpAddr::from([10, 0, 0, i]), t).is_ok());
        }
        // Full of active addresses: a fifth is refused, the table stays at 4.
        assert!(l.check(IpAddr::from([10, 0, 0, 9]), t).is_err());
        assert_eq!(l.tracked(), 4);
        // Once their buckets refilled they are evicted for the newcomer.
        let later = t + Duration::from_secs(2);
        assert!(l.check(IpAddr::from([10, 0, 0, 9]), later).is_ok());
        assert_eq!(l.tracked(), 1);
        assert_eq!(l.sweep(later + Duration::from_secs(5)), 0);
    }

    #[test]
    fn connection_slots_are_counted_and_freed() {
        let c = ConnLimiter::new(2);
        let ip: IpAddr = "198.51.100.4".parse().expect("ip");
        let a = c.acquire(ip).expect("first");
        let _b = c.acquire(ip).expect("second");
        assert!(c.acquire(ip).is_none(), "third is over the limit");
        assert!(c.acquire("198.51.100.5".parse().expect("ip")).is_some());
        drop(a);
        assert_eq!(c.open(ip), 1);
        assert!(c.acquire(ip).is_some());
    }
}
