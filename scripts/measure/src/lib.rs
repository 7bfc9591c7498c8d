//! What the bench target and the examples share, here so that its tests
//! run with the workspace's. The measurements
//! themselves are the `measure` bench target (`benches/measure/`), run by
//! `scripts/bench`; a bench target needs a package, and a package needs a
//! library or a binary.

use std::time::Duration;

pub mod stats;

/// The timeout to give `epoll_wait` or `poll(2)` when `left` is what
/// remains of a wait: in whole milliseconds, rounded up, so that a wait with
/// 0.3 ms left sleeps rather than spinning through zero-timeout calls until
/// the time is up, and capped at what a `c_int` holds (about 24 days).
pub fn wait_ms(left: Duration) -> i32 {
    let ms = left.as_nanos().div_ceil(1_000_000);
    ms.min(i32::MAX as u128) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_rounded_up_to_the_next_millisecond() {
        assert_eq!(wait_ms(Duration::ZERO), 0);
        assert_eq!(wait_ms(Duration::from_nanos(1)), 1);
        assert_eq!(wait_ms(Duration::from_micros(300)), 1);
        assert_eq!(wait_ms(Duration::from_millis(2)), 2);
        assert_eq!(wait_ms(Duration::from_micros(2_001)), 3);
        assert_eq!(wait_ms(Duration::from_secs(u64::MAX)), i32::MAX);
    }
}
