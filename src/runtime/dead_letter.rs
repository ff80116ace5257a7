//! The dead-letter copy of a rejected message: the original bytes (capped),
//! the reason and the source's coordinates as `dlq.*` headers.

use super::*;
use crate::dead_letter as dlq;

/// The dead-letter copy of a rejected message: original key and bytes, and
/// headers saying why and where it came from.
pub(super) fn dead_letter(
    message: &BorrowedMessage<'_>,
    rejection: &Rejection,
    options: &RuntimeOptions,
    now: i64,
) -> Record {
    let payload = message.payload().unwrap_or_default();
    let key = message.key();
    let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
    let mut headers_dropped = 0usize;
    if let Some(original) = message.headers() {
        let mut budget = DLQ_MAX_HEADER_BYTES;
        for h in original.iter() {
            if h.key.starts_with(dlq::PREFIX) {
                continue;
            }
            let value = h.value.unwrap_or_default();
            match budget.checked_sub(h.key.len() + value.len()) {
                Some(left) => {
                    budget = left;
                    kept.push((h.key.to_string(), value.to_vec()));
                }
                None => headers_dropped += 1,
            }
        }
    }
    let why = dlq::Headers {
        reason: rejection.reason.code().to_string(),
        detail: rejection.detail.clone(),
        source: dlq::Source {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
        },
        // Replay restores it, so event-time checks see the original.
        source_timestamp: message.timestamp().to_millis(),
        group: options.group.clone(),
        time: Rfc3339(now).to_string(),
        original_bytes: (payload.len() > DLQ_MAX_PAYLOAD_BYTES).then_some(payload.len()),
        original_key_bytes: key.filter(|k| k.len() > DLQ_MAX_KEY_BYTES).map(<[u8]>::len),
        headers_dropped,
        reference: false,
    };
    let mut headers = why.encode();
    headers.extend(kept);
    let key = key.map(|k| k[..k.len().min(DLQ_MAX_KEY_BYTES)].to_vec());
    Record {
        topic: options.dlq_topic.clone(),
        key,
        payload: payload[..payload.len().min(DLQ_MAX_PAYLOAD_BYTES)].to_vec(),
        headers,
    }
}

/// A message's headers as (key, value) pairs.
pub(super) fn header_pairs<'a>(message: &'a BorrowedMessage<'_>) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
    message
        .headers()
        .into_iter()
        .flat_map(|h| h.iter())
        .map(|h| (h.key, h.value.unwrap_or_default()))
}
