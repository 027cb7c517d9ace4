//! Scratch databases for tests, on both backends (feature `testing`).
//!
//! SQLite gets a fresh file in a temporary directory. PostgreSQL gets a fresh database on the
//! server named by `HEIMWEG_TEST_POSTGRES` (an admin URL; `tests/run.sh` starts a throwaway
//! server and sets it). Without that variable the PostgreSQL cases are skipped, except in CI
//! (`HEIMWEG_E2E=1`), where a missing server is a failure rather than a silent pass.

use crate::{Backend, Store};
use sqlx::{Connection, Executor};
use std::path::PathBuf;

pub struct Scratch {
    url: String,
    dir: Option<PathBuf>,
}

impl Scratch {
    /// A new empty database; `None` if the backend is not available here.
    pub async fn new(backend: Backend, tag: &str) -> Option<Scratch> {
        let unique = format!("{tag}_{}", std::process::id());
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!(
                    "heimweg-{unique}-{:?}",
                    std::thread::current().id()
                ));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("temp dir");
                Some(Scratch {
                    url: format!("sqlite://{}/heimweg.db?mode=rwc", dir.display()),
                    dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let Ok(admin) = std::env::var("HEIMWEG_TEST_POSTGRES") else {
                    assert!(
                        std::env::var_os("HEIMWEG_E2E").is_none(),
                        "HEIMWEG_E2E is set but HEIMWEG_TEST_POSTGRES is not: \
                         run the tests through tests/run.sh"
                    );
                    eprintln!("skipped: HEIMWEG_TEST_POSTGRES is not set");
                    return None;
                };
                let name = format!("t_{}", unique.to_lowercase().replace('-', "_"));
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect to HEIMWEG_TEST_POSTGRES");
                conn.execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
                    .await
                    .expect("drop old scratch database");
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create scratch database");
                let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
                let (server, _) = base.rsplit_once('/').expect("URL with a database");
                Some(Scratch {
                    url: format!("{server}/{name}?{query}"),
                    dir: None,
                })
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's size on disk: the SQLite file and its WAL, or what PostgreSQL reports.
    pub async fn size_bytes(&self) -> u64 {
        match &self.dir {
            Some(dir) => ["heimweg.db", "heimweg.db-wal"]
                .iter()
                .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
                .map(|m| m.len())
                .sum(),
            None => {
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("connect to the scratch database");
                let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(&mut conn)
                    .await
                    .expect("database size");
                size as u64
            }
        }
    }

    pub async fn open(&self) -> Store {
        Store::connect(&self.url).await.expect("open scratch store")
    }

    /// The store with pools of the test's choosing (tiny ones find nested acquisitions).
    pub async fn open_with(&self, options: crate::PoolOptions) -> Store {
        Store::connect_with(&self.url, options)
            .await
            .expect("open scratch store")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Scratch PostgreSQL databases go with the throwaway server at the end of the run.
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Declares one test per backend around `async fn NAME(backend: Backend)`:
/// `NAME::sqlite` and `NAME::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name($crate::Backend::Postgres).await
            }
        }
    )*};
}

/// Read connections taken from a store and held until dropped: what a crowd of slow readers
/// does to everyone else who reads through the same pool.
pub struct HeldReads(#[allow(dead_code)] Vec<sqlx::pool::PoolConnection<sqlx::Any>>);

impl Store {
    /// The sealed link secrets the mail queue holds, one per mail, oldest first.
    pub async fn mail_sealed_secrets_for_tests(&self) -> crate::Result<Vec<Option<String>>> {
        Ok(
            sqlx::query_scalar("SELECT sealed_secret FROM invitation_mails ORDER BY id")
                .fetch_all(&self.reads)
                .await?,
        )
    }

    /// Takes `n` of this store's read connections and holds them.
    pub async fn hold_reads(&self, n: usize) -> HeldReads {
        let mut held = Vec::new();
        for _ in 0..n {
            held.push(self.read().await.expect("a read connection"));
        }
        HeldReads(held)
    }
}
