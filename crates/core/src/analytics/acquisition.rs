//! Where a session comes from: its source, medium and campaign, read from the
//! landing event's `referrer` and the `utm_*` parameters of its `page_url`,
//! and the channel they group into.
//!
//! - **Source**: `utm_source` when the landing URL has one; otherwise the
//!   registrable domain of the referrer (`https://www.google.com/search?q=x`
//!   → `google.com`, `m.facebook.com` → `facebook.com`, `news.bbc.co.uk` →
//!   `bbc.co.uk`); `direct` without a referrer, or when the referrer is the
//!   site itself (`SITE_DOMAINS`: a session that starts with an internal
//!   referrer came back from a tab the visitor kept open).
//! - **Medium**: `utm_medium`; without one, `organic` for a search engine,
//!   `social` for a social network, `referral` for another site, `(none)`
//!   for direct traffic.
//! - **Campaign**: `utm_campaign`, when present.
//! - **Channel**: the first row of this table that matches, as Google
//!   Analytics' default channel grouping does (simplified):
//!
//! | channel | when |
//! |---|---|
//! | `direct` | no referrer and no `utm_source` |
//! | `paid_search` | a paid medium (`cpc`, `ppc`, `paid`, `paidsearch`, …`cp…`) from a search engine |
//! | `paid_social` | a paid medium from a social network |
//! | `display` | medium `display`, `banner`, `cpm` or `interstitial` |
//! | `email` | medium `email` or `e-mail`, or a source with `mail` in it |
//! | `organic_search` | a search engine |
//! | `organic_social` | a social network, or medium `social` |
//! | `referral` | any other site |
//! | `other` | UTM parameters that match none of the above |

use crate::event::{MAX_LABEL_BYTES, truncate};

/// A session's acquisition, as its landing event tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acquisition {
    pub source: String,
    pub medium: String,
    pub campaign: Option<String>,
    pub channel: Channel,
}

/// The default channel grouping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    Direct,
    PaidSearch,
    PaidSocial,
    Display,
    Email,
    OrganicSearch,
    OrganicSocial,
    Referral,
    Other,
}

impl Channel {
    pub const ALL: [Channel; 9] = [
        Channel::Direct,
        Channel::PaidSearch,
        Channel::PaidSocial,
        Channel::Display,
        Channel::Email,
        Channel::OrganicSearch,
        Channel::OrganicSocial,
        Channel::Referral,
        Channel::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Direct => "direct",
            Channel::PaidSearch => "paid_search",
            Channel::PaidSocial => "paid_social",
            Channel::Display => "display",
            Channel::Email => "email",
            Channel::OrganicSearch => "organic_search",
            Channel::OrganicSocial => "organic_social",
            Channel::Referral => "referral",
            Channel::Other => "other",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The source of direct traffic.
pub const DIRECT: &str = "direct";

/// Search engines, by the first label of their registrable domain.
const SEARCH_ENGINES: &[&str] = &[
    "google",
    "bing",
    "yahoo",
    "duckduckgo",
    "baidu",
    "yandex",
    "ecosia",
    "ask",
    "naver",
    "seznam",
    "qwant",
];
/// Social networks, by registrable domain.
const SOCIAL: &[&str] = &[
    "facebook.com",
    "instagram.com",
    "twitter.com",
    "x.com",
    "t.co",
    "linkedin.com",
    "lnkd.in",
    "pinterest.com",
    "reddit.com",
    "tiktok.com",
    "youtube.com",
    "threads.net",
    "mastodon.social",
];
/// Second-level labels under which registrations happen (`bbc.co.uk`).
const SECOND_LEVEL: &[&str] = &["co", "com", "org", "net", "ac", "gov", "edu", "ne", "or"];

/// The registrable domain of `host`: its last two labels, or three under a
/// two-letter country code with a generic second level (`co.uk`, `com.au`).
pub fn registrable_domain(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').filter(|l| !l.is_empty()).collect();
    let keep = match labels.as_slice() {
        [.., second, top] if top.len() == 2 && SECOND_LEVEL.contains(second) && labels.len() >= 3 => 3,
        _ => 2,
    };
    labels[labels.len().saturating_sub(keep)..].join(".")
}

/// The host of an absolute URL (`scheme://host[:port]/…`), if any.
fn host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// The value of query parameter `name` in `url` (`+` and `%XX` decoded),
/// when present and not empty.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or("");
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v)).filter(|v| !v.trim().is_empty())
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A label from the wire: trimmed, lower-cased, cut to [`MAX_LABEL_BYTES`].
fn label(text: &str) -> String {
    truncate(text.trim(), MAX_LABEL_BYTES).to_lowercase()
}

fn is_search_engine(source: &str) -> bool {
    let first = source.split('.').next().unwrap_or(source);
    SEARCH_ENGINES.contains(&first)
}

fn is_social(source: &str) -> bool {
    SOCIAL.contains(&source) || SOCIAL.iter().any(|s| s.split('.').next() == Some(source))
}

fn is_paid(medium: &str) -> bool {
    matches!(
        medium,
        "cpc" | "ppc" | "paid" | "paidsearch" | "paid_search" | "paid_social" | "retargeting"
    ) || medium.starts_with("paid")
        || (medium.starts_with("cp") && medium.len() <= 4)
}

/// Groups a source and medium into a channel (the table above).
pub fn channel(source: &str, medium: &str, tagged: bool) -> Channel {
    if source == DIRECT && !tagged {
        return Channel::Direct;
    }
    let paid = is_paid(medium);
    if paid && is_search_engine(source) {
        Channel::PaidSearch
    } else if paid && is_social(source) {
        Channel::PaidSocial
    } else if matches!(medium, "display" | "banner" | "cpm" | "interstitial") {
        Channel::Display
    } else if matches!(medium, "email" | "e-mail" | "e_mail") || source.contains("mail") {
        Channel::Email
    } else if is_search_engine(source) {
        Channel::OrganicSearch
    } else if is_social(source) || medium == "social" {
        Channel::OrganicSocial
    } else if !tagged || medium == "referral" {
        Channel::Referral
    } else {
        Channel::Other
    }
}

/// Whether `host` is one of `site_domains` or under one of them.
fn is_internal(host: &str, site_domains: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    site_domains
        .iter()
        .any(|d| host == *d || host.strip_suffix(d.as_str()).is_some_and(|rest| rest.ends_with('.')))
}

/// The acquisition of a session whose landing event has `page_url` and
/// `referrer`.
pub fn acquisition(page_url: Option<&str>, referrer: Option<&str>, site_domains: &[String]) -> Acquisition {
    let utm = |name| page_url.and_then(|u| query_param(u, name)).map(|v| label(&v));
    let (utm_source, utm_medium, campaign) = (utm("utm_source"), utm("utm_medium"), utm("utm_campaign"));
    let referred = referrer
        .and_then(host)
        .filter(|h| !is_internal(h, site_domains))
        .map(registrable_domain)
        .filter(|d| !d.is_empty());
    let tagged = utm_source.is_some();
    let source = utm_source.or(referred).unwrap_or_else(|| DIRECT.to_string());
    let medium = utm_medium.unwrap_or_else(|| {
        if source == DIRECT {
            "(none)".into()
        } else if is_search_engine(&source) {
            "organic".into()
        } else if is_social(&source) {
            "social".into()
        } else {
            "referral".into()
        }
    });
    let channel = channel(&source, &medium, tagged);
    Acquisition {
        source,
        medium,
        campaign,
        channel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(url: &str, referrer: Option<&str>) -> (String, String, Option<String>, &'static str) {
        let a = acquisition(Some(url), referrer, &["shop.example.com".to_string()]);
        (a.source, a.medium, a.campaign, a.channel.as_str())
    }

    #[test]
    fn sources_are_registrable_domains() {
        assert_eq!(registrable_domain("www.google.com"), "google.com");
        assert_eq!(registrable_domain("m.facebook.com"), "facebook.com");
        assert_eq!(registrable_domain("news.bbc.co.uk"), "bbc.co.uk");
        assert_eq!(registrable_domain("www.google.com.au"), "google.com.au");
        assert_eq!(registrable_domain("localhost"), "localhost");
        assert_eq!(registrable_domain("T.CO."), "t.co");
    }

    #[test]
    fn the_channel_table() {
        let page = "https://shop.example.com/products/1";
        assert_eq!(of(page, None), ("direct".into(), "(none)".into(), None, "direct"));
        assert_eq!(
            of(page, Some("https://www.google.com/search?q=shoes")),
            ("google.com".into(), "organic".into(), None, "organic_search")
        );
        assert_eq!(
            of(page, Some("https://l.facebook.com/x")),
            ("facebook.com".into(), "social".into(), None, "organic_social")
        );
        assert_eq!(
            of(page, Some("https://blog.example.org/review")),
            ("example.org".into(), "referral".into(), None, "referral")
        );
        assert_eq!(
            of(page, Some("https://shop.example.com/cart")),
            ("direct".into(), "(none)".into(), None, "direct"),
            "the site's own pages are not a source"
        );
        let paid = "https://shop.example.com/?utm_source=google&utm_medium=cpc&utm_campaign=Winter%20Sale";
        assert_eq!(
            of(paid, Some("https://www.google.com/")),
            ("google".into(), "cpc".into(), Some("winter sale".into()), "paid_search")
        );
        let mail = "https://shop.example.com/?utm_source=newsletter&utm_medium=email&utm_campaign=weekly";
        assert_eq!(of(mail, None).3, "email");
        let social_ad = "https://shop.example.com/?utm_source=instagram&utm_medium=paid_social";
        assert_eq!(of(social_ad, None).3, "paid_social");
        let banner = "https://shop.example.com/?utm_source=adnet&utm_medium=display";
        assert_eq!(of(banner, None).3, "display");
        let odd = "https://shop.example.com/?utm_source=partner&utm_medium=podcast";
        assert_eq!(of(odd, None).3, "other");
    }

    #[test]
    fn query_parameters_are_decoded_and_bounded() {
        assert_eq!(
            query_param("/p?a=1&utm_source=a+b%21#frag", "utm_source"),
            Some("a b!".into())
        );
        assert_eq!(query_param("/p?utm_source=", "utm_source"), None);
        assert_eq!(query_param("/p?utm_source=%zz%4", "utm_source"), Some("%zz%4".into()));
        assert_eq!(query_param("/p", "utm_source"), None);
        let long = format!("/?utm_campaign={}", "x".repeat(10_000));
        let a = acquisition(Some(&long), None, &[]);
        assert!(a.campaign.unwrap().len() <= MAX_LABEL_BYTES);
    }
}
