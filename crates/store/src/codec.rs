//! Conversions between the data model and column values that every backend shares.

use crate::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The serde name of a unit enum variant, so stored names match the JSON API's.
pub(crate) fn enum_name<T: Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => Ok(name),
        Ok(other) => Err(StoreError::invalid(
            what,
            format!("expected a unit variant, got {other}"),
        )),
        Err(e) => Err(StoreError::invalid(what, e)),
    }
}

pub(crate) fn parse_enum<T: DeserializeOwned>(what: &str, name: String) -> Result<T, StoreError> {
    serde_json::from_value(Value::String(name)).map_err(|e| StoreError::corrupt(what, e))
}

pub(crate) fn to_json<T: Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::invalid(what, e))
}

pub(crate) fn from_json<T: DeserializeOwned>(what: &str, json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::corrupt(what, e))
}

/// NaN becomes NULL. SQLite does this silently anyway; doing it here keeps backends that can
/// store NaN (PostgreSQL) consistent with it. Infinities are kept.
pub(crate) fn nan_to_null(value: f64) -> Option<f64> {
    if value.is_nan() { None } else { Some(value) }
}

/// The inverse of [`nan_to_null`] for columns that are required in the model.
pub(crate) fn null_to_nan(value: Option<f64>) -> f64 {
    value.unwrap_or(f64::NAN)
}

/// A position in a list, as the signed integer databases index with.
pub(crate) fn seq(what: &str, index: usize) -> Result<i64, StoreError> {
    i64::try_from(index).map_err(|e| StoreError::invalid(what, e))
}

pub(crate) fn to_i64<T>(what: &str, value: T) -> Result<i64, StoreError>
where
    i64: TryFrom<T>,
    <i64 as TryFrom<T>>::Error: std::fmt::Display,
{
    i64::try_from(value).map_err(|e| StoreError::invalid(what, e))
}

pub(crate) fn from_i64<T>(what: &str, value: i64) -> Result<T, StoreError>
where
    T: TryFrom<i64>,
    <T as TryFrom<i64>>::Error: std::fmt::Display,
{
    T::try_from(value).map_err(|e| StoreError::corrupt(what, format!("{value}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightshift_core::{EvidenceKind, SignalClass};

    #[test]
    fn enum_names_match_serde() {
        assert_eq!(
            enum_name("kind", &EvidenceKind::LogPattern).unwrap(),
            "log_pattern"
        );
        assert_eq!(
            enum_name("class", &SignalClass::Saturation).unwrap(),
            "saturation"
        );
        let back: EvidenceKind = parse_enum("kind", "kube_event".to_string()).unwrap();
        assert_eq!(back, EvidenceKind::KubeEvent);
    }

    #[test]
    fn unknown_enum_name_is_corrupt() {
        let err = parse_enum::<EvidenceKind>("evidence kind", "nope".to_string()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn out_of_range_counts_are_rejected() {
        assert!(matches!(
            to_i64("count", u64::MAX),
            Err(StoreError::Invalid { .. })
        ));
        assert!(matches!(
            from_i64::<u32>("rank", -1),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
