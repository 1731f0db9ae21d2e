//! Byte strings on the wire: binary protocol fields travel as standard base64
//! (RFC 4648 §4, with padding) inside JSON strings.

use std::fmt;
use std::ops::Deref;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Owned bytes that serialize as a base64 string.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct B64(pub Vec<u8>);

impl B64 {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Consumes the wrapper.
    pub fn into_inner(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for B64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "B64({} bytes)", self.0.len())
    }
}

impl Deref for B64 {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for B64 {
    fn from(v: Vec<u8>) -> Self {
        B64(v)
    }
}

impl From<&[u8]> for B64 {
    fn from(v: &[u8]) -> Self {
        B64(v.to_vec())
    }
}

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map(B64)
            .map_err(|e| de::Error::custom(format!("invalid base64: {e}")))
    }
}

/// A 32-byte value (nonce, proof) that serializes as base64 and refuses any
/// other length when parsed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bytes32(pub [u8; 32]);

impl fmt::Debug for Bytes32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes32({})", hex::encode(self.0))
    }
}

impl Deref for Bytes32 {
    type Target = [u8; 32];
    fn deref(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for Bytes32 {
    fn from(v: [u8; 32]) -> Self {
        Bytes32(v)
    }
}

impl Serialize for Bytes32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let B64(v) = B64::deserialize(d)?;
        let arr: [u8; 32] = v.try_into().map_err(|v: Vec<u8>| {
            de::Error::custom(format!("expected 32 bytes, got {}", v.len()))
        })?;
        Ok(Bytes32(arr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_length_check() {
        let b = B64(vec![0, 1, 2, 255]);
        let j = serde_json::to_string(&b).unwrap();
        assert_eq!(j, "\"AAEC/w==\"");
        assert_eq!(serde_json::from_str::<B64>(&j).unwrap(), b);
        assert!(serde_json::from_str::<B64>("\"!!\"").is_err());
        let n = Bytes32([7; 32]);
        let j = serde_json::to_string(&n).unwrap();
        assert_eq!(serde_json::from_str::<Bytes32>(&j).unwrap(), n);
        let short = serde_json::to_string(&B64(vec![7; 31])).unwrap();
        assert!(serde_json::from_str::<Bytes32>(&short).is_err());
        assert!(serde_json::from_str::<Bytes32>("\"AAEC/w==\"").is_err());
    }
}
