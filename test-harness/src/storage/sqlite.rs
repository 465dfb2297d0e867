//! [`SqliteStorage`]: the embedded on-disk backend (SQLite, compiled in through `rusqlite`'s
//! `bundled` feature), so a developer's local data persists between runs like Studio with API
//! access (DESIGN.md §4).
//!
//! # Crash safety
//!
//! Every [`Storage::commit`] (one DataStore operation) is a single `BEGIN IMMEDIATE … COMMIT`
//! transaction: the compare-and-swap check, the new head and the version change land together or
//! not at all. The database runs in WAL mode with `synchronous = FULL`, so a commit that returned
//! survives the process being killed (and the machine losing power). A process killed in the
//! middle of a transaction leaves the previous committed state, which SQLite recovers on the next
//! open (`tests/sqlite_kill.rs` checks this by killing a writer process).
//!
//! # Schema (`PRAGMA user_version = 1`)
//!
//! ```sql
//! CREATE TABLE keys (            -- one row per key: its head (DataStoreKeyInfo + value)
//!     store      TEXT    NOT NULL,   -- DataStore name
//!     scope      TEXT    NOT NULL,   -- scope ("global" by default)
//!     key        TEXT    NOT NULL,   -- key name
//!     value      TEXT,               -- JSON text of the value; NULL after RemoveAsync (tombstone)
//!     created_ms INTEGER NOT NULL,   -- CreatedTime, Unix ms
//!     updated_ms INTEGER NOT NULL,   -- UpdatedTime, Unix ms
//!     version    TEXT    NOT NULL,   -- Version of the last write
//!     serial     INTEGER NOT NULL,   -- writes ever made to the key (next version id uses serial+1)
//!     user_ids   TEXT    NOT NULL,   -- JSON array of integers
//!     metadata   TEXT    NOT NULL,   -- JSON object
//!     PRIMARY KEY (store, scope, key)
//! ) WITHOUT ROWID;
//! CREATE TABLE versions (        -- retained versions, one row per slot
//!     store          TEXT    NOT NULL,
//!     scope          TEXT    NOT NULL,
//!     key            TEXT    NOT NULL,
//!     slot           INTEGER NOT NULL,  -- 1, 2, ...; a same-hour write rewrites the latest slot
//!     version        TEXT    NOT NULL,  -- version id the slot holds now
//!     opened_ms      INTEGER NOT NULL,  -- first write into the slot (UTC-hour rule)
//!     created_ms     INTEGER NOT NULL,  -- write the slot holds now (ListVersions CreatedTime)
//!     key_created_ms INTEGER NOT NULL,  -- the key's CreatedTime at that write
//!     value          TEXT,              -- JSON text; NULL for a tombstone
//!     user_ids       TEXT    NOT NULL,  -- JSON array
//!     metadata       TEXT    NOT NULL,  -- JSON object
//!     superseded_ms  INTEGER,           -- when the next slot was opened (retention), or NULL
//!     PRIMARY KEY (store, scope, key, slot)
//! ) WITHOUT ROWID;
//! ```
//!
//! Text columns compare with SQLite's default `BINARY` collation, which is byte order — the same
//! order as Rust's `String`, so listings match [`super::MemoryStorage`] exactly.

use std::path::Path;

use profilestore_core::value::Value;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{
    Commit, Head, KeyPath, Replacement, Storage, StorageError, StoredVersion, VersionWrite,
    check_commit,
};

/// The schema version this code reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keys (
    store TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL,
    value TEXT, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
    version TEXT NOT NULL, serial INTEGER NOT NULL,
    user_ids TEXT NOT NULL, metadata TEXT NOT NULL,
    PRIMARY KEY (store, scope, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS versions (
    store TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL, slot INTEGER NOT NULL,
    version TEXT NOT NULL, opened_ms INTEGER NOT NULL, created_ms INTEGER NOT NULL,
    key_created_ms INTEGER NOT NULL, value TEXT, user_ids TEXT NOT NULL, metadata TEXT NOT NULL,
    superseded_ms INTEGER,
    PRIMARY KEY (store, scope, key, slot)
) WITHOUT ROWID;
";

const HEAD_COLUMNS: &str = "value, created_ms, updated_ms, version, serial, user_ids, metadata";
const VERSION_COLUMNS: &str = "slot, version, opened_ms, created_ms, key_created_ms, value, user_ids, metadata, superseded_ms";

/// Keys, key info and versions in one SQLite file.
#[derive(Debug)]
pub struct SqliteStorage {
    conn: Connection,
}

fn db_error(operation: &str) -> impl Fn(rusqlite::Error) -> StorageError + '_ {
    move |e| StorageError::Database {
        operation: operation.to_string(),
        message: e.to_string(),
    }
}

/// For reads of one key's rows (`path`, or `store/scope/*` for a listing): a column holding a
/// value of the wrong type (text where a time belongs, say) is corrupt data of that key, named
/// as such; anything else is the database failing.
fn read_error<'a>(
    operation: &'a str,
    path: &'a str,
) -> impl Fn(rusqlite::Error) -> StorageError + 'a {
    move |e| match e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StorageError::Corrupt {
            path: path.to_string(),
            problem: e.to_string(),
        },
        e => db_error(operation)(e),
    }
}

/// A name column holding what no write stores there: how to show it (an SQL literal that
/// finds the row) and what is wrong.
struct BadName {
    shown: String,
    what: String,
}

/// Column `i` of a row of key names: its text, or, for what no write stores there (a BLOB,
/// text that is not UTF-8: the schema's `TEXT NOT NULL` makes anything else text), a
/// [`BadName`].
fn name_part(row: &Row, i: usize) -> Result<String, BadName> {
    use rusqlite::types::ValueRef;
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let bad = |shown: String, what: &str| BadName {
        shown,
        what: what.to_string(),
    };
    match row.get_ref(i) {
        Ok(ValueRef::Text(bytes)) => String::from_utf8(bytes.to_vec()).map_err(|_| {
            let shown = format!("CAST(x'{}' AS TEXT)", hex(bytes));
            bad(shown, "holds text that is not UTF-8")
        }),
        Ok(ValueRef::Blob(bytes)) => {
            Err(bad(format!("x'{}'", hex(bytes)), "holds a BLOB, not text"))
        }
        Ok(other) => Err(bad(
            "?".into(),
            &format!("holds {:?}, not text", other.data_type()),
        )),
        Err(e) => Err(bad("?".into(), &e.to_string())),
    }
}

/// What opening does with a database that has no profilestore schema yet.
#[derive(Clone, Copy, PartialEq)]
enum Create {
    /// Create the schema in an empty database (a new file is an empty database).
    IfEmpty,
    /// Refuse: the caller only reads or adds to existing data.
    Never,
}

impl SqliteStorage {
    /// Opens the database at `path`, creating the file and the schema if it does not exist
    /// (or is an empty database). A database holding other tables, or a schema version this
    /// build does not read, is refused before anything in it is changed.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStorage, StorageError> {
        SqliteStorage::open_with(path.as_ref(), Create::IfEmpty)
    }

    /// Opens an existing profilestore database at `path` (for `inspect` and `export`): a
    /// file without the schema is refused, not initialised, and its journal mode is left as
    /// it is.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<SqliteStorage, StorageError> {
        SqliteStorage::open_with(path.as_ref(), Create::Never)
    }

    /// Whether the file at `path` is an SQLite database holding nothing: no schema object and
    /// schema version 0, as an empty file, or a database a run was killed in before it made its
    /// tables (SQLite writes the file's first page as it switches to WAL), reads. Read without
    /// changing it (no file is made: `false` without one); a file that is no SQLite database
    /// is an error.
    pub fn holds_nothing(path: impl AsRef<Path>) -> Result<bool, StorageError> {
        if !path.as_ref().is_file() {
            return Ok(false);
        }
        Ok(schema_state(&connect(path.as_ref())?)? == (0, 0))
    }

    fn open_with(path: &Path, create: Create) -> Result<SqliteStorage, StorageError> {
        SqliteStorage::init(connect(path)?, create)
    }
}

/// The database's schema version and how many schema objects (tables, indexes...) it has.
fn schema_state(conn: &Connection) -> Result<(i64, i64), StorageError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_error("read schema version"))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(db_error("read schema"))?;
    Ok((version, tables))
}

/// A connection to the database file at `path`, opened as [`SqliteStorage::open`] opens it.
fn connect(path: &Path) -> Result<Connection, StorageError> {
    // A path is a file name, never a URI or a special name: `file:a.db?mode=memory` and
    // `:memory:` are files of those names (the bundled SQLite reads every name that begins
    // `file:` as a URI, `:memory:` as a database in memory, and the empty name as a
    // temporary one: each would lose what is written to it). `./` in front keeps a name.
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.is_empty() {
        return Err(StorageError::Database {
            operation: "open".into(),
            message: "an empty path names no database file".into(),
        });
    }
    if path.is_dir() {
        return Err(StorageError::Database {
            operation: format!("open {}", path.display()),
            message: format!("{} is a folder, not a database file", path.display()),
        });
    }
    let name = if bytes.starts_with(b"file:") || bytes.starts_with(b":") {
        Path::new(".").join(path)
    } else {
        path.to_path_buf()
    };
    let conn = Connection::open(&name).map_err(|e| {
        // SQLite says only "unable to open database file": name the usual cause.
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
        let message = match folder {
            Some(f) if f.exists() && !f.is_dir() => {
                format!("{} is a file, not a folder", f.display())
            }
            Some(f) if !f.exists() => format!("the folder {} does not exist", f.display()),
            _ => e.to_string(),
        };
        StorageError::Database {
            operation: format!("open {}", path.display()),
            message,
        }
    })?;
    Ok(conn)
}

impl SqliteStorage {
    /// Opens the database of a connection the caller made (with a hook of its own installed,
    /// say), as [`SqliteStorage::open`] opens a file: the schema created in an empty database,
    /// anything else refused before it is changed.
    pub fn from_connection(conn: Connection) -> Result<SqliteStorage, StorageError> {
        SqliteStorage::init(conn, Create::IfEmpty)
    }

    /// How long a write waits for another process's transaction on the file before it fails
    /// with `database is locked` (5 s unless set).
    pub fn set_busy_timeout(&mut self, wait: std::time::Duration) -> Result<(), StorageError> {
        self.conn
            .busy_timeout(wait)
            .map_err(db_error("set busy timeout"))
    }

    /// A private in-memory SQLite database (for tests of the SQL itself).
    pub fn open_in_memory() -> Result<SqliteStorage, StorageError> {
        SqliteStorage::init(
            Connection::open_in_memory().map_err(db_error("open in-memory database"))?,
            Create::IfEmpty,
        )
    }

    fn init(conn: Connection, create: Create) -> Result<SqliteStorage, StorageError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_error("set busy timeout"))?;
        // Read what the file is before changing anything in it (even its journal mode).
        let (version, tables) = schema_state(&conn)?;
        let refuse = |message: String| {
            Err(StorageError::Database {
                operation: "open".into(),
                message,
            })
        };
        let fresh = match version {
            SCHEMA_VERSION => {
                // Another program may use the same schema version number: the tables must be
                // ours too.
                let (found, expected) = (columns(&conn)?, columns(&schema_database()?)?);
                if found != expected {
                    let named = |tables: &Tables| describe(tables, |c| c.0.clone());
                    if named(&found) != named(&expected) {
                        return refuse(format!(
                            "not a profilestore database: schema version {SCHEMA_VERSION} but \
                             its tables are {} (expected {})",
                            named(&found),
                            named(&expected)
                        ));
                    }
                    // Our names, but other types, constraints or keys: writes that replace a
                    // row would add one instead.
                    let detailed =
                        |tables: &Tables| describe(tables, |c| format!("{} {}", c.0, c.1));
                    return refuse(format!(
                        "not a profilestore database: schema version {SCHEMA_VERSION} and our \
                         column names, but its tables are {} (expected {})",
                        detailed(&found),
                        detailed(&expected)
                    ));
                }
                false
            }
            0 if tables == 0 && create == Create::IfEmpty => true,
            0 if tables == 0 => {
                return refuse("the database holds no profilestore data (no schema)".into());
            }
            0 => {
                return refuse(format!(
                    "not a profilestore database: it has {tables} schema object(s) but no \
                     profilestore schema version"
                ));
            }
            other => {
                return refuse(format!(
                    "database schema version {other} is not supported (this build reads version {SCHEMA_VERSION})"
                ));
            }
        };
        // A writer's database runs in WAL mode (`journal_mode` answers with the mode now in
        // force; in-memory databases say "memory"). A reader leaves the file's mode alone.
        if create == Create::IfEmpty {
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(db_error("enable WAL"))?;
            if mode != "wal" && mode != "memory" {
                return refuse(format!(
                    "cannot switch the database to WAL (journal mode stays {mode:?}); is it read-only?"
                ));
            }
        }
        conn.execute_batch("PRAGMA synchronous = FULL;")
            .map_err(db_error("set synchronous"))?;
        if fresh {
            conn.execute_batch(&format!(
                "BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(db_error("create schema"))?;
        }
        Ok(SqliteStorage { conn })
    }
}

/// Tables by name, each with its columns in declared order: name, and declared type with
/// constraints (`TEXT NOT NULL PK1`).
type Tables = Vec<(String, Vec<(String, String)>)>;

/// The tables in `conn` (SQLite's own, such as `sqlite_stat1` after `ANALYZE`, left out) and
/// their columns.
fn columns(conn: &Connection) -> Result<Tables, StorageError> {
    let read = db_error("read schema");
    let mut tables = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' \
             ESCAPE '\\' ORDER BY name",
        )
        .map_err(&read)?;
    let names: Vec<String> = tables
        .query_map([], |r| r.get(0))
        .map_err(&read)?
        .collect::<Result<_, _>>()
        .map_err(&read)?;
    let mut found = Vec::new();
    for name in names {
        let mut info = conn
            .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid")
            .map_err(&read)?;
        let cols: Vec<(String, String)> = info
            .query_map([&name], |r| {
                let (column, kind): (String, String) = (r.get(0)?, r.get(1)?);
                let (not_null, pk): (bool, i64) = (r.get(2)?, r.get(3)?);
                let mut detail = kind;
                if not_null {
                    detail.push_str(" NOT NULL");
                }
                if pk > 0 {
                    detail.push_str(&format!(" PK{pk}"));
                }
                Ok((column, detail))
            })
            .map_err(&read)?
            .collect::<Result<_, _>>()
            .map_err(&read)?;
        found.push((name, cols));
    }
    Ok(found)
}

/// A private database holding just the schema: what a profilestore file's tables look like.
fn schema_database() -> Result<Connection, StorageError> {
    let conn = Connection::open_in_memory().map_err(db_error("open in-memory database"))?;
    conn.execute_batch(SCHEMA)
        .map_err(db_error("create schema"))?;
    Ok(conn)
}

/// `keys(store, …), versions(…)`, each column shown by `column`.
fn describe(tables: &Tables, column: impl Fn(&(String, String)) -> String) -> String {
    if tables.is_empty() {
        return "none".into();
    }
    tables
        .iter()
        .map(|(name, cols)| {
            let cols: Vec<String> = cols.iter().map(&column).collect();
            format!("{name}({})", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn json_text(v: &Value) -> String {
    v.to_string()
}

fn parse_json(path: &str, column: &str, text: &str) -> Result<Value, StorageError> {
    Value::from_json_text(text).map_err(|e| StorageError::Corrupt {
        path: path.to_string(),
        problem: format!("column {column} is not valid JSON: {e}"),
    })
}

/// A stored value: JSON, and not `null` (a removed key's value is SQL `NULL`, and no write
/// stores nil).
fn parse_value(path: &str, text: &str) -> Result<Value, StorageError> {
    let value = parse_json(path, "value", text)?;
    if value.is_null() {
        return Err(StorageError::Corrupt {
            path: path.to_string(),
            problem: "column value holds JSON null, which no write stores (a removal is SQL NULL)"
                .to_string(),
        });
    }
    Ok(value)
}

/// Stored metadata: a JSON object, as every write stores it.
fn parse_metadata(path: &str, text: &str) -> Result<Value, StorageError> {
    let metadata = parse_json(path, "metadata", text)?;
    if !metadata.is_object() {
        return Err(StorageError::Corrupt {
            path: path.to_string(),
            problem: format!("column metadata is not a JSON object: {metadata}"),
        });
    }
    Ok(metadata)
}

fn parse_user_ids(path: &str, text: &str) -> Result<Vec<i64>, StorageError> {
    serde_json::from_str(text).map_err(|e| StorageError::Corrupt {
        path: path.to_string(),
        problem: format!("column user_ids is not a JSON array of integers: {e}"),
    })
}

fn to_u64(path: &str, column: &str, v: i64) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| StorageError::Corrupt {
        path: path.to_string(),
        problem: format!("column {column} holds the negative number {v}"),
    })
}

fn to_i64(path: &KeyPath, what: &str, v: u64) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::InvalidCommit {
        path: path.clone(),
        problem: format!("{what} {v} does not fit in SQLite's 64-bit integer"),
    })
}

/// Raw head columns, decoded outside rusqlite's row closure so JSON errors name the key.
struct RawHead(Option<String>, i64, i64, String, i64, String, String);

/// The head columns of row `r`, the first at index `from`.
fn raw_head(r: &Row<'_>, from: usize) -> rusqlite::Result<RawHead> {
    Ok(RawHead(
        r.get(from)?,
        r.get(from + 1)?,
        r.get(from + 2)?,
        r.get(from + 3)?,
        r.get(from + 4)?,
        r.get(from + 5)?,
        r.get(from + 6)?,
    ))
}

fn decode_head(path: &str, raw: RawHead) -> Result<Head, StorageError> {
    let RawHead(value, created_ms, updated_ms, version, serial, user_ids, metadata) = raw;
    let value = value.map(|t| parse_value(path, &t)).transpose()?;
    Ok(Head {
        size: value.as_ref().map_or(0, crate::datastore::serialized_len),
        value: value.map(std::sync::Arc::new),
        created_ms,
        updated_ms,
        version: version.into(),
        serial: to_u64(path, "serial", serial)?,
        user_ids: parse_user_ids(path, &user_ids)?,
        metadata: parse_metadata(path, &metadata)?,
    })
}

struct RawVersion(
    i64,
    String,
    i64,
    i64,
    i64,
    Option<String>,
    String,
    String,
    Option<i64>,
);

fn raw_version(r: &Row<'_>) -> rusqlite::Result<RawVersion> {
    Ok(RawVersion(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn decode_version(path: &str, raw: RawVersion) -> Result<StoredVersion, StorageError> {
    let RawVersion(
        slot,
        version,
        opened_ms,
        created_ms,
        key_created_ms,
        value,
        user_ids,
        metadata,
        superseded_ms,
    ) = raw;
    Ok(StoredVersion {
        slot: to_u64(path, "slot", slot)?,
        version: version.into(),
        opened_ms,
        created_ms,
        key_created_ms,
        value: value
            .map(|t| parse_value(path, &t))
            .transpose()?
            .map(std::sync::Arc::new),
        user_ids: parse_user_ids(path, &user_ids)?,
        metadata: parse_metadata(path, &metadata)?,
        superseded_ms,
    })
}

fn read_head(conn: &Connection, path: &KeyPath) -> Result<Option<Head>, StorageError> {
    let raw = conn
        .query_row(
            &format!(
                "SELECT {HEAD_COLUMNS} FROM keys WHERE store = ?1 AND scope = ?2 AND key = ?3"
            ),
            params![
                path.store().as_str(),
                path.scope().as_str(),
                path.key().as_str()
            ],
            |r| raw_head(r, 0),
        )
        .optional()
        .map_err(read_error("read key", &path.to_string()))?;
    raw.map(|raw| decode_head(&path.to_string(), raw))
        .transpose()
}

fn read_latest(conn: &Connection, path: &KeyPath) -> Result<Option<StoredVersion>, StorageError> {
    let raw = conn
        .query_row(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM versions WHERE store = ?1 AND scope = ?2 AND key = ?3 \
                 ORDER BY slot DESC LIMIT 1"
            ),
            params![path.store().as_str(), path.scope().as_str(), path.key().as_str()],
            raw_version,
        )
        .optional()
        .map_err(read_error("read latest version", &path.to_string()))?;
    raw.map(|raw| decode_version(&path.to_string(), raw))
        .transpose()
}

fn write_head(conn: &Connection, path: &KeyPath, head: &Head) -> Result<(), StorageError> {
    conn.execute(
        &format!("INSERT OR REPLACE INTO keys (store, scope, key, {HEAD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            path.store().as_str(),
            path.scope().as_str(),
            path.key().as_str(),
            head.value.as_deref().map(json_text),
            head.created_ms,
            head.updated_ms,
            head.version.as_str(),
            to_i64(path, "serial", head.serial)?,
            serde_json::to_string(&head.user_ids).unwrap_or_else(|_| "[]".into()),
            json_text(&head.metadata),
        ],
    )
    .map_err(db_error("write key"))?;
    Ok(())
}

fn write_version(conn: &Connection, path: &KeyPath, v: &StoredVersion) -> Result<(), StorageError> {
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO versions (store, scope, key, {VERSION_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ),
        params![
            path.store().as_str(),
            path.scope().as_str(),
            path.key().as_str(),
            to_i64(path, "slot", v.slot)?,
            v.version.as_str(),
            v.opened_ms,
            v.created_ms,
            v.key_created_ms,
            v.value.as_deref().map(json_text),
            serde_json::to_string(&v.user_ids).unwrap_or_else(|_| "[]".into()),
            json_text(&v.metadata),
            v.superseded_ms,
        ],
    )
    .map_err(db_error("write version"))?;
    Ok(())
}

impl Storage for SqliteStorage {
    fn head(&mut self, path: &KeyPath) -> Result<Option<Head>, StorageError> {
        read_head(&self.conn, path)
    }

    fn latest_version(&mut self, path: &KeyPath) -> Result<Option<StoredVersion>, StorageError> {
        read_latest(&self.conn, path)
    }

    fn serial(&mut self, path: &KeyPath) -> Result<Option<u64>, StorageError> {
        let shown = path.to_string();
        let serial: Option<i64> = self
            .conn
            .query_row(
                "SELECT serial FROM keys WHERE store = ?1 AND scope = ?2 AND key = ?3",
                params![
                    path.store().as_str(),
                    path.scope().as_str(),
                    path.key().as_str()
                ],
                |row| row.get(0),
            )
            .optional()
            .map_err(read_error("read serial", &shown))?;
        serial.map(|v| to_u64(&shown, "serial", v)).transpose()
    }

    fn versions(&mut self, path: &KeyPath) -> Result<Vec<StoredVersion>, StorageError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM versions WHERE store = ?1 AND scope = ?2 AND key = ?3 ORDER BY slot"
            ))
            .map_err(db_error("list versions"))?;
        let raws = stmt
            .query_map(
                params![
                    path.store().as_str(),
                    path.scope().as_str(),
                    path.key().as_str()
                ],
                raw_version,
            )
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(read_error("list versions", &path.to_string()))?;
        let name = path.to_string();
        raws.into_iter()
            .map(|raw| decode_version(&name, raw))
            .collect()
    }

    fn commit(&mut self, path: &KeyPath, commit: Commit) -> Result<(), StorageError> {
        let commit = &commit;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_error("begin write"))?;
        let head = read_head(&tx, path)?;
        let latest = read_latest(&tx, path)?;
        check_commit(path, head.as_ref(), latest.as_ref(), commit)?;
        write_head(&tx, path, &commit.head)?;
        match &commit.version {
            VersionWrite::Append(v) => {
                if let Some(previous) = &latest {
                    tx.execute(
                        "UPDATE versions SET superseded_ms = ?5 WHERE store = ?1 AND scope = ?2 AND key = ?3 AND slot = ?4",
                        params![path.store().as_str(), path.scope().as_str(), path.key().as_str(), to_i64(path, "slot", previous.slot)?, v.created_ms],
                    )
                    .map_err(db_error("supersede version"))?;
                }
                write_version(&tx, path, v)?;
            }
            VersionWrite::ReplaceLatest(v) => write_version(&tx, path, v)?,
        }
        tx.commit().map_err(db_error("commit write"))
    }

    fn list_keys(
        &mut self,
        store: &str,
        scope: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Head)>, StorageError> {
        // The prefix compared as bytes (no LIKE: `%` and `_` are plain characters); the empty
        // prefix apart, as `substr` of a zero-length blob is NULL and would leave out a key
        // named "".
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT key, {HEAD_COLUMNS} FROM keys WHERE store = ?1 AND scope = ?2 \
                 AND (?3 = '' OR substr(CAST(key AS BLOB), 1, length(CAST(?3 AS BLOB))) \
                                 = CAST(?3 AS BLOB)) \
                 AND (?4 IS NULL OR key > ?4) ORDER BY key LIMIT ?5"
            ))
            .map_err(db_error("list keys"))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![store, scope, prefix, after, limit], |r| {
                let key = name_part(r, 0);
                // Read apart from the row's name, so that a column of the wrong type is
                // named with its key.
                let raw = raw_head(r, 1);
                Ok((key, raw))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(read_error("list keys", &format!("{store}/{scope}/*")))?;
        rows.into_iter()
            .map(|(key, raw)| {
                // Written by another program: named as it is stored.
                let key = key.map_err(|bad| StorageError::Corrupt {
                    path: format!("{store}/{scope}/{}", bad.shown),
                    problem: format!("column key {}", bad.what),
                })?;
                let path = KeyPath::new(store, scope, &key).to_string();
                let raw = raw.map_err(read_error("list keys", &path))?;
                let head = decode_head(&path, raw)?;
                Ok((key, head))
            })
            .collect()
    }

    fn paths(&mut self) -> Result<Vec<KeyPath>, StorageError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT store, scope, key FROM keys ORDER BY store, scope, key")
            .map_err(db_error("list paths"))?;
        let mut rows = stmt.query([]).map_err(db_error("list paths"))?;
        let mut paths = Vec::new();
        while let Some(row) = rows.next().map_err(db_error("list paths"))? {
            let parts = [0, 1, 2].map(|i| name_part(row, i));
            match parts {
                [Ok(store), Ok(scope), Ok(key)] => paths.push(KeyPath::new(&store, &scope, &key)),
                // Written by another program: named with each part as it is stored.
                _ => {
                    let shown: Vec<&str> = parts
                        .iter()
                        .map(|p| match p {
                            Ok(text) => text.as_str(),
                            Err(bad) => bad.shown.as_str(),
                        })
                        .collect();
                    let problem = ["store", "scope", "key"]
                        .iter()
                        .zip(&parts)
                        .find_map(|(column, p)| {
                            p.as_ref()
                                .err()
                                .map(|bad| format!("column {column} {}", bad.what))
                        })
                        .unwrap_or_default();
                    return Err(StorageError::Corrupt {
                        path: shown.join("/"),
                        problem,
                    });
                }
            }
        }
        Ok(paths)
    }

    fn begin_read(&mut self) -> Result<(), StorageError> {
        // Deferred: the snapshot is taken at the first read and held until the end.
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(db_error("begin a read"))
    }

    fn end_read(&mut self) -> Result<(), StorageError> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(db_error("end a read"))
    }

    fn begin_write(&mut self) -> Result<(), StorageError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(db_error("begin import"))
    }

    fn end_write(&mut self, keep: bool) -> Result<(), StorageError> {
        if keep {
            let Err(e) = self.conn.execute_batch("COMMIT") else {
                return Ok(());
            };
            // A commit that failed leaves the transaction open: undone, so that the
            // connection takes the next write.
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(db_error("commit import")(e));
        }
        self.conn
            .execute_batch("ROLLBACK")
            .map_err(db_error("undo import"))
    }

    fn replace_keys(&mut self, keys: &[Replacement]) -> Result<(), StorageError> {
        // Inside `begin_write`'s transaction, a savepoint: the replacement lands whole or not
        // at all either way.
        if self.conn.is_autocommit() {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_error("begin import"))?;
            replace_all(&tx, keys)?;
            tx.commit().map_err(db_error("commit import"))
        } else {
            let savepoint = self.conn.savepoint().map_err(db_error("begin import"))?;
            replace_all(&savepoint, keys)?;
            savepoint.commit().map_err(db_error("commit import"))
        }
    }
}

/// Writes each key's replacement through `conn` (a transaction or savepoint the caller ends).
fn replace_all(conn: &Connection, keys: &[Replacement]) -> Result<(), StorageError> {
    for Replacement {
        path,
        head,
        versions,
    } in keys
    {
        conn.execute(
            "DELETE FROM versions WHERE store = ?1 AND scope = ?2 AND key = ?3",
            params![
                path.store().as_str(),
                path.scope().as_str(),
                path.key().as_str()
            ],
        )
        .map_err(db_error("clear versions"))?;
        write_head(conn, path, head)?;
        for v in versions {
            write_version(conn, path, v)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_storage_meets_the_storage_contract() {
        crate::storage::contract::run(&mut SqliteStorage::open_in_memory().unwrap());
    }

    #[test]
    fn sqlite_file_meets_the_storage_contract_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store.db");
        let mut first = SqliteStorage::open(&file).unwrap();
        crate::storage::contract::run(&mut first);
        let paths = first.paths().unwrap();
        let p = KeyPath::new("S", "global", "k");
        let (head, versions) = (first.head(&p).unwrap(), first.versions(&p).unwrap());
        drop(first);
        let mut again = SqliteStorage::open(&file).unwrap();
        assert_eq!(again.paths().unwrap(), paths);
        assert_eq!(again.head(&p).unwrap(), head);
        assert_eq!(again.versions(&p).unwrap(), versions);
    }

    /// A read between `begin_read` and `end_read` sees one state of the file: a write another
    /// connection commits meanwhile (a simulation writing while `export` or `inspect` reads)
    /// shows only after the read ends, so a key's head and its versions always agree.
    #[test]
    fn a_consistent_read_does_not_see_writes_landing_meanwhile() {
        use crate::datastore::{DataStoreService, ServerId, StoreName};
        use profilestore_core::value::json;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store.db");
        let mut writer =
            DataStoreService::new(0).with_storage(Box::new(SqliteStorage::open(&file).unwrap()));
        let mut set = |t: f64, n: i64| {
            let (server, store) = (ServerId(0), StoreName::new("S"));
            writer
                .set_async(t, server, &store, "k", json!(n), Default::default())
                .unwrap();
        };
        set(0.0, 1);
        let mut reader = SqliteStorage::open_existing(&file).unwrap();
        let p = KeyPath::new("S", "global", "k");
        let (head, versions) = crate::storage::read_consistently(&mut reader, |r| {
            let head = r.head(&p)?.unwrap();
            // Another hour's write: a new head and a new version slot.
            set(7200.0, 2);
            Ok::<_, StorageError>((head, r.versions(&p)?))
        })
        .unwrap();
        assert_eq!(head.value.as_deref(), Some(&json!(1)));
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].version, head.version);
        // Once the read ended, the write shows.
        assert_eq!(
            reader.head(&p).unwrap().unwrap().value.as_deref(),
            Some(&json!(2))
        );
        assert_eq!(reader.versions(&p).unwrap().len(), 2);
        // Without it, the same interleaving mixes two states.
        let head = reader.head(&p).unwrap().unwrap();
        set(14_400.0, 3);
        let versions = reader.versions(&p).unwrap();
        assert_ne!(versions.last().unwrap().version, head.version);
    }

    /// An import reads each key's serial and then writes the key numbered after it, in one
    /// transaction (`write_consistently`): a simulation writing the file meanwhile waits (here
    /// it gives up), so the import never numbers its write after a serial already superseded
    /// and never hands out the version id another write took. It used to read outside the
    /// transaction: the simulation's write landed between the two.
    #[test]
    fn an_import_keeps_other_writers_out_between_its_reads_and_its_write() {
        use crate::datastore::{DataStoreService, ServerId, StoreName};
        use crate::storage::{HeadMeta, Storage};
        use profilestore_core::value::json;

        /// The importing connection, letting `during` write through another one at the
        /// import's first read of a head, keeping what came of it.
        struct Interleaved<'a> {
            inner: SqliteStorage,
            during: Option<Box<dyn FnMut() -> String + Send + 'a>>,
            came_of_it: Option<String>,
        }
        impl Storage for Interleaved<'_> {
            fn head(&mut self, path: &KeyPath) -> Result<Option<Head>, StorageError> {
                let head = self.inner.head(path);
                if let Some(mut during) = self.during.take() {
                    self.came_of_it = Some(during());
                }
                head
            }
            fn head_meta(&mut self, path: &KeyPath) -> Result<Option<HeadMeta>, StorageError> {
                self.inner.head_meta(path)
            }
            fn latest_version(
                &mut self,
                path: &KeyPath,
            ) -> Result<Option<StoredVersion>, StorageError> {
                self.inner.latest_version(path)
            }
            fn versions(&mut self, path: &KeyPath) -> Result<Vec<StoredVersion>, StorageError> {
                self.inner.versions(path)
            }
            fn commit(&mut self, path: &KeyPath, commit: Commit) -> Result<(), StorageError> {
                self.inner.commit(path, commit)
            }
            fn list_keys(
                &mut self,
                store: &str,
                scope: &str,
                prefix: &str,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<(String, Head)>, StorageError> {
                self.inner.list_keys(store, scope, prefix, after, limit)
            }
            fn paths(&mut self) -> Result<Vec<KeyPath>, StorageError> {
                self.inner.paths()
            }
            fn begin_write(&mut self) -> Result<(), StorageError> {
                self.inner.begin_write()
            }
            fn end_write(&mut self, keep: bool) -> Result<(), StorageError> {
                self.inner.end_write(keep)
            }
            fn replace_keys(&mut self, keys: &[Replacement]) -> Result<(), StorageError> {
                self.inner.replace_keys(keys)
            }
        }

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store.db");
        let mut simulation = SqliteStorage::open(&file).unwrap();
        simulation
            .set_busy_timeout(std::time::Duration::from_millis(50))
            .unwrap();
        let mut simulation = DataStoreService::new(0).with_storage(Box::new(simulation));
        let (server, store) = (ServerId(0), StoreName::new("S"));
        simulation
            .set_async(0.0, server, &store, "k", json!(1), Default::default())
            .unwrap();
        let p = KeyPath::new("S", "global", "k");
        let mut exported = SqliteStorage::open_existing(&file).unwrap();
        let document = crate::export::export(&mut exported).unwrap();
        drop(exported);
        // The simulation writes the key once more (serial 2) before the import, and tries
        // again while the import runs.
        simulation
            .set_async(1.0, server, &store, "k", json!(2), Default::default())
            .unwrap();
        let mut importer = Interleaved {
            inner: SqliteStorage::open_existing(&file).unwrap(),
            during: Some(Box::new(|| {
                let written =
                    simulation.set_async(2.0, server, &store, "k", json!(3), Default::default());
                written.unwrap_err().to_string()
            })),
            came_of_it: None,
        };
        let report = crate::export::import_document(&mut importer, &document).unwrap();
        assert_eq!(report.renumbered, vec![p.clone()]);
        let refused = importer
            .came_of_it
            .take()
            .expect("the simulation wrote during the import");
        drop(importer);
        assert!(refused.contains("database is locked"), "{refused}");
        // Numbered after the simulation's last write, the only one that landed.
        let mut after = SqliteStorage::open_existing(&file).unwrap();
        let head = after.head(&p).unwrap().unwrap();
        assert_eq!(head.serial, 3);
        assert_eq!(head.value.as_deref(), Some(&json!(1)));
    }

    /// A step `write_consistently` runs that fails is undone whole, its replacement included.
    #[test]
    fn a_failed_consistent_write_is_undone() {
        let mut db = SqliteStorage::open_in_memory().unwrap();
        let p = KeyPath::new("S", "global", "k");
        let failed = crate::storage::write_consistently(&mut db, |db| {
            db.replace_keys(&[Replacement {
                path: p.clone(),
                head: Head {
                    size: 1,
                    value: Some(std::sync::Arc::new(Value::from(1))),
                    created_ms: 0,
                    updated_ms: 0,
                    version: "v".into(),
                    serial: 1,
                    user_ids: vec![],
                    metadata: Value::Null,
                },
                versions: vec![],
            }])?;
            Err::<(), _>(StorageError::Conflict { path: p.clone() })
        });
        assert_eq!(failed, Err(StorageError::Conflict { path: p.clone() }));
        assert_eq!(db.head(&p).unwrap(), None);
        assert_eq!(db.paths().unwrap(), vec![]);
    }

    /// A value nested deeper than `serde_json`'s 128-level parsing limit (but within
    /// `MAX_DEPTH`) is stored and reads back, also after the file is reopened (it used to read
    /// back as corrupt data).
    #[test]
    fn a_deeply_nested_value_reads_back() {
        use crate::datastore::{DataStoreService, ServerId, StoreName};
        let mut v = Value::from(1);
        for _ in 0..500 {
            v = Value::from(vec![v]);
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("deep.db");
        let store = StoreName::new("S");
        let mut ds =
            DataStoreService::new(0).with_storage(Box::new(SqliteStorage::open(&file).unwrap()));
        ds.set_async(1.0, ServerId(1), &store, "k", v.clone(), Default::default())
            .unwrap();
        drop(ds);
        let mut ds =
            DataStoreService::new(0).with_storage(Box::new(SqliteStorage::open(&file).unwrap()));
        let read = ds
            .get_async(10.0, ServerId(2), &store, "k", Default::default())
            .unwrap();
        assert_eq!(read.value, Some(v));
    }

    /// The empty path, which SQLite would read as a temporary database that vanishes with the
    /// connection, is refused by name.
    #[test]
    fn an_empty_path_is_refused() {
        for refused in [SqliteStorage::open(""), SqliteStorage::open_existing("")] {
            assert_eq!(
                refused.err().map(|e| e.to_string()),
                Some("database error during open: an empty path names no database file".into())
            );
        }
    }

    /// A database file `name` in `dir`, made by `sql` (another program's, or a future one).
    fn database_made_by(dir: &tempfile::TempDir, name: &str, sql: &str) -> std::path::PathBuf {
        let file = dir.path().join(name);
        Connection::open(&file).unwrap().execute_batch(sql).unwrap();
        file
    }

    #[test]
    fn unknown_schema_version_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = database_made_by(&dir, "future.db", "PRAGMA user_version = 9;");
        let err = SqliteStorage::open(&file).unwrap_err();
        assert_eq!(
            err.to_string(),
            "database error during open: database schema version 9 is not supported (this build reads version 1)"
        );
        assert_eq!(
            journal_mode(&file),
            "delete",
            "refused before its journal mode changed"
        );
    }

    fn journal_mode(file: &Path) -> String {
        Connection::open(file)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap()
    }

    /// Someone else's database is refused untouched; a reader never initialises a file.
    #[test]
    fn a_foreign_or_empty_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let other = database_made_by(&dir, "other.db", "CREATE TABLE keys (id INTEGER);");
        let err = SqliteStorage::open(&other).unwrap_err();
        assert_eq!(
            err.to_string(),
            "database error during open: not a profilestore database: it has 1 schema object(s) but no profilestore schema version"
        );
        assert_eq!(journal_mode(&other), "delete");
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        let err = SqliteStorage::open_existing(&empty).unwrap_err();
        assert_eq!(
            err.to_string(),
            "database error during open: the database holds no profilestore data (no schema)"
        );
        assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0, "still empty");
        // The writer's open creates it; then a reader accepts it.
        SqliteStorage::open(&empty).unwrap();
        SqliteStorage::open_existing(&empty).unwrap();
        assert_eq!(journal_mode(&empty), "wal");
        // A reader opens one of ours in another journal mode without changing it.
        Connection::open(&empty)
            .unwrap()
            .query_row("PRAGMA journal_mode = DELETE", [], |r| {
                r.get::<_, String>(0)
            })
            .unwrap();
        SqliteStorage::open_existing(&empty).unwrap();
        assert_eq!(journal_mode(&empty), "delete");
    }

    /// Another program's database that happens to use schema version 1 is not ours: refused,
    /// by both opens, before anything in it changes.
    #[test]
    fn a_foreign_database_with_our_schema_version_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let app = database_made_by(
            &dir,
            "app.db",
            "CREATE TABLE t (x); PRAGMA user_version = 1;",
        );
        let expected = "database error during open: not a profilestore database: schema \
                        version 1 but its tables are t(x) (expected keys(store, scope, key, \
                        value, created_ms, updated_ms, version, serial, user_ids, metadata), \
                        versions(store, scope, key, slot, version, opened_ms, created_ms, \
                        key_created_ms, value, user_ids, metadata, superseded_ms))";
        assert_eq!(SqliteStorage::open(&app).unwrap_err().to_string(), expected);
        assert_eq!(
            SqliteStorage::open_existing(&app).unwrap_err().to_string(),
            expected
        );
        assert_eq!(journal_mode(&app), "delete");
        // Our table and column names without our primary keys (a replacing write would add a
        // row): refused too, naming what differs.
        let names_only = database_made_by(
            &dir,
            "names.db",
            "CREATE TABLE keys (store, scope, key, value, created_ms, updated_ms, version, \
             serial, user_ids, metadata); CREATE TABLE versions (store, scope, key, slot, \
             version, opened_ms, created_ms, key_created_ms, value, user_ids, metadata, \
             superseded_ms); PRAGMA user_version = 1;",
        );
        let err = SqliteStorage::open(&names_only).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "database error during open: not a profilestore database: schema version 1 \
                 and our column names, but its tables are keys(store , scope , key , value , "
            ) && err.contains("(expected keys(store TEXT NOT NULL PK1, scope TEXT NOT NULL PK2, "),
            "{err}"
        );
        assert_eq!(journal_mode(&names_only), "delete");
        // Ours, reopened, passes the same check, also with SQLite's own statistics tables.
        let ours = dir.path().join("ours.db");
        SqliteStorage::open(&ours).unwrap();
        SqliteStorage::open_existing(&ours).unwrap();
        Connection::open(&ours)
            .unwrap()
            .execute_batch("ANALYZE;")
            .unwrap();
        SqliteStorage::open_existing(&ours).unwrap();
    }

    #[test]
    fn corrupt_json_names_the_key_and_column() {
        let mut s = SqliteStorage::open_in_memory().unwrap();
        s.conn
            .execute(
                "INSERT INTO keys VALUES ('S', 'global', 'k', '{oops', 0, 0, 'v', 1, '[]', '{}')",
                [],
            )
            .unwrap();
        let err = s.head(&KeyPath::new("S", "global", "k")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("corrupt stored data for S/global/k: column value is not valid JSON"),
            "{err}"
        );
        // JSON no write stores: a null value, metadata that is not an object (in the head and
        // in a version).
        s.conn
            .execute_batch(
                "INSERT INTO keys VALUES ('S', 'global', 'n', 'null', 0, 0, 'v', 1, '[]', '{}');
                 INSERT INTO keys VALUES ('S', 'global', 'm', '1', 0, 0, 'v', 1, '[]', '5');
                 INSERT INTO versions VALUES ('S', 'global', 'm', 1, 'v', 0, 0, 0, '1', '[]', '5', NULL);",
            )
            .unwrap();
        let problem = |err: StorageError| err.to_string();
        assert_eq!(
            problem(s.head(&KeyPath::new("S", "global", "n")).unwrap_err()),
            "corrupt stored data for S/global/n: column value holds JSON null, which no write \
             stores (a removal is SQL NULL)"
        );
        let m = KeyPath::new("S", "global", "m");
        let not_an_object =
            "corrupt stored data for S/global/m: column metadata is not a JSON object: 5";
        assert_eq!(problem(s.head(&m).unwrap_err()), not_an_object);
        assert_eq!(problem(s.versions(&m).unwrap_err()), not_an_object);
    }

    /// A column holding the wrong type (text for a time, written by another program) is
    /// corrupt data of its key, named as such, in every read of the key, the listing of keys
    /// included (it used to name the store only, `S/global/*`).
    #[test]
    fn a_column_of_the_wrong_type_names_the_key() {
        let mut s = SqliteStorage::open_in_memory().unwrap();
        s.conn
            .execute_batch(
                "INSERT INTO keys VALUES ('S', 'global', 'k', '1', 'x', 0, 'v', 1, '[]', '{}');
                 INSERT INTO versions VALUES ('S', 'global', 'k', 1, 'v', 'x', 0, 0, '1', '[]', '{}', NULL);",
            )
            .unwrap();
        let p = KeyPath::new("S", "global", "k");
        let errors = [
            s.head(&p).unwrap_err(),
            s.latest_version(&p).unwrap_err(),
            s.versions(&p).unwrap_err(),
            s.list_keys("S", "global", "", None, 10).unwrap_err(),
        ];
        for err in errors {
            assert!(matches!(err, StorageError::Corrupt { .. }), "{err:?}");
            assert!(
                err.to_string()
                    .starts_with("corrupt stored data for S/global/k: "),
                "{err}"
            );
        }
    }

    /// A key name no write stores (a BLOB, text that is not UTF-8: written by another program)
    /// is corrupt data named by how it is stored, in the listing of every key (export,
    /// `inspect`), not a bare column error.
    #[test]
    fn a_key_name_that_is_not_text_is_named_in_the_listing() {
        let mut s = SqliteStorage::open_in_memory().unwrap();
        let row = |name: &str| {
            format!(
                "INSERT INTO keys VALUES ('S', 'global', {name}, '1', 0, 0, 'v', 1, '[]', '{{}}');"
            )
        };
        s.conn.execute_batch(&row("'fine'")).unwrap();
        assert_eq!(s.paths().unwrap(), [KeyPath::new("S", "global", "fine")]);
        s.conn.execute_batch(&row("x'6b01'")).unwrap();
        assert_eq!(
            s.paths().unwrap_err().to_string(),
            "corrupt stored data for S/global/x'6b01': column key holds a BLOB, not text"
        );
        // The prefix listing (`ListKeysAsync`) names it too.
        assert_eq!(
            s.list_keys("S", "global", "", None, 10)
                .unwrap_err()
                .to_string(),
            "corrupt stored data for S/global/x'6b01': column key holds a BLOB, not text"
        );
        // Each is shown as an SQL literal that finds its row.
        let deleted = "DELETE FROM keys WHERE key = x'6b01'";
        assert_eq!(s.conn.execute(deleted, []).unwrap(), 1);
        s.conn.execute_batch(&row("CAST(x'ff' AS TEXT)")).unwrap();
        assert_eq!(
            s.paths().unwrap_err().to_string(),
            "corrupt stored data for S/global/CAST(x'ff' AS TEXT): column key holds text that \
             is not UTF-8"
        );
        let deleted = "DELETE FROM keys WHERE key = CAST(x'ff' AS TEXT)";
        assert_eq!(s.conn.execute(deleted, []).unwrap(), 1);
        assert_eq!(s.paths().unwrap(), [KeyPath::new("S", "global", "fine")]);
    }

    /// A stored value nested deeper than any write can store (written by another program) is
    /// corrupt data with the reason, not a stack overflow when something later walks it.
    #[test]
    fn a_value_nested_past_the_depth_limit_is_corrupt_data() {
        let mut s = SqliteStorage::open_in_memory().unwrap();
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        s.conn
            .execute(
                "INSERT INTO keys VALUES ('S', 'global', 'k', ?1, 0, 0, 'v', 1, '[]', '{}')",
                [&deep],
            )
            .unwrap();
        let err = s.head(&KeyPath::new("S", "global", "k")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "corrupt stored data for S/global/k: column value is not valid JSON: JSON text nests \
             deeper than 512 levels (byte 512 opens level 513)"
        );
    }
}
