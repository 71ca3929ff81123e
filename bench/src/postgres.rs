//! The PostgreSQL server of a run: the one `--postgres-url` (or `BENCH_DATABASE_URL`) names,
//! or, when none is given, a private cluster started with `.ci/postgres.sh` (durable:
//! fsync and synchronous commits on, unlike the test clusters) and stopped when the run
//! ends. Latchkey and every peer get a fresh database of their own on it, dropped afterwards.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use sea_orm::ConnectionTrait;

/// The cluster name `.ci/postgres.sh` keeps the bench's private cluster under.
const CLUSTER: &str = "bench";

pub struct Postgres {
    /// An admin connection URL (database `postgres`).
    admin_url: String,
    /// Set when this run started the cluster and must stop it.
    private: bool,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(".ci").join("postgres.sh")
}

impl Postgres {
    /// Uses `url` when given, else starts the private cluster.
    pub fn open(url: Option<&str>) -> anyhow::Result<Self> {
        if let Some(url) = url {
            return Ok(Self { admin_url: url.to_string(), private: false });
        }
        println!("starting a private PostgreSQL cluster (.ci/postgres.sh start {CLUSTER})…");
        let out = Command::new("bash")
            .arg(script())
            .args(["start", CLUSTER])
            .env("PG_DURABLE", "1")
            .output()
            .context("running .ci/postgres.sh")?;
        if !out.status.success() {
            bail!("could not start PostgreSQL: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let admin_url = stdout
            .lines()
            .find_map(|l| l.strip_prefix("export PG_URL="))
            .context(".ci/postgres.sh printed no PG_URL")?
            .to_string();
        Ok(Self { admin_url, private: true })
    }

    /// The server's major version, e.g. "PostgreSQL 15.14".
    pub async fn version(&self) -> anyhow::Result<String> {
        let admin = sea_orm::Database::connect(&self.admin_url).await.context("connecting to PostgreSQL")?;
        let row = admin
            .query_one_raw(sea_orm::Statement::from_string(admin.get_database_backend(), "SHOW server_version"))
            .await?
            .context("no server_version")?;
        let version: String = row.try_get("", "server_version")?;
        admin.close().await?;
        Ok(format!("PostgreSQL {}", version.split_whitespace().next().unwrap_or(&version)))
    }

    /// Creates a fresh database (`{prefix}_{random}`) and returns its name.
    pub async fn create_database(&self, prefix: &str) -> anyhow::Result<Database> {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(&self.admin_url).await.context("connecting to PostgreSQL")?;
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
        admin.close().await?;
        let mut url = url::Url::parse(&self.admin_url)?;
        url.set_path(&format!("/{name}"));
        Ok(Database { url, name })
    }

    pub async fn drop_database(&self, database: &Database) -> anyhow::Result<()> {
        let admin = sea_orm::Database::connect(&self.admin_url).await?;
        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", database.name)).await?;
        admin.close().await?;
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.private {
            let _ = Command::new("bash").arg(script()).args(["stop", CLUSTER]).status();
        }
    }
}

/// One database on the run's server.
#[derive(Debug, Clone)]
pub struct Database {
    url: url::Url,
    pub name: String,
}

impl Database {
    /// `postgres://user@host:port/name`, as Latchkey and Hydra take it.
    pub fn url(&self) -> String {
        self.url.to_string()
    }

    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or("127.0.0.1")
    }

    pub fn port(&self) -> u16 {
        self.url.port().unwrap_or(5432)
    }

    pub fn user(&self) -> &str {
        match self.url.username() {
            "" => "postgres",
            user => user,
        }
    }

    pub fn password(&self) -> &str {
        self.url.password().unwrap_or("")
    }
}
