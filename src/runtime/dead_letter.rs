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
    let truncated = payload.len() > DLQ_MAX_PAYLOAD_BYTES;
    let mut headers = vec![
        (dlq::REASON.to_string(), rejection.reason.code().as_bytes().to_vec()),
        (dlq::DETAIL.to_string(), rejection.detail.as_bytes().to_vec()),
        (dlq::SOURCE_TOPIC.to_string(), message.topic().as_bytes().to_vec()),
        (
            dlq::SOURCE_PARTITION.to_string(),
            message.partition().to_string().into_bytes(),
        ),
        (
            dlq::SOURCE_OFFSET.to_string(),
            message.offset().to_string().into_bytes(),
        ),
        (dlq::CONSUMER_GROUP.to_string(), options.group.as_bytes().to_vec()),
        (dlq::TIME.to_string(), Rfc3339(now).to_string().into_bytes()),
    ];
    if let Some(t) = message.timestamp().to_millis() {
        // Replay restores it, so event-time checks see the original.
        headers.push((dlq::SOURCE_TIMESTAMP.to_string(), t.to_string().into_bytes()));
    }
    if truncated {
        headers.push((dlq::TRUNCATED.to_string(), b"true".to_vec()));
        headers.push((dlq::ORIGINAL_BYTES.to_string(), payload.len().to_string().into_bytes()));
    }
    let key = message.key().map(|k| {
        if k.len() > DLQ_MAX_KEY_BYTES {
            headers.push((dlq::KEY_TRUNCATED.to_string(), k.len().to_string().into_bytes()));
        }
        k[..k.len().min(DLQ_MAX_KEY_BYTES)].to_vec()
    });
    if let Some(original) = message.headers() {
        let mut budget = DLQ_MAX_HEADER_BYTES;
        let mut dropped = 0usize;
        for h in original.iter() {
            if h.key.starts_with(dlq::PREFIX) {
                continue;
            }
            let value = h.value.unwrap_or_default();
            match budget.checked_sub(h.key.len() + value.len()) {
                Some(left) => {
                    budget = left;
                    headers.push((h.key.to_string(), value.to_vec()));
                }
                None => dropped += 1,
            }
        }
        if dropped > 0 {
            headers.push((dlq::HEADERS_DROPPED.to_string(), dropped.to_string().into_bytes()));
        }
    }
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
