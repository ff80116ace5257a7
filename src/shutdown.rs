//! Graceful shutdown, as one small type handed to every task.
//!
//! A [`Shutdown`] is triggered once (by the binary on SIGINT/SIGTERM, by a
//! test, or by a task that finished its work) and observed everywhere: blocking loops poll
//! [`Shutdown::is_triggered`] or sleep with [`Shutdown::sleep`], async tasks
//! await [`Shutdown::wait`]. Cloning shares the same signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    triggered: AtomicBool,
    lock: Mutex<()>,
    condvar: Condvar,
    notify: tokio::sync::Notify,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks everything holding a clone to stop. Idempotent.
    pub fn trigger(&self) {
        if !self.inner.triggered.swap(true, Ordering::SeqCst) {
            let _guard = self.inner.lock.lock();
            self.inner.condvar.notify_all();
            self.inner.notify.notify_waiters();
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration` or until triggered; returns true if triggered.
    pub fn sleep(&self, duration: Duration) -> bool {
        let guard = match self.inner.lock.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if self.is_triggered() {
            return true;
        }
        let _ = self
            .inner
            .condvar
            .wait_timeout_while(guard, duration, |_| !self.is_triggered());
        self.is_triggered()
    }

    /// Resolves once triggered.
    pub async fn wait(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }
}

/// How long a command may take to stop gracefully once asked: its
/// `SHUTDOWN_TIMEOUT`. Commands that do more before or after it add to this
/// (the collector its `COLLECT_SHUTDOWN_DELAY`, the local fleet
/// [`FLEET_STOP_EXTRA`]). The binary's watchdog ends a process still running
/// [`WATCHDOG_SLACK`] after its budget.
pub fn stop_budget(config: &crate::config::Config) -> Duration {
    config.consumer.shutdown_timeout
}

/// The local fleet stops after its replicas, each of which has
/// SHUTDOWN_TIMEOUT (and its own watchdog's slack) to stop.
pub const FLEET_STOP_EXTRA: Duration = Duration::from_secs(5);

/// How far past its stop budget a stopping process may run before the
/// watchdog ends it.
pub const WATCHDOG_SLACK: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn sleep_returns_early_when_triggered_from_another_thread() {
        let s = Shutdown::new();
        let t = s.clone();
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let triggered = t.sleep(Duration::from_secs(30));
            (triggered, start.elapsed())
        });
        s.trigger();
        let (triggered, elapsed) = handle.join().unwrap();
        assert!(triggered);
        assert!(elapsed < Duration::from_secs(30));
        assert!(s.sleep(Duration::from_secs(30)), "already triggered: no wait");
    }

    #[test]
    fn sleep_times_out_when_not_triggered() {
        let s = Shutdown::new();
        assert!(!s.sleep(Duration::from_millis(1)));
    }

    #[tokio::test]
    async fn wait_resolves_after_trigger() {
        let s = Shutdown::new();
        let t = s.clone();
        let waiter = tokio::spawn(async move { t.wait().await });
        s.trigger();
        waiter.await.unwrap();
    }
}
