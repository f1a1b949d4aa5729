//! The daemon's metadata in SQLite (`<data-root>/berth.db`, WAL): image references (tags and digests → image id),
//! the images the engine has committed, and daemon facts such as its id. Every change runs in one transaction, and
//! the writes of an operation happen after its files are complete, so a crash leaves either the old or the new
//! state.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// A state database failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Opening or migrating the database failed.
    #[error("cannot open the state database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// A query failed.
    #[error("the state database failed: {0}")]
    Query(#[from] rusqlite::Error),
}

/// One reference row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefRow {
    /// The normalised reference: `docker.io/library/busybox:latest` or `...@sha256:...`.
    pub name: String,
    /// The image id (`sha256:<config digest>`).
    pub image_id: String,
    /// Whether this is a digest reference (a repo digest) rather than a tag.
    pub is_digest: bool,
    /// When it was set, unix nanoseconds.
    pub created: i64,
}

/// One committed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    /// `sha256:<hex>`.
    pub id: String,
    /// When the engine committed it, unix nanoseconds.
    pub added: i64,
    /// When it was last tagged, unix nanoseconds.
    pub last_tag_time: Option<i64>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    added INTEGER NOT NULL,
    last_tag_time INTEGER
);
CREATE TABLE IF NOT EXISTS refs (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    is_digest INTEGER NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS refs_by_image ON refs(image_id);
";

/// The state database.
#[derive(Debug)]
pub struct Db {
    conn: Mutex<Connection>,
}

impl Db {
    /// Opens (creating) `<dir>/berth.db` in WAL mode and creates the tables.
    pub fn open(dir: &Path) -> Result<Self, DbError> {
        let path = dir.join("berth.db");
        let open = || -> Result<Connection, rusqlite::Error> {
            let conn = Connection::open(&path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.execute_batch(SCHEMA)?;
            Ok(conn)
        };
        let conn = open().map_err(|source| DbError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in one transaction, committed when it returns `Ok`.
    pub fn transaction<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(DbError::from)?;
        let v = f(&tx)?;
        tx.commit().map_err(DbError::from)?;
        Ok(v)
    }

    /// A value from `meta`, set to `init()` the first time.
    pub fn meta_or_init(&self, key: &str, init: impl FnOnce() -> String) -> Result<String, DbError> {
        self.transaction(|tx| {
            let v: Option<String> = tx
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()?;
            match v {
                Some(v) => Ok(v),
                None => {
                    let v = init();
                    tx.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", params![key, v])?;
                    Ok(v)
                }
            }
        })
    }

    /// All committed images.
    pub fn images(&self) -> Result<Vec<ImageRow>, DbError> {
        let conn = self.lock();
        let mut st = conn.prepare("SELECT id, added, last_tag_time FROM images ORDER BY added")?;
        let rows = st.query_map([], |r| {
            Ok(ImageRow {
                id: r.get(0)?,
                added: r.get(1)?,
                last_tag_time: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One committed image.
    pub fn image(&self, id: &str) -> Result<Option<ImageRow>, DbError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT id, added, last_tag_time FROM images WHERE id = ?1",
                [id],
                |r| {
                    Ok(ImageRow {
                        id: r.get(0)?,
                        added: r.get(1)?,
                        last_tag_time: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// All references.
    pub fn refs(&self) -> Result<Vec<RefRow>, DbError> {
        let conn = self.lock();
        let mut st =
            conn.prepare("SELECT name, image_id, is_digest, created FROM refs ORDER BY created, name")?;
        let rows = st.query_map([], row_to_ref)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One reference.
    pub fn reference(&self, name: &str) -> Result<Option<RefRow>, DbError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT name, image_id, is_digest, created FROM refs WHERE name = ?1",
                [name],
                row_to_ref,
            )
            .optional()?)
    }

    /// The references of one image.
    pub fn refs_of(&self, image_id: &str) -> Result<Vec<RefRow>, DbError> {
        let conn = self.lock();
        let mut st = conn.prepare(
            "SELECT name, image_id, is_digest, created FROM refs WHERE image_id = ?1 ORDER BY created, name",
        )?;
        let rows = st.query_map([image_id], row_to_ref)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn row_to_ref(r: &rusqlite::Row<'_>) -> rusqlite::Result<RefRow> {
    Ok(RefRow {
        name: r.get(0)?,
        image_id: r.get(1)?,
        is_digest: r.get::<_, i64>(2)? != 0,
        created: r.get(3)?,
    })
}

/// Writes inside a transaction.
pub mod write {
    use super::*;

    /// Records an image as committed (keeps the first `added` time).
    pub fn add_image(tx: &Transaction<'_>, id: &str, now: i64) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT OR IGNORE INTO images (id, added) VALUES (?1, ?2)",
            params![id, now],
        )?;
        Ok(())
    }

    /// Points `name` at `image_id`; returns the image it pointed at before, if another.
    pub fn set_ref(
        tx: &Transaction<'_>,
        name: &str,
        image_id: &str,
        is_digest: bool,
        now: i64,
    ) -> rusqlite::Result<Option<String>> {
        let old: Option<String> = tx
            .query_row("SELECT image_id FROM refs WHERE name = ?1", [name], |r| r.get(0))
            .optional()?;
        tx.execute(
            "INSERT INTO refs (name, image_id, is_digest, created) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, is_digest = excluded.is_digest,
             created = excluded.created",
            params![name, image_id, i64::from(is_digest), now],
        )?;
        if !is_digest {
            tx.execute(
                "UPDATE images SET last_tag_time = ?2 WHERE id = ?1",
                params![image_id, now],
            )?;
        }
        Ok(old.filter(|o| o != image_id))
    }

    /// Removes a reference; whether it existed.
    pub fn remove_ref(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<bool> {
        Ok(tx.execute("DELETE FROM refs WHERE name = ?1", [name])? > 0)
    }

    /// Removes an image and (by cascade) its references.
    pub fn remove_image(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<bool> {
        Ok(tx.execute("DELETE FROM images WHERE id = ?1", [id])? > 0)
    }

    /// How many references an image has.
    pub fn ref_count(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<i64> {
        tx.query_row("SELECT COUNT(*) FROM refs WHERE image_id = ?1", [id], |r| {
            r.get(0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_follow_images_and_transactions_roll_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        db.transaction::<_, DbError>(|tx| {
            write::add_image(tx, "sha256:a", 1)?;
            write::set_ref(tx, "docker.io/library/busybox:latest", "sha256:a", false, 2)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(db.refs_of("sha256:a").unwrap().len(), 1);
        assert_eq!(db.image("sha256:a").unwrap().unwrap().last_tag_time, Some(2));
        // A failing transaction changes nothing.
        let r: Result<(), DbError> = db.transaction(|tx| {
            write::remove_ref(tx, "docker.io/library/busybox:latest")?;
            Err(DbError::Query(rusqlite::Error::InvalidQuery))
        });
        assert!(r.is_err());
        assert!(
            db.reference("docker.io/library/busybox:latest")
                .unwrap()
                .is_some()
        );
        db.transaction::<_, DbError>(|tx| Ok(write::remove_image(tx, "sha256:a")?))
            .unwrap();
        assert!(db.refs().unwrap().is_empty());
        let id = db.meta_or_init("id", || "X".into()).unwrap();
        assert_eq!(db.meta_or_init("id", || "Y".into()).unwrap(), id);
        drop(db);
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.meta_or_init("id", || "Z".into()).unwrap(), "X");
    }
}
