//! The `networks` table: one row per network, its settings as JSON.

use rusqlite::params;

use super::{NetRecord, NetworkError};
use crate::db::Db;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);
";

pub(super) fn init(db: &Db) -> Result<(), NetworkError> {
    db.transaction::<_, NetworkError>(|tx| Ok(tx.execute_batch(SCHEMA)?))
}

pub(super) fn load(db: &Db) -> Result<Vec<NetRecord>, NetworkError> {
    db.transaction::<_, NetworkError>(|tx| {
        let mut st = tx.prepare("SELECT id, doc FROM networks")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, doc) = row?;
            match serde_json::from_str::<NetRecord>(&doc) {
                Ok(n) => out.push(n),
                Err(e) => tracing::warn!(network = %id, error = %e, "skipping an unreadable network record"),
            }
        }
        Ok(out)
    })
}

pub(super) fn save(db: &Db, rec: &NetRecord) -> Result<(), NetworkError> {
    let doc = serde_json::to_string(rec).map_err(|e| NetworkError::System(e.to_string()))?;
    db.transaction::<_, NetworkError>(|tx| {
        tx.execute(
            "INSERT INTO networks (id, name, doc) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET name = excluded.name, doc = excluded.doc",
            params![rec.id, rec.name, doc],
        )?;
        Ok(())
    })
}

pub(super) fn delete(db: &Db, id: &str) -> Result<(), NetworkError> {
    db.transaction::<_, NetworkError>(|tx| {
        tx.execute("DELETE FROM networks WHERE id = ?1", params![id])?;
        Ok(())
    })
}
