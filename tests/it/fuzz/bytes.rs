//! Campaign 1: arbitrary byte strings and JSON token soup into the decoder
//! and the key check.

use std::sync::atomic::Ordering;

use proptest::prelude::*;

use super::{LARGEST_DECODE_PEAK, decode_checked, run_for};

/// JSON fragments that reach deep into the parser when glued at random.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "\\uDFFF",
    "\\n",
    "null",
    "true",
    "false",
    "0",
    "-0",
    "1e999",
    "-1e999",
    "1.7976931348623157e308",
    "18446744073709551616",
    "0.1",
    "\"event_id\"",
    "\"user_id\"",
    "\"timestamp\"",
    "\"event_type\"",
    "\"purchase\"",
    "\"properties\"",
    "\"price\"",
    "\"cart_value\"",
    "\"location\"",
    "\"device\"",
    "\"2024-01-15T10:30:45.123Z\"",
    "\"9999-12-31T23:59:59Z\"",
    "\"2024-02-30T25:61:61+99:99\"",
    "\u{feff}",
    "é",
    "\u{10ffff}",
    " ",
    "\t",
];

fn bytes_input() -> impl Strategy<Value = (Vec<u8>, Option<Vec<u8>>)> {
    let payload = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        prop::collection::vec(prop::sample::select(TOKENS), 0..200).prop_map(|t| t.concat().into_bytes()),
        (
            1usize..20_000,
            prop::sample::select(&["[", "{\"a\":", "[{\"event_id\":"][..])
        )
            .prop_map(|(n, open)| open.repeat(n).into_bytes()),
        (60_000usize..70_000).prop_map(|n| vec![b' '; n]),
    ];
    let key = prop::option::of(prop::collection::vec(any::<u8>(), 0..64));
    (payload, key)
}

#[test]
fn fuzz_decoder_on_arbitrary_bytes() {
    let tried = run_for(1, bytes_input(), |(payload, key)| {
        decode_checked(&payload, key.as_deref()).map(|_| ())
    });
    println!(
        "fuzz: bytes: {tried} inputs into the decoder, 0 panics, largest decode footprint {} bytes",
        LARGEST_DECODE_PEAK.load(Ordering::Relaxed)
    );
    assert!(tried > 0);
}
