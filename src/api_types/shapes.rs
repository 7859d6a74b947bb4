//! What the OpenAPI document says of values whose rules a field's type
//! does not carry: the exact grammar of environment entries, workspace
//! paths and image references, the value each policy setting takes, and
//! whole numbers written as `7.0`. The handlers check the same rules; a
//! request the document allows is one they accept (schemathesis checks it,
//! `scripts/fuzz-api.sh`).

use serde::{Deserialize, Deserializer};

/// `KEY=VALUE`, with a name a shell would take.
#[derive(utoipa::ToSchema)]
#[schema(pattern = r"^[A-Za-z_][A-Za-z0-9_]*=")]
#[allow(dead_code)] // a schema only: entries travel as strings
pub struct EnvEntry(String);

/// A file in a workspace: `public/` unless the path starts with another
/// area (`image/`, `outputs/`, `gathered/`); its segments are names of at
/// most 63 characters (252 bytes: a file name has at most 255), never
/// empty, `.` or `..`, and without NUL.
#[derive(utoipa::ToSchema)]
#[schema(
    pattern = r"^([^/.\u0000][^/\u0000]{0,62}|\.[^/.\u0000][^/\u0000]{0,61}|\.\.[^/\u0000]{1,61})(/([^/.\u0000][^/\u0000]{0,62}|\.[^/.\u0000][^/\u0000]{0,61}|\.\.[^/\u0000]{1,61}))*$",
    max_length = 1022
)]
#[allow(dead_code)]
pub struct WorkspaceFile(String);

/// Where a fetched file goes: as [`WorkspaceFile`], under `public/` or
/// `image/` only. Both at most 1022 characters (4088 bytes): with
/// `public/` in front, a workspace path is at most 4096 bytes.
#[derive(utoipa::ToSchema)]
#[schema(
    pattern = r"^(?!outputs/|gathered/)([^/.\u0000][^/\u0000]{0,62}|\.[^/.\u0000][^/\u0000]{0,61}|\.\.[^/\u0000]{1,61})(/([^/.\u0000][^/\u0000]{0,62}|\.[^/.\u0000][^/\u0000]{0,61}|\.\.[^/\u0000]{1,61}))*$",
    max_length = 1022
)]
#[allow(dead_code)]
pub struct Destination(String);

/// Where a command goes: `all`, node names separated by commas,
/// `role:master`, `role:slave`, `tag:T` or `dataset:NAME`. A name never
/// holds a colon, so anything else with one is no target at all.
#[derive(utoipa::ToSchema)]
#[schema(
    pattern = r"^(all|role:(master|slave)|tag:.*|dataset:[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}|[^:]+)$",
    min_length = 1
)]
#[allow(dead_code)]
pub struct Targets(String);

/// A job's input: a path in each target's public workspace (or, on the
/// node that submits the job, `gathered/...`): no segment empty, `.` or
/// `..`, no NUL, at most 256 characters.
#[derive(utoipa::ToSchema)]
#[schema(
    pattern = r"^([^/.\u0000][^/\u0000]*|\.[^/.\u0000][^/\u0000]*|\.\.[^/\u0000]+)(/([^/.\u0000][^/\u0000]*|\.[^/.\u0000][^/\u0000]*|\.\.[^/\u0000]+))*$",
    min_length = 1,
    max_length = 256
)]
#[allow(dead_code)]
pub struct InputPath(String);

/// A file of this node's own workspace that its API reads out: under
/// `public/` or `gathered/`, segments as in [`WorkspaceFile`].
#[derive(utoipa::ToSchema)]
#[schema(
    pattern = r"^(public|gathered)(/([^/.\u0000][^/\u0000]{0,62}|\.[^/.\u0000][^/\u0000]{0,61}|\.\.[^/\u0000]{1,61}))+$",
    max_length = 1022
)]
#[allow(dead_code)]
pub struct ReadableFile(String);

/// A dataset's directory: `private/` and names below it.
#[derive(utoipa::ToSchema)]
#[schema(
    pattern = r"^private(/([^/.\u0000][^/\u0000]{0,62}|\.[^/.\u0000][^/\u0000]{0,61}|\.\.[^/\u0000]{1,61}))+$",
    max_length = 1024
)]
#[allow(dead_code)]
pub struct DatasetDir(String);

/// An image reference the engine reads (`name[:tag][@digest]`, Docker's
/// grammar), or an image id (`sha256:<64 hex>`).
#[derive(utoipa::ToSchema)]
#[schema(
    pattern = r"^(sha256:[0-9a-f]{64}|([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*(:[0-9]{1,5})?/)?[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?)$",
    max_length = 255
)]
#[allow(dead_code)]
pub struct ImageReference(String);

/// `POST /v1/policy` as the document states it: each setting with the
/// values it takes (the handler reads it as [`super::SetPolicy`]).
#[derive(utoipa::ToSchema)]
#[serde(tag = "key", content = "value", rename_all = "snake_case")]
#[allow(dead_code)]
pub enum PolicySetting {
    Images(ImagesValue),
    Network(AllowanceValue),
    Sessions(AllowanceValue),
    Release(ReleaseValue),
    Logs(LogsValue),
    MinAggregate(AtLeastTwo),
    MaxSharedLogBytes(AnyCount),
    MaxTasksPerHour(AtLeastOne),
}

#[derive(utoipa::ToSchema)]
#[schema(pattern = r"^(approve|any)$")]
#[allow(dead_code)]
pub struct ImagesValue(String);

#[derive(utoipa::ToSchema)]
#[schema(pattern = r"^(deny|allow)$")]
#[allow(dead_code)]
pub struct AllowanceValue(String);

#[derive(utoipa::ToSchema)]
#[schema(pattern = r"^(auto|review|aggregate)$")]
#[allow(dead_code)]
pub struct ReleaseValue(String);

#[derive(utoipa::ToSchema)]
#[schema(pattern = r"^(withhold|share)$")]
#[allow(dead_code)]
pub struct LogsValue(String);

/// A number from 2 to 999999999, in decimal.
#[derive(utoipa::ToSchema)]
#[schema(pattern = r"^([2-9]|[1-9][0-9]{1,8})$")]
#[allow(dead_code)]
pub struct AtLeastTwo(String);

/// A number from 1 to 999999999, in decimal.
#[derive(utoipa::ToSchema)]
#[schema(pattern = r"^[1-9][0-9]{0,8}$")]
#[allow(dead_code)]
pub struct AtLeastOne(String);

/// A number from 0 to 10¹⁹ - 1, in decimal.
#[derive(utoipa::ToSchema)]
#[schema(pattern = r"^(0|[1-9][0-9]{0,18})$")]
#[allow(dead_code)]
pub struct AnyCount(String);

/// A whole number, also when JSON writes it `7.0` (JSON Schema's
/// `integer` allows that, and so do we); a fraction or a number out of
/// range is an error naming it.
pub fn whole<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let number = serde_json::Number::deserialize(deserializer)?;
    let value = match (number.as_u64(), number.as_f64()) {
        (Some(n), _) => Some(n),
        (None, Some(f)) if f.fract() == 0.0 && (0.0..=9.007_199_254_740_992e15).contains(&f) => {
            Some(f as u64)
        }
        _ => None,
    };
    value
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| D::Error::custom(format!("{number} is not a whole number in range")))
}

/// [`whole`], or nothing (`null` or the field left out, with
/// `#[serde(default)]`).
pub fn maybe_whole<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    #[derive(Deserialize)]
    struct Whole<T: TryFrom<u64>>(#[serde(deserialize_with = "whole")] T);
    Ok(Option::<Whole<T>>::deserialize(deserializer)?.map(|Whole(n)| n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Count {
        #[serde(deserialize_with = "whole")]
        n: u32,
    }

    fn count(json: &str) -> Result<u32, String> {
        serde_json::from_str::<Count>(json)
            .map(|c| c.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_whole_number_may_be_written_with_a_point_zero_but_not_as_a_fraction() {
        assert_eq!(count(r#"{"n": 7}"#), Ok(7));
        assert_eq!(count(r#"{"n": 7.0}"#), Ok(7));
        assert_eq!(count(r#"{"n": 1e3}"#), Ok(1000));
        for bad in ["7.5", "-1", "4294967296", "\"7\"", "1e300"] {
            let err = count(&format!(r#"{{"n": {bad}}}"#)).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }

    #[test]
    fn a_whole_number_may_be_left_out() {
        #[derive(Deserialize)]
        struct Maybe {
            #[serde(default, deserialize_with = "maybe_whole")]
            n: Option<u32>,
        }
        let maybe = |json: &str| serde_json::from_str::<Maybe>(json).map(|m| m.n);
        assert_eq!(maybe(r#"{"n": 453.0}"#).unwrap(), Some(453));
        assert_eq!(maybe(r#"{"n": null}"#).unwrap(), None);
        assert_eq!(maybe("{}").unwrap(), None);
        assert!(maybe(r#"{"n": 4.5}"#).is_err());
    }
}
