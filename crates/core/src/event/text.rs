//! Helpers for the text events carry and produce: page paths, label
//! truncation, terminal-safe printing and the UUID form of generated ids.

use std::borrow::Cow;

/// The path of a page URL, for analytics: scheme, host, query and fragment
/// removed, so `https://shop.example.com/cart?x=1` and `/cart` are one page.
pub fn page_path(url: &str) -> &str {
    let without_scheme = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            match rest.find('/') {
                Some(j) => &rest[j..],
                None => "/",
            }
        }
        None => url,
    };
    let end = without_scheme.find(['?', '#']).unwrap_or(without_scheme.len());
    let path = &without_scheme[..end];
    if path.is_empty() { "/" } else { path }
}

/// The longest label kept from client text: page paths, product ids and
/// names, countries, cities and devices are cut to this many bytes (on a
/// character boundary) before they are counted, named in a metric or kept
/// as alert evidence, so an event's strings cannot grow any set of labels
/// by more than this each.
pub const MAX_LABEL_BYTES: usize = 128;

/// `s` safe to print on an operator's terminal: control characters (C0,
/// DEL, C1 — newlines and ANSI escapes among them) and the bidirectional
/// overrides that reorder what a terminal shows are written as `\u{..}`
/// escapes. Client-supplied text (user ids, pages, places, products,
/// devices) goes through this before the console sees it.
pub fn printable(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes 16 random bytes as a version 4 UUID (`xxxxxxxx-xxxx-4xxx-
/// [89ab]xxx-xxxxxxxxxxxx`) into `out`, replacing its contents: the form of
/// every `event_id` this project generates (the simulator's, the
/// collector's). The caller brings the randomness, so this stays pure.
pub fn write_uuid_v4(random: [u8; 16], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = random;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = [0u8; 36];
    let mut j = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text[j] = b'-';
            j += 1;
        }
        text[j] = HEX[usize::from(b >> 4)];
        text[j + 1] = HEX[usize::from(b & 0xf)];
        j += 2;
    }
    out.clear();
    // Only ASCII hex digits and dashes were written.
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}
