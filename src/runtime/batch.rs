//! A batch of polled messages, decoded on more than one core.
//!
//! Decoding is most of a consumer's pure work (the profile in BENCHMARKS.md:
//! `serde_json` is about two thirds of the analytics consumer thread) and,
//! unlike processing, it needs no state: each message decodes on its own.
//! So the loop takes what librdkafka already holds (up to [`MAX_BATCH`]
//! messages, never waiting for more than the first), decodes a large batch
//! in slices on scoped threads, and then processes the decoded events one by
//! one, in poll order, on the loop's thread. Per-partition order, the state
//! machine and every guarantee of the runtime are the single thread's;
//! only the decoding is parallel.
//!
//! A batch spans several polls, and a poll may run a rebalance callback. So
//! each message carries the epoch of its partition's slot when it was
//! polled; a message whose partition has since been revoked (and perhaps
//! assigned again, with a new epoch and a new starting offset) is left
//! unprocessed — its offset was never processed, so it is not committed, and
//! whoever owns the partition next fetches it again.

use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::message::BorrowedMessage;

use crate::event::{DecodeLimits, Event, Rejection, check_key, decode};

/// Messages handled per loop iteration, at most.
pub(super) const MAX_BATCH: usize = 2048;
/// Below this many messages a batch decodes on the loop's thread alone: a
/// scoped thread costs tens of microseconds to start, about what decoding
/// a hundred events costs.
const PARALLEL_FROM: usize = 384;
/// One message in this many (by offset) has its decoding and processing
/// timed for the processing-time histogram.
const TIMING_SAMPLE: i64 = 8;

/// A message as the loop polled it.
pub(super) struct Polled<'c> {
    pub message: BorrowedMessage<'c>,
    /// Its partition's slot epoch at the poll (0: not owned then).
    pub epoch: u64,
}

/// A decoded message: the event or why it was refused, and for sampled
/// messages how long decoding took.
pub(super) struct Decoded<'m> {
    pub result: Result<Event<'m>, Rejection>,
    pub took: Option<Duration>,
}

/// Whether `offset` is one of the sampled for timing.
fn timed(offset: i64) -> bool {
    offset % TIMING_SAMPLE == 0
}

/// Decodes one message: the payload against the limits, the key against the
/// user; `now_ms` is the reference when the message has no timestamp.
fn decode_message<'m>(message: &'m BorrowedMessage<'_>, limits: &DecodeLimits, now_ms: i64) -> Decoded<'m> {
    let started = timed(message.offset()).then(Instant::now);
    let reference_ms = message.timestamp().to_millis().unwrap_or(now_ms);
    let result = decode(message.payload().unwrap_or_default(), reference_ms, limits)
        .and_then(|event| check_key(message.key(), &event).map(|()| event));
    Decoded {
        result,
        took: started.map(|s| s.elapsed()),
    }
}

/// Decodes `batch` in order, on `threads` cores at most when it is large.
pub(super) fn decode_batch<'m>(
    batch: &'m [Polled<'_>],
    limits: &DecodeLimits,
    now_ms: i64,
    threads: usize,
) -> Vec<Decoded<'m>> {
    map_in_order(batch, threads, |p| decode_message(&p.message, limits, now_ms))
}

/// `items.iter().map(f).collect()`, in slices on up to `threads` threads
/// (this one included) when there are at least [`PARALLEL_FROM`] items.
fn map_in_order<'a, T: Sync, R: Send>(items: &'a [T], threads: usize, f: impl Fn(&'a T) -> R + Sync) -> Vec<R> {
    let slices = threads.min(items.len() / (PARALLEL_FROM / 2)).max(1);
    if slices == 1 || items.len() < PARALLEL_FROM {
        return items.iter().map(f).collect();
    }
    let per_slice = items.len().div_ceil(slices);
    let f = &f;
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(per_slice);
        let first = chunks.next().unwrap_or_default();
        let helpers: Vec<_> = chunks
            .map(|chunk| scope.spawn(move || chunk.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out: Vec<R> = Vec::with_capacity(items.len());
        out.extend(first.iter().map(f));
        for helper in helpers {
            // A panic while decoding is a bug like any other: propagate it.
            out.extend(helper.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        out
    })
}

/// The cores a batch may decode on: this machine's (or cgroup's) parallelism.
pub(super) fn decode_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_maps_in_order_on_any_number_of_threads() {
        for len in [0, 1, PARALLEL_FROM - 1, PARALLEL_FROM, 1000, MAX_BATCH] {
            let items: Vec<u32> = (0..len as u32).collect();
            let expected: Vec<u64> = items.iter().map(|&i| u64::from(i) * 3 + 1).collect();
            for threads in [1, 2, 3, 8] {
                let callers = std::sync::Mutex::new(std::collections::HashSet::new());
                let got = map_in_order(&items, threads, |&i| {
                    callers.lock().unwrap().insert(std::thread::current().id());
                    u64::from(i) * 3 + 1
                });
                assert_eq!(got, expected, "{len} items on {threads} threads");
                let used = callers.into_inner().unwrap().len();
                let wanted = if len >= PARALLEL_FROM {
                    threads.min(len / (PARALLEL_FROM / 2))
                } else {
                    1.min(len)
                };
                assert_eq!(used, wanted, "threads used for {len} items, {threads} allowed");
            }
        }
    }
}
