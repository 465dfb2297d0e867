//! The errors a DataStore call can fail with, as Roblox reports them (spec "Error codes",
//! `cloud-services/data-stores/error-codes-and-limits.md`).
//!
//! `Display` gives the text a Luau `pcall` would see: `"<code>: <message>"` with Roblox's
//! documented message (`"102: Key name exceeds the 50 character limit."`). Errors Roblox lists
//! without a number use their name as the code (`"KeyThrottled: The request rate exceeds the
//! allowed maximum for the key."`). Where Roblox documents no text (incrementing a non-number, a
//! snapshot taken twice a day) the text is ours, in the same shape. Structured fields carry the
//! details (sizes, limits) for tests and logs.

use profilestore_core::DataStoreError;

use super::{Operation, RequestType};

/// Which name a 101/102 error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// The DataStore name.
    DataStore,
    /// The scope.
    Scope,
    /// The key name.
    Key,
}

impl std::fmt::Display for NameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameKind::DataStore => "DataStore name",
            NameKind::Scope => "Scope",
            NameKind::Key => "Key name",
        })
    }
}

/// Which metadata size a 511 error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataPart {
    /// One attribute's name (≤ 50).
    Key,
    /// One attribute's value (≤ 250).
    Value,
    /// All names and values together (≤ 300).
    Total,
}

/// Which per-key throughput budget was exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Throughput {
    /// Reads (25 MB per minute by default).
    Read,
    /// Writes (4 MB per minute by default).
    Write,
}

/// A failed DataStore call.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// 101 `KeyNameEmpty` (and the same for an empty DataStore name or scope).
    #[error("101: {what} can't be empty.")]
    NameEmpty {
        /// Which name.
        what: NameKind,
    },
    /// 102 `KeyNameLimit` (and the same for a DataStore name or scope).
    #[error("102: {what} exceeds the {limit} character limit.")]
    NameTooLong {
        /// Which name.
        what: NameKind,
        /// Its length in bytes (`string.len`).
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// 103 `ValueNotAllowed`: a value of a type the DataStore refuses (nil in `SetAsync`).
    #[error("103: Can't allow {what} in DataStore.")]
    ValueNotAllowed {
        /// The refused type.
        what: String,
    },
    /// 104 `CantStoreValue`: a value that does not serialize (NaN, ±inf, invalid UTF-8).
    #[error("104: Can't store {what} in DataStore.")]
    CantStoreValue {
        /// What could not be stored.
        what: String,
    },
    /// 105 `ValueTooLarge`.
    #[error("105: Serialized value exceeds {} limit.", size_text(*limit))]
    ValueTooLarge {
        /// Serialized size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// 301–306: the throttle queue for this call was full (version and list calls use their
    /// named `…Throttle` errors).
    #[error("{}: {} request dropped. Request was throttled{}", queue_code(*operation), operation.api_name(), queue_tail(*operation))]
    QueueFull {
        /// The call that was dropped.
        operation: Operation,
    },
    /// 502 `RequestRejected`: the service failed the request.
    #[error("502: API Services rejected request with error. {detail}")]
    RequestRejected {
        /// The service's error, e.g. `HTTP 500 (Internal Server Error)`.
        detail: String,
    },
    /// 511 `AttributeSizeTooLarge`.
    #[error("511: Metadata attribute {}exceeds {limit} limit.", metadata_part(*part))]
    MetadataTooLarge {
        /// Which size.
        part: MetadataPart,
        /// The size found.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// 512 `UserIdLimitExceeded`.
    #[error("512: UserID size exceeds {limit} limit.")]
    TooManyUserIds {
        /// How many were given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// 513 `AttributeFormatError`: user ids are not a list of integers.
    #[error("513: Attribute userId format is invalid.")]
    UserIdFormat {
        /// What was given, as JSON.
        found: String,
    },
    /// 513 `AttributeFormatError`: metadata is not a table.
    #[error("513: Attribute metadata format is invalid.")]
    MetadataFormat {
        /// What was given, as JSON.
        found: String,
    },
    /// `Standard…ExperienceThrottled`: the experience-level budget of this request type is used
    /// up and the server's throttle queue is full (`shared/spec/roblox-datastore.md` names the
    /// error but gives no text; this one is ours, in the shape of the 301–306 queue-full texts).
    #[error("{}ExperienceThrottled: {} request dropped. The experience's request budget is used up and the queue is full.", kind.name(), operation.api_name())]
    ExperienceThrottled {
        /// The call that was dropped.
        operation: Operation,
        /// The request type whose experience budget is used up.
        kind: RequestType,
    },
    /// `KeyThrottled`: the key's per-minute throughput is used up.
    #[error("KeyThrottled: The request rate exceeds the allowed maximum for the key.")]
    KeyThrottled {
        /// Read or write budget.
        kind: Throughput,
        /// Units (1 KB each) already used in the window.
        used_units: u64,
        /// Units this request needed.
        request_units: u64,
        /// Units allowed per window.
        limit_units: u64,
        /// When the key's window will take this request (`None`: never, it alone exceeds the
        /// limit). Roblox keeps a throttled key's request in its queue, skipping it until then
        /// (spec "Queues"); a host with a clock waits and sends it again.
        ready_at: Option<f64>,
    },
    /// `InternalServerError` (also how a storage failure reaches the caller).
    #[error("InternalServerError: An internal server error occurred. ({detail})")]
    InternalServerError {
        /// What failed.
        detail: String,
    },
    /// `InvalidTimestamp` from `GetVersionAtTimeAsync`.
    #[error(
        "InvalidTimestamp: Timestamp must be positive and not more than ten minutes in the future."
    )]
    InvalidTimestamp {
        /// The timestamp given, epoch ms.
        timestamp_ms: i64,
    },
    /// `AdvanceToNextPageAsync` on the last page.
    #[error("No pages to advance to.")]
    NoMorePages,
    /// `IncrementAsync` on a value that is not an integer (text ours).
    #[error(
        "ValueNotInteger: IncrementAsync can't increment {found}; the stored value must be an integer."
    )]
    NotAnInteger {
        /// What is stored.
        found: String,
    },
    /// `IncrementAsync` past the 64-bit range (text ours).
    #[error(
        "ValueNotInteger: IncrementAsync result overflows a 64-bit integer ({current} + {delta})."
    )]
    IncrementOverflow {
        /// The stored value.
        current: i64,
        /// The delta.
        delta: i64,
    },
    /// A snapshot was already taken this UTC day (text ours; Open Cloud allows one a day).
    #[error("SnapshotLimit: A snapshot was already taken this UTC day.")]
    SnapshotLimit,
    /// The `UpdateAsync` transform threw: the call fails with the transform's own message.
    #[error("{0}")]
    Transform(String),
}

fn size_text(limit: usize) -> String {
    if limit > 0 && limit.is_multiple_of(1024 * 1024) {
        format!("{}MB", limit / (1024 * 1024))
    } else {
        limit.to_string()
    }
}

fn metadata_part(part: MetadataPart) -> &'static str {
    match part {
        MetadataPart::Key => "key size ",
        MetadataPart::Value => "value size ",
        MetadataPart::Total => "size ",
    }
}

fn queue_code(operation: Operation) -> &'static str {
    match operation {
        Operation::Get => "301",
        Operation::Set => "302",
        Operation::Increment => "303",
        Operation::Update => "304",
        Operation::Remove => "306",
        Operation::GetVersion => "GetVersionAsyncThrottle",
        Operation::ListVersions => "ListVersionsAsyncThrottle",
        Operation::ListKeys => "ListKeysAsyncThrottle",
        Operation::GetVersionAtTime => "GetVersionAtTimeAsyncThrottle",
    }
}

fn queue_tail(operation: Operation) -> &'static str {
    match operation {
        Operation::GetVersion
        | Operation::GetVersionAtTime
        | Operation::ListVersions
        | Operation::ListKeys => ".",
        _ => " but queue was full.",
    }
}

impl RequestError {
    /// Roblox's numeric code, for the errors that have one.
    pub fn code(&self) -> Option<u16> {
        let code = match self {
            RequestError::NameEmpty { .. } => 101,
            RequestError::NameTooLong { .. } => 102,
            RequestError::ValueNotAllowed { .. } => 103,
            RequestError::CantStoreValue { .. } => 104,
            RequestError::ValueTooLarge { .. } => 105,
            RequestError::QueueFull { operation } => return queue_code(*operation).parse().ok(),
            RequestError::RequestRejected { .. } => 502,
            RequestError::MetadataTooLarge { .. } => 511,
            RequestError::TooManyUserIds { .. } => 512,
            RequestError::UserIdFormat { .. } | RequestError::MetadataFormat { .. } => 513,
            _ => return None,
        };
        Some(code)
    }

    /// The engine-facing error (`profilestore_core::DataStoreError`), carrying this text.
    pub fn to_core(&self) -> DataStoreError {
        DataStoreError {
            message: self.to_string(),
        }
    }
}

impl From<RequestError> for DataStoreError {
    fn from(e: RequestError) -> DataStoreError {
        e.to_core()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_roblox_texts() {
        let cases: Vec<(RequestError, &str)> = vec![
            (
                RequestError::NameEmpty {
                    what: NameKind::Key,
                },
                "101: Key name can't be empty.",
            ),
            (
                RequestError::NameTooLong {
                    what: NameKind::Key,
                    length: 51,
                    limit: 50,
                },
                "102: Key name exceeds the 50 character limit.",
            ),
            (
                RequestError::NameTooLong {
                    what: NameKind::Scope,
                    length: 51,
                    limit: 50,
                },
                "102: Scope exceeds the 50 character limit.",
            ),
            (
                RequestError::ValueTooLarge {
                    size: 5,
                    limit: 4_194_304,
                },
                "105: Serialized value exceeds 4MB limit.",
            ),
            (
                RequestError::ValueTooLarge {
                    size: 5,
                    limit: 100,
                },
                "105: Serialized value exceeds 100 limit.",
            ),
            (
                RequestError::QueueFull {
                    operation: Operation::Get,
                },
                "301: GetAsync request dropped. Request was throttled but queue was full.",
            ),
            (
                RequestError::QueueFull {
                    operation: Operation::Update,
                },
                "304: UpdateAsync request dropped. Request was throttled but queue was full.",
            ),
            (
                RequestError::QueueFull {
                    operation: Operation::Remove,
                },
                "306: RemoveAsync request dropped. Request was throttled but queue was full.",
            ),
            (
                RequestError::QueueFull {
                    operation: Operation::ListVersions,
                },
                "ListVersionsAsyncThrottle: ListVersionsAsync request dropped. Request was throttled.",
            ),
            (
                RequestError::QueueFull {
                    operation: Operation::GetVersionAtTime,
                },
                "GetVersionAtTimeAsyncThrottle: GetVersionAtTimeAsync request dropped. Request was throttled.",
            ),
            (
                RequestError::MetadataTooLarge {
                    part: MetadataPart::Total,
                    size: 301,
                    limit: 300,
                },
                "511: Metadata attribute size exceeds 300 limit.",
            ),
            (
                RequestError::UserIdFormat {
                    found: "\"x\"".into(),
                },
                "513: Attribute userId format is invalid.",
            ),
            (
                RequestError::RequestRejected {
                    detail: "HTTP 500 (Internal Server Error)".into(),
                },
                crate::world::FAULT_MESSAGE,
            ),
            (
                RequestError::KeyThrottled {
                    kind: Throughput::Write,
                    used_units: 1,
                    request_units: 1,
                    limit_units: 1,
                    ready_at: None,
                },
                "KeyThrottled: The request rate exceeds the allowed maximum for the key.",
            ),
            (RequestError::Transform("boom".into()), "boom"),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
            assert_eq!(err.to_core().message, text);
        }
        assert_eq!(
            RequestError::QueueFull {
                operation: Operation::Increment
            }
            .code(),
            Some(303)
        );
        assert_eq!(
            RequestError::QueueFull {
                operation: Operation::ListKeys
            }
            .code(),
            None
        );
        assert_eq!(RequestError::NoMorePages.code(), None);
    }
}
