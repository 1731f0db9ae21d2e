//! How long first boot waits before retrying a step that failed for a
//! transient reason: exponential, capped, with jitter.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with jitter.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based): `initial * 2^(attempt-1)`
    /// capped at `max`, then a random 50-100% of it so a fleet that lost its
    /// WAN together does not come back in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max);
        capped.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let b = Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        for (attempt, full) in [(1, 2), (2, 4), (3, 8), (6, 60), (40, 60)] {
            let d = b.delay(attempt);
            let full = Duration::from_secs(full);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }
}
