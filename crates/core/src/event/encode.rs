//! Writing an event back out in the seed's wire format (compact JSON), as the
//! producer does and as [`super::decode`] reads it.

use serde::ser::{SerializeMap, Serializer};

use super::{Device, Event, Location, Properties};
use crate::eventtime::Rfc3339;

impl Event<'_> {
    /// Serialises the event in the seed's wire format (compact JSON).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(640);
        self.write_json(&mut out);
        out
    }

    /// Appends the event's JSON to `out` (the producer reuses one buffer).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut ser = serde_json::Serializer::new(out);
        // Writing JSON into a Vec cannot fail: all keys are strings and all
        // numbers are finite (validated or generated).
        let _ = serde::Serialize::serialize(self, &mut ser);
    }
}

impl serde::Serialize for Event<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(12))?;
        m.serialize_entry("event_id", &self.event_id)?;
        m.serialize_entry("timestamp", &Rfc3339AsStr(self.timestamp_ms))?;
        m.serialize_entry("user_id", &self.user_id)?;
        m.serialize_entry("session_id", &self.session_id)?;
        m.serialize_entry("event_type", self.event_type.as_str())?;
        m.serialize_entry("page_url", &self.page_url)?;
        m.serialize_entry("referrer", &self.referrer)?;
        m.serialize_entry("user_agent", &self.user_agent)?;
        m.serialize_entry("ip_address", &self.ip_address)?;
        m.serialize_entry("properties", &PropertiesOut(&self.properties))?;
        m.serialize_entry("device", &DeviceOut(&self.device))?;
        m.serialize_entry("location", &LocationOut(&self.location))?;
        m.end()
    }
}

struct Rfc3339AsStr(i64);
impl serde::Serialize for Rfc3339AsStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Rfc3339(self.0))
    }
}

struct PropertiesOut<'p, 'a>(&'p Properties<'a>);
impl serde::Serialize for PropertiesOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut m = s.serialize_map(None)?;
        if let Some(v) = &p.product_id {
            m.serialize_entry("product_id", v)?;
        }
        if let Some(v) = &p.product_name {
            m.serialize_entry("product_name", v)?;
        }
        if let Some(v) = &p.price {
            m.serialize_entry("price", v)?;
        }
        if let Some(v) = &p.category {
            m.serialize_entry("category", v)?;
        }
        if let Some(v) = &p.search_query {
            m.serialize_entry("search_query", v)?;
        }
        if let Some(v) = &p.cart_value {
            m.serialize_entry("cart_value", v)?;
        }
        m.end()
    }
}

struct DeviceOut<'p, 'a>(&'p Device<'a>);
impl serde::Serialize for DeviceOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("type", &self.0.device_type)?;
        m.serialize_entry("os", &self.0.os)?;
        m.serialize_entry("browser", &self.0.browser)?;
        m.end()
    }
}

struct LocationOut<'p, 'a>(&'p Location<'a>);
impl serde::Serialize for LocationOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("country", &self.0.country)?;
        m.serialize_entry("city", &self.0.city)?;
        m.serialize_entry("timezone", &self.0.timezone)?;
        m.end()
    }
}
