//! Payload encoding: bincode 2 over serde, with `Vec<u8>` copied straight rather than byte by byte.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::{Any, TypeId};

/// An encoded payload, ready to be copied into the heap.
pub(crate) struct Encoded(Vec<u8>);

impl Encoded {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Whether `T` is `Vec<u8>`, whose bytes are its own encoding.
pub(crate) fn is_bytes<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<Vec<u8>>()
}

/// Encodes `value`. A `Vec<u8>` is taken as it is (its bytes are the encoding).
///
/// # Panics
///
/// If serde cannot encode the value with bincode (for example a serializer asks for a sequence of
/// unknown length): that is a property of the type, so it is reported like any other bug in a
/// process body, as a panic naming the type.
pub(crate) fn encode<T: Serialize + 'static>(value: T) -> Encoded {
    if is_bytes::<T>() {
        let boxed: Box<dyn Any> = Box::new(value);
        return Encoded(*boxed.downcast::<Vec<u8>>().expect("checked by TypeId"));
    }
    Encoded(encode_ref(&value))
}

/// Encodes a value left where it is (an output guard's, which stays in its slot until delivered).
///
/// # Panics
///
/// As [`encode`].
pub(crate) fn encode_ref<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    match bincode::serde::encode_to_vec(value, config()) {
        Ok(v) => v,
        Err(e) => panic!(
            "cspnet-processes: cannot encode a {} payload: {e}",
            std::any::type_name::<T>()
        ),
    }
}

/// Encodes any serializable value (results, arguments) with bincode.
pub(crate) fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| e.to_string())
}

/// Decodes what [`to_bytes`] encoded.
pub(crate) fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(bytes, config())
        .map(|(v, _)| v)
        .map_err(|e| e.to_string())
}

/// Decodes a payload from bytes the caller owns (reused as the value for `Vec<u8>`).
pub(crate) fn decode_owned<T: DeserializeOwned + 'static>(bytes: Vec<u8>) -> T {
    if is_bytes::<T>() {
        let boxed: Box<dyn Any> = Box::new(bytes);
        return *boxed.downcast::<T>().expect("checked by TypeId");
    }
    decode(&bytes)
}

/// Decodes a payload from borrowed bytes.
///
/// # Panics
///
/// If the bytes are not a valid encoding of `T` (a writer and reader disagreeing on the type, which
/// only a re-executed child built from different code can cause).
pub(crate) fn decode<T: DeserializeOwned + 'static>(bytes: &[u8]) -> T {
    if is_bytes::<T>() {
        return decode_owned(bytes.to_vec());
    }
    match from_bytes(bytes) {
        Ok(v) => v,
        Err(e) => panic!(
            "cspnet-processes: cannot decode a {} payload: {e}",
            std::any::type_name::<T>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_without_encoding() {
        let v: Vec<u8> = (0..=255).collect();
        let e = encode(v.clone());
        assert_eq!(e.bytes(), &v[..]);
        assert_eq!(decode::<Vec<u8>>(e.bytes()), v);
    }

    #[test]
    fn other_types_round_trip() {
        let v = (7u32, String::from("x"), vec![1u64, 2]);
        let e = encode(v.clone());
        assert_eq!(decode::<(u32, String, Vec<u64>)>(e.bytes()), v);
    }
}
