//! The dead-letter contract: the `dlq.*` headers a dead-letter copy carries,
//! named once and typed ([`Headers`], [`ReplayMarker`], each with `encode`
//! and `decode`). The consumer runtime writes them on every copy it
//! publishes to the dead-letter topic; `activity-tracker dlq` reads them to
//! inspect and replay, and writes the `dlq.replayed.*` markers. Values are UTF-8 text
//! (numbers in decimal, times in RFC 3339).

/// Every header of the contract starts with this; a copy keeps the
/// original message's other headers as they were.
pub const PREFIX: &str = "dlq.";

/// The rejection reason's code (`malformed_json`, `too_large`, ...).
pub const REASON: &str = "dlq.reason";
/// The rejection's detail, for people.
pub const DETAIL: &str = "dlq.detail";
/// Where the rejected message was: topic, partition, offset.
pub const SOURCE_TOPIC: &str = "dlq.source.topic";
pub const SOURCE_PARTITION: &str = "dlq.source.partition";
pub const SOURCE_OFFSET: &str = "dlq.source.offset";
/// The rejected message's Kafka timestamp (ms); replay restores it.
pub const SOURCE_TIMESTAMP: &str = "dlq.source.timestamp";
/// The consumer group that rejected it.
pub const CONSUMER_GROUP: &str = "dlq.consumer.group";
/// When it was dead-lettered.
pub const TIME: &str = "dlq.time";
/// `true` when the payload was cut; [`ORIGINAL_BYTES`] says how long it was.
pub const TRUNCATED: &str = "dlq.truncated";
pub const ORIGINAL_BYTES: &str = "dlq.original.bytes";
/// The original key's length, when the copy's key was cut.
pub const KEY_TRUNCATED: &str = "dlq.key.truncated";
/// How many original headers did not fit the copy.
pub const HEADERS_DROPPED: &str = "dlq.headers.dropped";
/// `true` on a copy without payload (the brokers refused the full copy):
/// replay reads the original from the source topic.
pub const REFERENCE: &str = "dlq.reference";

/// On a replayed event: the dead letter it came from.
pub const REPLAYED_FROM: &str = "dlq.replayed.from";
/// On a replay marker in the dead-letter topic: which dead letter was
/// replayed, to which topic, when.
pub const REPLAYED_SOURCE_TOPIC: &str = "dlq.replayed.source.topic";
pub const REPLAYED_SOURCE_PARTITION: &str = "dlq.replayed.source.partition";
pub const REPLAYED_SOURCE_OFFSET: &str = "dlq.replayed.source.offset";
pub const REPLAYED_TO: &str = "dlq.replayed.to";
pub const REPLAYED_TIME: &str = "dlq.replayed.time";

/// Where a message was: the identity of a dead letter and of its copies.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// The `dlq.*` headers of a dead-letter copy, typed: what the runtime
/// writes and what `activity-tracker dlq` reads, through [`Headers::encode`]
/// and [`Headers::decode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Headers {
    /// The rejection reason's code.
    pub reason: String,
    pub detail: String,
    pub source: Source,
    /// The rejected message's Kafka timestamp (ms).
    pub source_timestamp: Option<i64>,
    /// The consumer group that rejected it.
    pub group: String,
    /// When it was dead-lettered (RFC 3339).
    pub time: String,
    /// The payload's length when the copy's payload was cut.
    pub original_bytes: Option<usize>,
    /// The key's length when the copy's key was cut.
    pub original_key_bytes: Option<usize>,
    /// Original headers that did not fit the copy.
    pub headers_dropped: usize,
    /// A copy without payload: replay reads the original at `source`.
    pub reference: bool,
}

/// Header (name, value) pairs as a Kafka record carries them.
pub type HeaderList = Vec<(String, Vec<u8>)>;

fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

fn number<T: std::str::FromStr>(value: &[u8]) -> Option<T> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

impl Headers {
    /// The `dlq.*` headers, in a fixed order.
    pub fn encode(&self) -> HeaderList {
        let mut out: HeaderList = vec![
            (REASON.into(), self.reason.clone().into_bytes()),
            (DETAIL.into(), self.detail.clone().into_bytes()),
            (SOURCE_TOPIC.into(), self.source.topic.clone().into_bytes()),
            (SOURCE_PARTITION.into(), self.source.partition.to_string().into_bytes()),
            (SOURCE_OFFSET.into(), self.source.offset.to_string().into_bytes()),
            (CONSUMER_GROUP.into(), self.group.clone().into_bytes()),
            (TIME.into(), self.time.clone().into_bytes()),
        ];
        if let Some(t) = self.source_timestamp {
            out.push((SOURCE_TIMESTAMP.into(), t.to_string().into_bytes()));
        }
        if let Some(n) = self.original_bytes {
            out.push((TRUNCATED.into(), b"true".to_vec()));
            out.push((ORIGINAL_BYTES.into(), n.to_string().into_bytes()));
        }
        if let Some(n) = self.original_key_bytes {
            out.push((KEY_TRUNCATED.into(), n.to_string().into_bytes()));
        }
        if self.headers_dropped > 0 {
            out.push((HEADERS_DROPPED.into(), self.headers_dropped.to_string().into_bytes()));
        }
        if self.reference {
            out.push((REFERENCE.into(), b"true".to_vec()));
        }
        out
    }

    /// The dead-letter headers among `headers`; `None` unless the reason and
    /// the whole source are there (a replay marker, or a record another tool
    /// wrote). Headers outside the contract are ignored.
    pub fn decode<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Option<Headers> {
        let (mut reason, mut topic, mut partition, mut offset) = (None, None, None, None);
        let mut h = Headers {
            reason: String::new(),
            detail: String::new(),
            source: Source {
                topic: String::new(),
                partition: 0,
                offset: 0,
            },
            source_timestamp: None,
            group: String::new(),
            time: String::new(),
            original_bytes: None,
            original_key_bytes: None,
            headers_dropped: 0,
            reference: false,
        };
        for (name, value) in headers {
            match name {
                REASON => reason = Some(text(value)),
                DETAIL => h.detail = text(value),
                SOURCE_TOPIC => topic = Some(text(value)),
                SOURCE_PARTITION => partition = number(value),
                SOURCE_OFFSET => offset = number(value),
                SOURCE_TIMESTAMP => h.source_timestamp = number(value),
                CONSUMER_GROUP => h.group = text(value),
                TIME => h.time = text(value),
                ORIGINAL_BYTES => h.original_bytes = number(value),
                KEY_TRUNCATED => h.original_key_bytes = number(value),
                HEADERS_DROPPED => h.headers_dropped = number(value).unwrap_or(0),
                REFERENCE => h.reference = value == b"true",
                _ => {}
            }
        }
        h.reason = reason?;
        h.source = Source {
            topic: topic?,
            partition: partition?,
            offset: offset?,
        };
        Some(h)
    }
}

/// The headers of a replay marker: the dead letter at `source` was sent
/// back to `to` at `time`. Written to the dead-letter topic after the
/// replayed event is acknowledged, so a later replay skips it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayMarker {
    pub source: Source,
    pub to: String,
    /// RFC 3339.
    pub time: String,
}

impl ReplayMarker {
    pub fn encode(&self) -> HeaderList {
        vec![
            (REPLAYED_SOURCE_TOPIC.into(), self.source.topic.clone().into_bytes()),
            (
                REPLAYED_SOURCE_PARTITION.into(),
                self.source.partition.to_string().into_bytes(),
            ),
            (
                REPLAYED_SOURCE_OFFSET.into(),
                self.source.offset.to_string().into_bytes(),
            ),
            (REPLAYED_TO.into(), self.to.clone().into_bytes()),
            (REPLAYED_TIME.into(), self.time.clone().into_bytes()),
        ]
    }

    /// The marker among `headers`, when the whole replayed source is there.
    pub fn decode<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Option<ReplayMarker> {
        let (mut topic, mut partition, mut offset) = (None, None, None);
        let (mut to, mut time) = (String::new(), String::new());
        for (name, value) in headers {
            match name {
                REPLAYED_SOURCE_TOPIC => topic = Some(text(value)),
                REPLAYED_SOURCE_PARTITION => partition = number(value),
                REPLAYED_SOURCE_OFFSET => offset = number(value),
                REPLAYED_TO => to = text(value),
                REPLAYED_TIME => time = text(value),
                _ => {}
            }
        }
        Some(ReplayMarker {
            source: Source {
                topic: topic?,
                partition: partition?,
                offset: offset?,
            },
            to,
            time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &HeaderList) -> impl Iterator<Item = (&str, &[u8])> {
        list.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    fn letter(n: u64) -> Headers {
        Headers {
            reason: ["malformed_json", "too_large", "missing_key"][n as usize % 3].into(),
            detail: format!("detail {n}: ünïcode, commas, = signs"),
            source: Source {
                topic: "user-activities".into(),
                partition: (n % 7) as i32,
                offset: (n * 7919) as i64,
            },
            source_timestamp: n.is_multiple_of(2).then_some(1_700_000_000_000 + n as i64),
            group: "fraud-detectors".into(),
            time: "2026-12-07T05:00:00.000Z".into(),
            original_bytes: n.is_multiple_of(3).then_some(70_000 + n as usize),
            original_key_bytes: n.is_multiple_of(5).then_some(300),
            headers_dropped: (n % 4) as usize,
            reference: n.is_multiple_of(6),
        }
    }

    #[test]
    fn headers_survive_encoding_with_other_headers_around_them() {
        for n in 0..60 {
            let h = letter(n);
            let mut list = vec![("traceparent".to_string(), b"00-abc-01".to_vec())];
            list.extend(h.encode());
            list.push(("x-app".to_string(), b"shop".to_vec()));
            assert!(
                list.iter()
                    .skip(1)
                    .take(list.len() - 2)
                    .all(|(k, _)| k.starts_with(PREFIX))
            );
            assert_eq!(Headers::decode(pairs(&list)), Some(h), "case {n}");
            assert_eq!(ReplayMarker::decode(pairs(&list)), None, "a dead letter is no marker");
        }
    }

    #[test]
    fn a_record_without_reason_or_whole_source_is_no_dead_letter() {
        let full = letter(1).encode();
        for missing in [REASON, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET] {
            let list: HeaderList = full.iter().filter(|(k, _)| k != missing).cloned().collect();
            assert_eq!(Headers::decode(pairs(&list)), None, "without {missing}");
        }
        let bad_offset: HeaderList = full
            .iter()
            .map(|(k, v)| {
                if k == SOURCE_OFFSET {
                    (k.clone(), b"x".to_vec())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect();
        assert_eq!(Headers::decode(pairs(&bad_offset)), None);
    }

    #[test]
    fn replay_markers_round_trip() {
        let marker = ReplayMarker {
            source: letter(3).source,
            to: "user-activities".into(),
            time: "2026-12-07T05:01:00.000Z".into(),
        };
        let list = marker.encode();
        assert_eq!(ReplayMarker::decode(pairs(&list)), Some(marker));
        assert_eq!(Headers::decode(pairs(&list)), None, "a marker is no dead letter");
    }
}
