//! Small value types shared by many packets: protocol version, QoS, subscription options and
//! [`ByteStr`], the zero-copy UTF-8 string every topic and string property is held in.

use arrayvec::ArrayString;
use bytes::{Buf, Bytes};
use bytestring::ByteString;
use std::fmt;
use std::ops::Deref;

/// The protocol level carried in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    V31,
    /// MQTT 3.1.1: protocol name "MQTT", level 4.
    V311,
    /// MQTT 5.0: protocol name "MQTT", level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V31 => 3,
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The protocol name string of CONNECT ("MQIsdp" for 3.1, "MQTT" otherwise).
    pub fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V31 => "MQIsdp",
            _ => "MQTT",
        }
    }

    /// True for MQTT 5.0, the only version with properties and reason codes on every ack.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

/// Quality of service of a PUBLISH or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    /// QoS 0: at most once, no acknowledgement.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: at least once, PUBACK.
    AtLeastOnce = 1,
    /// QoS 2: exactly once, PUBREC / PUBREL / PUBCOMP.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a wire value, or `None` for 3 and above [MQTT-3.3.1-4].
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// v5 Retain Handling subscription option (bits 4-5 of the options byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send retained messages only if the subscription did not already exist.
    SendIfNew = 1,
    /// 2: do not send retained messages at the time of the subscribe.
    DoNotSend = 2,
}

/// The options byte that follows each topic filter in SUBSCRIBE.
/// For 3.1/3.1.1 only `qos` is on the wire; the other fields keep their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS the client wants for this subscription.
    pub qos: QoS,
    /// v5 No Local: do not forward messages published by this same client.
    pub no_local: bool,
    /// v5 Retain As Published: keep the RETAIN flag as the publisher set it.
    pub retain_as_published: bool,
    /// v5 Retain Handling.
    pub retain_handling: RetainHandling,
}

/// Longest string a [`ByteStr`] holds inline, without sharing a buffer.
pub const INLINE_CAPACITY: usize = 40;

/// An immutable UTF-8 string, checked once when built: topics and string properties.
///
/// A string of up to [`INLINE_CAPACITY`] bytes is held inline (copying that many bytes costs
/// less than the two reference-count operations of sharing a buffer); a longer one shares the
/// received buffer. Reading it as `&str` costs nothing: UTF-8 (and, for decoded strings, every
/// rule of the specification) was checked when it was built.
#[derive(Clone)]
pub struct ByteStr(Repr);

#[derive(Clone)]
enum Repr {
    Inline(ArrayString<INLINE_CAPACITY>),
    Shared(ByteString),
}

impl ByteStr {
    /// An empty string.
    pub const fn new() -> ByteStr {
        ByteStr(Repr::Inline(ArrayString::new_const()))
    }

    /// The string in `bytes`, or `None` if they are not UTF-8. Shares `bytes` when longer than
    /// [`INLINE_CAPACITY`].
    pub fn from_utf8(bytes: Bytes) -> Option<ByteStr> {
        if bytes.len() <= INLINE_CAPACITY {
            return ByteStr::from_utf8_slice(&bytes);
        }
        ByteString::try_from(bytes)
            .ok()
            .map(|s| ByteStr(Repr::Shared(s)))
    }

    /// The string in `bytes` (copied when short, else into a new buffer), or `None` if they are
    /// not UTF-8.
    pub fn from_utf8_slice(bytes: &[u8]) -> Option<ByteStr> {
        std::str::from_utf8(bytes).ok().map(ByteStr::from)
    }

    /// Reads `len` bytes off the front of `r` as a string: copied when short, else a slice of
    /// `r`'s buffer. `None` (and `r` left as it was) if they are not UTF-8.
    #[inline(always)]
    pub(crate) fn split_from(r: &mut Bytes, len: usize) -> Option<ByteStr> {
        let head = r.get(..len)?;
        if len <= INLINE_CAPACITY {
            let s = std::str::from_utf8(head).ok()?;
            let inline = ArrayString::from(s).ok()?;
            r.advance(len);
            return Some(ByteStr(Repr::Inline(inline)));
        }
        std::str::from_utf8(head).ok()?;
        ByteString::try_from(r.split_to(len))
            .ok()
            .map(|s| ByteStr(Repr::Shared(s)))
    }

    /// The topic name in the first `len` bytes of `src` (`len` of 1 to [`INLINE_CAPACITY`]), held
    /// inline, if it is UTF-8 without `+`, `#` or U+0000 [MQTT-3.3.2-2], [MQTT-1.5.4-2]; `None`
    /// otherwise, and then the caller's general path finds out which rule broke.
    ///
    /// This is the PUBLISH fast path, written for the machine: the topic is gathered into an
    /// aligned block of 48 bytes padded with `a` (masked by a window into a fixed table, byte by
    /// byte as written and in three vectors as compiled, when `src` holds 48 bytes; else one
    /// copy), the wildcard
    /// and NUL test runs over the whole block with no tail loop, and `std::str::from_utf8` meets
    /// an aligned input whose length is a multiple of 16, which it checks two words at a time
    /// with no byte-by-byte head or tail: about 41 instructions, against 137 for the 38
    /// unaligned bytes of the benchmark's topic.
    #[inline(always)]
    pub(crate) fn inline_topic_name(src: &[u8], len: usize) -> Option<ByteStr> {
        const BLOCK: usize = 48;
        #[repr(C, align(16))]
        struct Block([u8; BLOCK]);
        if len == 0 || len > INLINE_CAPACITY {
            return None;
        }
        let mut block = Block([b'a'; BLOCK]);
        let mut found = 0u64;
        if let Some(whole) = src.first_chunk::<BLOCK>() {
            // Byte by byte as written, whole vectors as compiled: the topic's bytes, the
            // filler past them, and whether any is `+`, `#` or NUL.
            // 0xFF over the topic's bytes, 0 past them: a window into a fixed table.
            const MASKS: [u8; 2 * BLOCK] = {
                let mut m = [0u8; 2 * BLOCK];
                let mut i = 0;
                while i < BLOCK {
                    m[i] = 0xFF;
                    i += 1;
                }
                m
            };
            let mask = MASKS.get(BLOCK - len..)?.first_chunk::<BLOCK>()?;
            let mut special = 0u8;
            for ((dst, &b), &m) in block.0.iter_mut().zip(whole).zip(mask) {
                let b = (b & m) | (b'a' & !m);
                *dst = b;
                special |= u8::from(b == 0) | u8::from(b == b'+') | u8::from(b == b'#');
            }
            found = u64::from(special);
        } else {
            block.0.get_mut(..len)?.copy_from_slice(src.get(..len)?);
            for word in block.0.as_chunks::<8>().0 {
                found |= crate::topic::special_bytes(u64::from_le_bytes(*word));
            }
        }
        if found != 0 {
            return None;
        }
        // Padding with ASCII keeps the answer: the topic's bytes are UTF-8 if and only if the
        // block is, and position `INLINE_CAPACITY` (filler) is a character boundary.
        let block = std::str::from_utf8(&block.0).ok()?;
        let mut s = ArrayString::from(block.get(..INLINE_CAPACITY)?).ok()?;
        if !s.is_char_boundary(len) {
            return None;
        }
        s.truncate(len);
        Some(ByteStr(Repr::Inline(s)))
    }

    /// A string from a static literal, without copying.
    pub const fn from_static(s: &'static str) -> ByteStr {
        ByteStr(Repr::Shared(ByteString::from_static(s)))
    }

    /// The string.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline(s) => s.as_str(),
            Repr::Shared(s) => s,
        }
    }

    /// The string's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.as_str().as_bytes()
    }

    /// The string's bytes as [`Bytes`]: shared when the string shares a buffer, else a copy.
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Inline(s) => Bytes::copy_from_slice(s.as_bytes()),
            Repr::Shared(s) => s.as_bytes().clone(),
        }
    }

    /// Consumes the string, returning its bytes (see [`ByteStr::to_bytes`]).
    pub fn into_bytes(self) -> Bytes {
        match self.0 {
            Repr::Inline(s) => Bytes::copy_from_slice(s.as_bytes()),
            Repr::Shared(s) => s.into_bytes(),
        }
    }
}

impl Default for ByteStr {
    fn default() -> Self {
        ByteStr::new()
    }
}

impl Deref for ByteStr {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ByteStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for ByteStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for ByteStr {
    fn from(s: &str) -> ByteStr {
        match ArrayString::from(s) {
            Ok(inline) => ByteStr(Repr::Inline(inline)),
            Err(_) => ByteStr(Repr::Shared(ByteString::from(s))),
        }
    }
}

impl From<String> for ByteStr {
    fn from(s: String) -> ByteStr {
        if s.len() <= INLINE_CAPACITY {
            return ByteStr::from(s.as_str());
        }
        ByteStr(Repr::Shared(ByteString::from(s)))
    }
}

impl PartialEq for ByteStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ByteStr {}

impl PartialOrd for ByteStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByteStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// Hashes as the `str` it holds, as [`Borrow<str>`](std::borrow::Borrow) requires.
impl std::hash::Hash for ByteStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn short_strings_are_inline_and_long_ones_share_the_buffer() {
        let short = Bytes::from_static(b"a/b");
        let long = Bytes::from(vec![b'x'; INLINE_CAPACITY + 1]);
        assert!(matches!(
            ByteStr::from_utf8(short).map(|s| s.0),
            Some(Repr::Inline(_))
        ));
        let shared = ByteStr::from_utf8(long.clone()).unwrap_or_default();
        assert!(matches!(shared.0, Repr::Shared(_)));
        assert_eq!(shared.to_bytes().as_ptr(), long.as_ptr());
    }

    #[test]
    fn invalid_utf8_is_refused_whatever_the_length() {
        assert!(ByteStr::from_utf8(Bytes::from_static(b"\xff")).is_none());
        let mut long = vec![b'x'; 100];
        long.push(0xC0);
        assert!(ByteStr::from_utf8(Bytes::from(long.clone())).is_none());
        let mut r = Bytes::from(long);
        assert!(ByteStr::split_from(&mut r, 101).is_none());
        assert_eq!(r.len(), 101, "left as it was");
    }

    #[test]
    fn equality_order_and_hash_follow_the_str_whatever_the_storage() {
        let inline = ByteStr::from("topic");
        let shared = ByteStr::from_static("topic");
        assert_eq!(inline, shared);
        assert_eq!(inline.cmp(&shared), std::cmp::Ordering::Equal);
        // Borrow<str> requires the same hash as the str: a set of ByteStr finds a &str.
        let set: HashSet<ByteStr> = [inline].into_iter().collect();
        assert!(set.contains("topic"));
        assert!(set.contains(&shared));
    }

    #[test]
    fn split_from_takes_exactly_the_string() {
        let mut r = Bytes::from_static(b"abcdef");
        assert_eq!(ByteStr::split_from(&mut r, 4).unwrap_or_default(), "abcd");
        assert_eq!(&r[..], b"ef");
        assert!(
            ByteStr::split_from(&mut r, 3).is_none(),
            "longer than what is left"
        );
    }
}
