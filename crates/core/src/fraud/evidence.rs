//! The evidence an alert carries: one variant per rule, with the figures and
//! names that made it fire, serialised as the JSON object under `evidence`.

use serde::Serialize;

/// The observations behind one alert, one variant per rule.
///
/// Serialised untagged, so each variant is just its JSON object (the rule
/// is beside it in the alert). Fields are declared in alphabetical order:
/// that is the order the alerts have always had their keys in (they were
/// built with `serde_json::json!`, whose objects sort their keys when
/// serde_json's `preserve_order` feature is off, as it is here), so the
/// alerts' bytes are the same.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Evidence {
    HighVelocity {
        threshold: u32,
        transactional_events: u32,
        window_seconds: u32,
    },
    MultipleIps {
        distinct_ips: u32,
        /// As `IP_PRIVACY` renders them.
        ips: Vec<String>,
        threshold: u32,
        window_minutes: u32,
    },
    RapidLocationChange {
        from: Place,
        /// Rounded to hundredths.
        minutes_between: f64,
        threshold_minutes: f64,
        to: Place,
    },
    HighValuePurchase {
        amount: f64,
        threshold: f64,
    },
    PurchaseWithoutActivity {
        amount: f64,
        prior_transactional_events: u32,
        window_minutes: u32,
    },
    RapidPurchases {
        purchases: u32,
        threshold: u32,
        window_minutes: u32,
    },
}

/// A place in RAPID_LOCATION_CHANGE evidence; `null` where unknown.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Place {
    pub city: Option<String>,
    pub country: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(country: Option<&str>, city: Option<&str>) -> Place {
        Place {
            city: city.map(str::to_string),
            country: country.map(str::to_string),
        }
    }

    /// The bytes each rule's evidence had when it was built with
    /// `serde_json::json!` (these strings are copied from alerts the
    /// detector wrote then): same keys, same order, same numbers.
    #[test]
    fn each_variant_serialises_as_the_alerts_always_had_it() {
        let cases = [
            (
                Evidence::HighVelocity {
                    threshold: 3,
                    transactional_events: 3,
                    window_seconds: 60,
                },
                r#"{"threshold":3,"transactional_events":3,"window_seconds":60}"#,
            ),
            (
                Evidence::MultipleIps {
                    distinct_ips: 3,
                    ips: vec!["3.3.3.3".into(), "2.2.2.2".into(), "2001:db8::/64".into()],
                    threshold: 3,
                    window_minutes: 60,
                },
                r#"{"distinct_ips":3,"ips":["3.3.3.3","2.2.2.2","2001:db8::/64"],"threshold":3,"window_minutes":60}"#,
            ),
            (
                Evidence::RapidLocationChange {
                    from: place(Some("US"), Some("New York")),
                    minutes_between: 1.56,
                    threshold_minutes: 10.0,
                    to: place(Some("RU"), Some("Moscow")),
                },
                r#"{"from":{"city":"New York","country":"US"},"minutes_between":1.56,"threshold_minutes":10.0,"to":{"city":"Moscow","country":"RU"}}"#,
            ),
            (
                Evidence::RapidLocationChange {
                    from: place(Some("GB"), Some("")),
                    minutes_between: 3.66,
                    threshold_minutes: 10.0,
                    to: place(None, Some("Paris")),
                },
                r#"{"from":{"city":"","country":"GB"},"minutes_between":3.66,"threshold_minutes":10.0,"to":{"city":"Paris","country":null}}"#,
            ),
            (
                Evidence::HighValuePurchase {
                    amount: 500.0,
                    threshold: 500.0,
                },
                r#"{"amount":500.0,"threshold":500.0}"#,
            ),
            (
                Evidence::PurchaseWithoutActivity {
                    amount: 500.0,
                    prior_transactional_events: 0,
                    window_minutes: 60,
                },
                r#"{"amount":500.0,"prior_transactional_events":0,"window_minutes":60}"#,
            ),
            (
                Evidence::RapidPurchases {
                    purchases: 3,
                    threshold: 3,
                    window_minutes: 5,
                },
                r#"{"purchases":3,"threshold":3,"window_minutes":5}"#,
            ),
        ];
        for (evidence, expected) in cases {
            assert_eq!(serde_json::to_string(&evidence).unwrap(), expected);
        }
    }
}
