//! Errors the engine's API returns synchronously (spec Appendix A, "Thrown errors").
//!
//! Each variant's text is the original module's message, so a binding can raise it unchanged.
//! Variants that the original does not have (it accepted the input and misbehaved later) say
//! what was wrong and with which input.

use thiserror::Error;

/// An API call was rejected before anything happened; nothing was changed.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum ApiError {
    /// `ProfileStore.New` without a usable name: for a binding whose store name may be no
    /// string (the engine takes a `&str`, so it never returns this itself).
    #[error("[ProfileStore]: Invalid or missing \"store_name\"")]
    InvalidStoreName,
    /// `ProfileStore.New("")`.
    #[error("[ProfileStore]: store_name cannot be an empty string")]
    EmptyStoreName,
    /// `ProfileStore.New` with a name longer than 50 bytes.
    #[error("[ProfileStore]: store_name is too long")]
    StoreNameTooLong,
    /// `ProfileStore.New` with a template that is not a table.
    #[error("[ProfileStore]: Invalid template argument")]
    InvalidTemplate,
    /// `ProfileStore.New` (or a template change) with a template nested deeper than
    /// [`MAX_DATA_DEPTH`](crate::profile::MAX_DATA_DEPTH) levels: no DataStore stores a profile
    /// made from it (the Nesting paragraph of `docs/DEVIATIONS.md`).
    #[error(
        "[ProfileStore]: Invalid template argument: it nests deeper than {} levels, and no DataStore stores a profile made from it",
        crate::profile::MAX_DATA_DEPTH
    )]
    TemplateTooDeep,
    /// `ProfileStore.New` (or a template change) with a template whose JSON is larger than a
    /// key holds ([`MAX_VALUE_LEN`](crate::profile::MAX_VALUE_LEN)): no DataStore stores a
    /// profile made from it.
    #[error(
        "[ProfileStore]: Invalid template argument: its JSON is {0} bytes, over the {max} a DataStore key holds",
        max = crate::profile::MAX_VALUE_LEN
    )]
    TemplateTooLarge(usize),
    /// `SetConstant` with an unknown name.
    #[error("[ProfileStore]: Invalid constant name was provided")]
    InvalidConstantName,
    /// `SetConstant` with a value that cannot work (the original accepts it and may hang).
    #[error("[ProfileStore]: Invalid value for {name} ({value}): must be {rule}")]
    InvalidConstantValue {
        /// The constant's name.
        name: String,
        /// The rejected value.
        value: f64,
        /// What the value must be.
        rule: &'static str,
    },
    /// An empty profile key.
    #[error("[ProfileStore]: Invalid profile_key")]
    InvalidProfileKey,
    /// A profile key longer than 50 bytes.
    #[error("[ProfileStore]: profile_key is too long")]
    ProfileKeyTooLong,
    /// `StartSessionAsync` for a key that already has an active session on this server.
    #[error("[ProfileStore]: Profile (STORE:{store}; KEY:{key}) is already loaded in this session")]
    AlreadyLoaded {
        /// Store name.
        store: String,
        /// Profile key.
        key: String,
    },
    /// `MessageAsync` with a message that is not a table.
    #[error("[ProfileStore]: message must be a table")]
    MessageNotTable,
    /// `MessageAsync` with a message nested deeper than
    /// [`MAX_MESSAGE_DEPTH`](crate::messages::MAX_MESSAGE_DEPTH) levels: no DataStore stores
    /// it in a key's message queue.
    #[error(
        "[ProfileStore]: message nests deeper than {} levels, and no DataStore stores it in a message queue",
        crate::messages::MAX_MESSAGE_DEPTH
    )]
    MessageTooDeep,
    /// `MessageAsync` with a message whose JSON is larger than a key holds
    /// ([`MAX_VALUE_LEN`](crate::profile::MAX_VALUE_LEN)): no write of it could succeed, and the
    /// call would retry until the server closes.
    #[error(
        "[ProfileStore]: message is {0} bytes of JSON, over the {max} a DataStore key holds",
        max = crate::profile::MAX_VALUE_LEN
    )]
    MessageTooLarge(usize),
    /// `Profile:SetAsync()` on a profile that is not a view profile.
    #[error("[ProfileStore]: :SetAsync() can only be used in view mode")]
    SetAsyncNotViewMode,
    /// `Profile:Save()` on a view profile.
    #[error(
        "[ProfileStore]: Can't save profile in view mode; Should you be calling :SetAsync() instead?"
    )]
    SaveInViewMode,
    /// A store id that this engine did not hand out.
    #[error("[ProfileStore]: unknown store id {0}")]
    UnknownStore(u64),
    /// A profile id that this engine did not hand out, or that was released.
    #[error("[ProfileStore]: unknown profile id {0}")]
    UnknownProfile(u64),
    /// `processed()` for a message id the profile has not seen (a wrong id), or while the
    /// profile has no handler (its messages are still waiting for one): refused, as the next
    /// save would remove the message from the DataStore unhandled. An id the profile has seen
    /// is accepted while it has a handler: registering one gives it every unprocessed message.
    #[error(
        "[ProfileStore]: message {id} was not delivered to profile {profile}'s handlers: not marked processed"
    )]
    MessageNotDelivered {
        /// The profile.
        profile: u64,
        /// The message id.
        id: i64,
    },
    /// A version query id that this engine did not hand out.
    #[error("[ProfileStore]: unknown version query id {0}")]
    UnknownQuery(u64),
    /// A host error: a transform or an answer for a DataStore request the engine has not sent
    /// (its op is still waiting in its key's queue). Nothing changes: an answer is refused, and
    /// a transform returns this text as its error (the DataStore call running it fails).
    #[error(
        "[ProfileStore]: host error: DataStore request {0} has not been sent yet; its transform or answer is refused"
    )]
    OpNotSent(u64),
    /// A host error: an answer for a DataStore request that is not waiting for one (answered
    /// already, or never sent). Refused: nothing changes.
    #[error(
        "[ProfileStore]: host error: DataStore request {0} is not waiting for an answer (answered already, or never sent)"
    )]
    NotAwaitingAnswer(u64),
    /// A host error: a `SubscribeAsync` result for a subscription not waiting for one
    /// (answered already, or never asked for). Refused: a second answer used to drop a
    /// subscription the host had connected, without asking to disconnect it.
    #[error(
        "[ProfileStore]: host error: subscription {0} is not waiting for its SubscribeAsync result (answered already, or never asked for)"
    )]
    NotAwaitingSubscription(u64),
    /// A host error: a timeout fed while outputs wait to be polled (`poll_output` must be
    /// drained first: the timeout's outputs would come after ones it may depend on). Refused:
    /// nothing changes.
    #[error(
        "[ProfileStore]: host error: a timeout was fed with {0} output(s) not yet polled; drain poll_output first"
    )]
    OutputsNotDrained(usize),
    /// A host error: a value answering a DataStore request without the key info every
    /// DataStore read or write of a value returns. Refused: nothing changes.
    #[error(
        "[ProfileStore]: host error: DataStore request {0} was answered with a value but no key info"
    )]
    MissingKeyInfo(u64),
    /// A host error: a value answering an update (`UpdateAsync`) whose latest transform did not
    /// write (it was not run, or returned nil or an error): a DataStore answers a cancelled
    /// update with nil and fails a throwing one. Refused: nothing changes (taken as committed,
    /// a final save would count a lock released that is still stored).
    #[error(
        "[ProfileStore]: host error: DataStore request {0} is an update whose transform did not write (not run, or it returned nil or an error); a value does not answer it"
    )]
    UnwrittenUpdate(u64),
    /// A host error: a transform or an answer for a mock store's operation, which the engine
    /// runs itself and never sends. Nothing changes: an answer is refused, and a transform
    /// returns this text as its error (the DataStore call running it fails).
    #[error(
        "[ProfileStore]: host error: operation {0} is a mock store's, which the engine runs itself; its transform or answer is refused"
    )]
    MockOp(u64),
    /// A host error: a page of versions answering a request that is not a version listing.
    /// Refused: nothing changes.
    #[error(
        "[ProfileStore]: host error: DataStore request {0} is not a version listing; a page of versions does not answer it"
    )]
    WrongAnswer(u64),
    /// A host error: a value answering a version listing, which takes a page of versions or an
    /// error. Refused: nothing changes.
    #[error(
        "[ProfileStore]: host error: DataStore request {0} is a version listing; only a page of versions or an error answers it"
    )]
    PageExpected(u64),
    /// A host error: an input whose monotonic time is not a finite number. Refused: nothing
    /// changes (a NaN time would otherwise compare as due for every timer).
    #[error("[ProfileStore]: host error: the input's monotonic time {0} is not a finite number")]
    NonFiniteTime(f64),
    /// A host error: an input whose monotonic time is before an earlier input's. Refused:
    /// nothing changes (timers and windows count on `os.clock()` never going back).
    #[error(
        "[ProfileStore]: host error: the input's monotonic time {now} is before an earlier input's ({last})"
    )]
    TimeWentBack {
        /// The input's time.
        now: f64,
        /// The latest time an input brought.
        last: f64,
    },
    // The original's errors for arguments of the wrong type, for bindings whose callers can
    // pass any type (the engine's own arguments are typed, so it never returns these itself);
    // a shown value is as the binding shows it (Luau's `tostring`, say).
    /// `SetConstant` with a value that is no number.
    #[error("[ProfileStore]: Invalid value type")]
    InvalidValueType,
    /// A profile key that is no string (`StartSessionAsync`, `MessageAsync`, `GetAsync`).
    #[error("[ProfileStore]: profile_key must be a string")]
    ProfileKeyNotString,
    /// `StartSessionAsync`'s params that are no table.
    #[error("[ProfileStore]: Invalid params")]
    InvalidParams,
    /// `MessageHandler` with a handler that is no function.
    #[error("[ProfileStore]: fn argument is not a function")]
    HandlerNotFunction,
    /// A signal's `Connect` with a listener that is no function (its type named).
    #[error("[ProfileStore]: \"listener\" must be a function; Received {0}")]
    ListenerNotFunction(String),
    /// `VersionQuery` with a sort direction that is no `Enum.SortDirection` (the value shown).
    #[error("[ProfileStore]: Invalid sort_direction ({0})")]
    InvalidSortDirection(String),
    /// `VersionQuery` with a `min_date` that is no number (or `DateTime`) (the value shown).
    #[error("[ProfileStore]: Invalid min_date ({0})")]
    InvalidMinDate(String),
    /// `VersionQuery` with a `max_date` that is no number (or `DateTime`) (the value shown).
    #[error("[ProfileStore]: Invalid max_date ({0})")]
    InvalidMaxDate(String),
    /// `VersionQuery` bounds where the minimum is after the maximum.
    #[error("[ProfileStore]: Invalid min_date ({min}) after max_date ({max})")]
    MinDateAfterMaxDate {
        /// The minimum date, epoch milliseconds.
        min: i64,
        /// The maximum date, epoch milliseconds.
        max: i64,
    },
}

/// The largest store name and profile key ProfileStore accepts, in bytes (spec §2).
pub const MAX_NAME_LEN: usize = 50;

/// Validates a profile key the way `StartSessionAsync`, `MessageAsync` and `GetAsync` do.
pub fn check_profile_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        Err(ApiError::InvalidProfileKey)
    } else if key.len() > MAX_NAME_LEN {
        Err(ApiError::ProfileKeyTooLong)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ApiError;

    /// Every thrown error of spec Appendix A has a variant with the original's text after
    /// `[ProfileStore]: ` (those for arguments of the wrong type are for bindings: the typed
    /// engine never returns them itself), so a binding raises them unchanged. (PS:712, the
    /// save of a non-table `Data`, is a profile's: `Profile::data_error`.)
    #[test]
    fn appendix_a_thrown_texts() {
        let text = |e: ApiError| e.to_string();
        for (error, original) in [
            (
                ApiError::InvalidStoreName,
                r#"Invalid or missing "store_name""#,
            ),
            (
                ApiError::EmptyStoreName,
                "store_name cannot be an empty string",
            ),
            (ApiError::StoreNameTooLong, "store_name is too long"),
            (ApiError::InvalidTemplate, "Invalid template argument"),
            (
                ApiError::InvalidConstantName,
                "Invalid constant name was provided",
            ),
            (ApiError::InvalidValueType, "Invalid value type"),
            (
                ApiError::ProfileKeyNotString,
                "profile_key must be a string",
            ),
            (ApiError::InvalidProfileKey, "Invalid profile_key"),
            (ApiError::ProfileKeyTooLong, "profile_key is too long"),
            (ApiError::InvalidParams, "Invalid params"),
            (ApiError::MessageNotTable, "message must be a table"),
            (
                ApiError::SetAsyncNotViewMode,
                ":SetAsync() can only be used in view mode",
            ),
            (
                ApiError::SaveInViewMode,
                "Can't save profile in view mode; Should you be calling :SetAsync() instead?",
            ),
            (
                ApiError::AlreadyLoaded {
                    store: "S".into(),
                    key: "k".into(),
                },
                "Profile (STORE:S; KEY:k) is already loaded in this session",
            ),
            (
                ApiError::HandlerNotFunction,
                "fn argument is not a function",
            ),
            (
                ApiError::ListenerNotFunction("number".into()),
                r#""listener" must be a function; Received number"#,
            ),
            (
                ApiError::InvalidSortDirection("Up".into()),
                "Invalid sort_direction (Up)",
            ),
            (ApiError::InvalidMinDate("x".into()), "Invalid min_date (x)"),
            (ApiError::InvalidMaxDate("x".into()), "Invalid max_date (x)"),
        ] {
            assert_eq!(text(error), format!("[ProfileStore]: {original}"));
        }
    }
}
