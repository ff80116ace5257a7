//! The one call librdkafka's Rust binding does not wrap: the group member
//! id, for `/report` and readiness.

use super::*;

/// The consumer's member id, once it has joined its group.
pub(super) fn member_id<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<String> {
    // SAFETY: rd_kafka_memberid returns NULL or a string we own and must free
    // with rd_kafka_mem_free; the client pointer is valid for `consumer`'s life.
    unsafe {
        let ptr = consumer.client().native_ptr();
        let id = rdkafka::bindings::rd_kafka_memberid(ptr);
        if id.is_null() {
            return None;
        }
        let text = std::ffi::CStr::from_ptr(id).to_string_lossy().into_owned();
        rdkafka::bindings::rd_kafka_mem_free(ptr, id.cast());
        (!text.is_empty()).then_some(text)
    }
}
