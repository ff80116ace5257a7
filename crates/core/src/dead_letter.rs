//! The dead-letter contract: the `dlq.*` headers a dead-letter copy carries,
//! named once. The consumer runtime writes them on every copy it publishes
//! to the dead-letter topic; `activity-tracker dlq` reads them to inspect and
//! replay, and writes the `dlq.replayed.*` markers. Values are UTF-8 text
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
