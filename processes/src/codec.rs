//! Payload encoding: bincode 2 over serde, with `Vec<u8>` copied straight rather than byte by byte.

use cspnet_core::{ChannelError, ErrorText};
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
/// A value whose `Serialize` fails (its own error, or a serializer asking for a sequence of
/// unknown length) is [`ChannelError::Unencodable`]: the writer gets it back as an error value
/// and nothing is sent, rather than a panic that would poison the writer's channels.
pub(crate) fn encode<T: Serialize + 'static>(value: T) -> Result<Encoded, ChannelError> {
    if is_bytes::<T>() {
        let boxed: Box<dyn Any> = Box::new(value);
        return Ok(Encoded(
            *boxed.downcast::<Vec<u8>>().expect("checked by TypeId"),
        ));
    }
    encode_ref(&value).map(Encoded)
}

/// Encodes a value left where it is (an output guard's, which stays in its slot until delivered).
/// Fails as [`encode`] does.
pub(crate) fn encode_ref<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ChannelError> {
    bincode::serde::encode_to_vec(value, config())
        .map_err(|e| ChannelError::Unencodable(ErrorText::new(&e.to_string())))
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
        let e = encode(v.clone()).unwrap();
        assert_eq!(e.bytes(), &v[..]);
        assert_eq!(decode::<Vec<u8>>(e.bytes()), v);
    }

    #[test]
    fn other_types_round_trip() {
        let v = (7u32, String::from("x"), vec![1u64, 2]);
        let e = encode(v.clone()).unwrap();
        assert_eq!(decode::<(u32, String, Vec<u64>)>(e.bytes()), v);
    }

    /// A `Serialize` that fails, as a type with a custom impl can.
    struct Refuses;

    impl Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refuses to be encoded"))
        }
    }

    #[test]
    fn a_failing_serialize_is_an_error_naming_serdes_message() {
        match encode(Refuses) {
            Err(ChannelError::Unencodable(text)) => {
                assert!(text.as_str().contains("refuses to be encoded"), "{text}");
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a failing Serialize was encoded"),
        }
    }
}
