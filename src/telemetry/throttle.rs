//! Repetitive warnings without log floods: at most a few lines per window,
//! and the next line says how many were left out.

use std::time::{Duration, Instant};

/// Allows `per_window` lines in each `window`; counts the rest.
pub struct LogThrottle {
    per_window: u32,
    window: Duration,
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl LogThrottle {
    pub const fn new(per_window: u32, window: Duration) -> LogThrottle {
        LogThrottle {
            per_window,
            window,
            window_start: None,
            in_window: 0,
            suppressed: 0,
        }
    }

    /// Whether to log now: `Some(n)` with the number left out since the
    /// last line logged, or `None` to leave this one out.
    pub fn allow(&mut self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    /// [`LogThrottle::allow`] at a given instant.
    pub fn allow_at(&mut self, now: Instant) -> Option<u64> {
        if self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= self.window)
        {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window < self.per_window {
            self.in_window += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_per_window_then_the_count_of_what_was_left_out() {
        let mut t = LogThrottle::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.allow_at(t0), Some(0));
        assert_eq!(t.allow_at(t0 + Duration::from_millis(10)), Some(0));
        assert_eq!(t.allow_at(t0 + Duration::from_millis(20)), None);
        assert_eq!(t.allow_at(t0 + Duration::from_millis(999)), None);
        assert_eq!(
            t.allow_at(t0 + Duration::from_secs(1)),
            Some(2),
            "a new window says what was left out"
        );
        assert_eq!(t.allow_at(t0 + Duration::from_millis(1500)), Some(0));
    }
}
