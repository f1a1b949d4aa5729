//! Container records in the state database: one row per container, the name unique, the record as JSON.

use rusqlite::{OptionalExtension, params};

use super::record::Record;
use crate::db::{Db, DbError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
";

/// A record could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A stored record is not valid JSON of the expected shape.
    #[error("the stored record of container {id} is corrupt: {source}")]
    Corrupt {
        /// The container.
        id: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The name is taken.
    #[error("the name {0:?} is already in use")]
    NameTaken(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

/// Creates the table.
pub fn init(db: &Db) -> Result<(), StoreError> {
    db.transaction::<_, StoreError>(|tx| Ok(tx.execute_batch(SCHEMA)?))
}

/// Every record.
pub fn load_all(db: &Db) -> Result<Vec<Record>, StoreError> {
    db.transaction::<_, StoreError>(|tx| {
        let mut st = tx.prepare("SELECT id, record FROM containers")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row?;
            out.push(serde_json::from_str(&json).map_err(|source| StoreError::Corrupt { id, source })?);
        }
        Ok(out)
    })
}

/// Inserts a new record; a taken name is [`StoreError::NameTaken`].
pub fn insert(db: &Db, rec: &Record) -> Result<(), StoreError> {
    let json = serde_json::to_string(rec).map_err(|source| StoreError::Corrupt {
        id: rec.id.clone(),
        source,
    })?;
    db.transaction::<_, StoreError>(|tx| {
        let taken: Option<String> = tx
            .query_row("SELECT id FROM containers WHERE name = ?1", [&rec.name], |r| {
                r.get(0)
            })
            .optional()?;
        if taken.is_some() {
            return Err(StoreError::NameTaken(rec.name.clone()));
        }
        tx.execute(
            "INSERT INTO containers (id, name, record) VALUES (?1, ?2, ?3)",
            params![rec.id, rec.name, json],
        )?;
        Ok(())
    })
}

/// Replaces a record (its name may change; a taken name is [`StoreError::NameTaken`]).
pub fn update(db: &Db, rec: &Record) -> Result<(), StoreError> {
    let json = serde_json::to_string(rec).map_err(|source| StoreError::Corrupt {
        id: rec.id.clone(),
        source,
    })?;
    db.transaction::<_, StoreError>(|tx| {
        let taken: Option<String> = tx
            .query_row(
                "SELECT id FROM containers WHERE name = ?1 AND id != ?2",
                params![rec.name, rec.id],
                |r| r.get(0),
            )
            .optional()?;
        if taken.is_some() {
            return Err(StoreError::NameTaken(rec.name.clone()));
        }
        tx.execute(
            "UPDATE containers SET name = ?2, record = ?3 WHERE id = ?1",
            params![rec.id, rec.name, json],
        )?;
        Ok(())
    })
}

/// Removes a record.
pub fn remove(db: &Db, id: &str) -> Result<(), StoreError> {
    db.transaction::<_, StoreError>(|tx| {
        tx.execute("DELETE FROM containers WHERE id = ?1", [id])?;
        Ok(())
    })
}
