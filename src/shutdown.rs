//! Graceful shutdown, as one small type handed to every task.
//!
//! A [`Shutdown`] is triggered once (by SIGINT/SIGTERM, by a test, or by a
//! task that finished its work) and observed everywhere: blocking loops poll
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

/// Triggers `shutdown` on SIGINT or SIGTERM, and when a Kafka client meets
/// an error retrying cannot fix ([`crate::kafka::stop_on_fatal_error`]). A
/// second signal exits at once with status 130, for a user who really means
/// it.
///
/// `budget` is how long the command's own graceful stop may take (its
/// `SHUTDOWN_TIMEOUT`): every step of it is bounded, and a watchdog makes
/// that a promise — a process still running [`WATCHDOG_SLACK`] after the
/// budget exits with status 1, so a pod never outlives its grace period
/// because some network call did not return.
pub fn on_signals(shutdown: Shutdown, budget: Duration) {
    crate::kafka::stop_on_fatal_error(&shutdown);
    exit_if_stuck(&shutdown, budget + WATCHDOG_SLACK);
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
        let mut signals = 0;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            signals += 1;
            if signals == 1 {
                tracing::info!(
                    "stop requested: finishing in-flight work (consumers drain, commit and leave their group); signal again to exit at once"
                );
                shutdown.trigger();
            } else {
                eprintln!("second stop signal: exiting immediately");
                std::process::exit(130);
            }
        }
    });
}

/// How far past its shutdown budget a stopping process may run before the
/// watchdog ends it.
pub const WATCHDOG_SLACK: Duration = Duration::from_secs(2);

/// Exits the process (status 1) if it is still running `limit` after
/// `shutdown` was triggered.
fn exit_if_stuck(shutdown: &Shutdown, limit: Duration) {
    let shutdown = shutdown.clone();
    let spawned = std::thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(move || {
            while !shutdown.sleep(Duration::from_secs(3600)) {}
            std::thread::sleep(limit);
            eprintln!(
                "error: still stopping {limit:?} after the stop began; exiting now (anything not committed is re-processed by the next owner)"
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the shutdown watchdog");
    }
}

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
