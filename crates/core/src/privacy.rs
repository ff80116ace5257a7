//! IP addresses: a compact identity for the fraud state, and how an address
//! may be shown outside the process (`IP_PRIVACY`).
//!
//! The fraud detector compares full addresses in memory; only what leaves the
//! process — alert evidence, log lines, metric labels, collected events — is
//! passed through [`IpRenderer`]. With `truncate` an address keeps its
//! network (IPv4 /24, IPv6 /48); with `hash` it becomes a keyed HMAC-SHA256
//! token, stable for one key so analysts can still see "the same address"
//! without seeing the address.
//!
//! IPv6 identity is the /64 network: privacy extensions rotate the host half
//! of an IPv6 address many times a day, so counting full addresses would make
//! every phone look like a user with many IPs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A secret string whose `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How IP addresses leave the process (alerts, logs, metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpPrivacy {
    None,
    /// IPv4 to /24, IPv6 to /48.
    Truncate,
    /// HMAC-SHA256 with this key, hex, first 16 bytes.
    Hash(Secret),
}

const V4_TAG: u64 = 0xffff_ffff_0000_0000;

/// A 64-bit identity of an address: IPv4 exactly, IPv6 by its /64 network.
/// `None` for text that is not an IP address (such an event simply does not
/// take part in the MULTIPLE_IPS rule).
pub fn ip_key(text: &str) -> Option<u64> {
    match text.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(V4_TAG | u64::from(u32::from(v4))),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some(V4_TAG | u64::from(u32::from(v4))),
            None => {
                let network = (u128::from(v6) >> 64) as u64;
                // ffff:ffff::/32 is multicast, never a client; keep it apart
                // from the IPv4 tag anyway.
                Some(if network & V4_TAG == V4_TAG {
                    network ^ 1 << 32
                } else {
                    network
                })
            }
        },
    }
}

/// The address (or network) a key stands for.
pub fn ip_from_key(key: u64) -> IpAddr {
    if key & V4_TAG == V4_TAG {
        IpAddr::V4(Ipv4Addr::from((key & 0xffff_ffff) as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(u128::from(key) << 64))
    }
}

/// Renders addresses according to `IP_PRIVACY`. (`Debug` shows the mode,
/// never a hashing key.)
#[derive(Clone, Debug)]
pub struct IpRenderer {
    mode: IpPrivacy,
}

impl IpRenderer {
    pub fn new(mode: IpPrivacy) -> IpRenderer {
        IpRenderer { mode }
    }

    /// How an address from an event may appear outside the process.
    pub fn render_text(&self, text: &str) -> String {
        match text.trim().parse::<IpAddr>() {
            Ok(ip) => self.render(ip, false),
            Err(_) => match &self.mode {
                IpPrivacy::None => text.to_string(),
                _ => "invalid".to_string(),
            },
        }
    }

    /// How a key from the fraud state may appear outside the process.
    pub fn render_key(&self, key: u64) -> String {
        let ip = ip_from_key(key);
        self.render(ip, ip.is_ipv6())
    }

    fn render(&self, ip: IpAddr, is_v6_network: bool) -> String {
        match &self.mode {
            IpPrivacy::None if is_v6_network => format!("{ip}/64"),
            IpPrivacy::None => ip.to_string(),
            IpPrivacy::Truncate => match ip {
                IpAddr::V4(v4) => {
                    let [a, b, c, _] = v4.octets();
                    format!("{a}.{b}.{c}.0/24")
                }
                IpAddr::V6(v6) => {
                    let masked = u128::from(v6) & (!0u128 << 80);
                    format!("{}/48", Ipv6Addr::from(masked))
                }
            },
            IpPrivacy::Hash(key) => {
                // HMAC accepts keys of any length; config guarantees >= 16 bytes.
                let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose().as_bytes()) else {
                    return "ip-unavailable".to_string();
                };
                mac.update(ip.to_string().as_bytes());
                let digest = mac.finalize().into_bytes();
                let mut out = String::with_capacity(35);
                out.push_str("ip-");
                for b in &digest[..16] {
                    out.push_str(&format!("{b:02x}"));
                }
                out
            }
        }
    }

    /// The address the collector stores in an event: still an IP address,
    /// so downstream rules keep working, but reduced by `IP_PRIVACY`.
    /// `truncate` keeps the network (IPv4 /24, IPv6 /48) as its first
    /// address; `hash` maps each address to its own pseudonymous IPv6 /64 in
    /// the unique-local range fd00::/8 (keyed HMAC, not reversible without
    /// the key), so distinct addresses stay distinct for MULTIPLE_IPS.
    pub fn stored(&self, ip: IpAddr) -> IpAddr {
        match &self.mode {
            IpPrivacy::None => ip,
            IpPrivacy::Truncate => match ip {
                IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)),
                IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (!0u128 << 80))),
            },
            IpPrivacy::Hash(key) => {
                let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose().as_bytes()) else {
                    return IpAddr::V6(Ipv6Addr::UNSPECIFIED);
                };
                mac.update(ip.to_string().as_bytes());
                let digest = mac.finalize().into_bytes();
                let mut network = [0u8; 8];
                network.copy_from_slice(&digest[..8]);
                let network = (u64::from_be_bytes(network) >> 8) | 0xfd00_0000_0000_0000;
                IpAddr::V6(Ipv6Addr::from(u128::from(network) << 64))
            }
        }
    }

    /// Whether addresses leave the process unchanged.
    pub fn is_identity(&self) -> bool {
        matches!(self.mode, IpPrivacy::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_addresses_stay_addresses_and_distinct_ones_stay_distinct() {
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "203.0.113.9".parse().unwrap();
        let v6: IpAddr = "2001:db8:1234:5678::1".parse().unwrap();
        let none = IpRenderer::new(IpPrivacy::None);
        assert_eq!(none.stored(a), a);
        let truncate = IpRenderer::new(IpPrivacy::Truncate);
        assert_eq!(truncate.stored(a).to_string(), "203.0.113.0");
        assert_eq!(truncate.stored(b), truncate.stored(a));
        assert_eq!(truncate.stored(v6).to_string(), "2001:db8:1234::");
        let hash = IpRenderer::new(IpPrivacy::Hash(Secret::new("0123456789abcdef")));
        let (ha, hb) = (hash.stored(a), hash.stored(b));
        assert_ne!(ha, hb);
        assert_eq!(ha, hash.stored(a), "deterministic");
        assert!(ha.to_string().starts_with("fd"), "{ha}");
        assert_ne!(
            ip_key(&ha.to_string()),
            ip_key(&hb.to_string()),
            "distinct for MULTIPLE_IPS"
        );
        let other = IpRenderer::new(IpPrivacy::Hash(Secret::new("another key 0123")));
        assert_ne!(other.stored(a), ha, "keyed");
    }

    #[test]
    fn keys_identify_v4_exactly_and_v6_by_network() {
        let a = ip_key("192.168.1.100").unwrap();
        assert_eq!(ip_from_key(a).to_string(), "192.168.1.100");
        assert_ne!(a, ip_key("192.168.1.101").unwrap());
        assert_eq!(ip_key("::ffff:192.168.1.100"), Some(a));
        let p1 = ip_key("2001:db8:1:2:aaaa::1").unwrap();
        let p2 = ip_key("2001:db8:1:2:bbbb::7").unwrap();
        assert_eq!(p1, p2, "same /64");
        assert_ne!(p1, ip_key("2001:db8:1:3::1").unwrap());
        assert_eq!(ip_key("not an ip"), None);
        assert_eq!(ip_key(""), None);
    }

    #[test]
    fn rendering_follows_the_privacy_mode() {
        let plain = IpRenderer::new(IpPrivacy::None);
        assert_eq!(plain.render_text("10.1.2.3"), "10.1.2.3");
        assert_eq!(
            plain.render_key(ip_key("2001:db8:1:2::9").unwrap()),
            "2001:db8:1:2::/64"
        );

        let truncate = IpRenderer::new(IpPrivacy::Truncate);
        assert_eq!(truncate.render_text("10.1.2.3"), "10.1.2.0/24");
        assert_eq!(truncate.render_text("2001:db8:1:2::9"), "2001:db8:1::/48");
        assert_eq!(truncate.render_text("garbage"), "invalid");

        let hash = IpRenderer::new(IpPrivacy::Hash(Secret::new("a-key-of-16-bytes!")));
        let h1 = hash.render_text("10.1.2.3");
        assert!(h1.starts_with("ip-") && h1.len() == 35, "{h1}");
        assert_eq!(h1, hash.render_key(ip_key("10.1.2.3").unwrap()));
        assert_ne!(h1, hash.render_text("10.1.2.4"));
        assert!(!h1.contains("10.1.2"));
        let other_key = IpRenderer::new(IpPrivacy::Hash(Secret::new("another-key-16-bytes")));
        assert_ne!(h1, other_key.render_text("10.1.2.3"));
    }
}
