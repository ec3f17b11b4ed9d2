//! The write transaction `apply` runs in: a sqlx transaction on one pooled connection, behind
//! SeaORM's [`ConnectionTrait`] so the same SQL runs on PostgreSQL and SQLite.
//!
//! Why not SeaORM's own transaction: on PostgreSQL the bulk of a batch's new rows go in with
//! `COPY … FROM STDIN`, which needs the sqlx connection, in the same transaction as the rest of the
//! batch (no statement with tens of thousands of parameters to parse, plan and bind). And SeaORM
//! copies every bound value of every statement before binding it; here the values are moved into
//! the query, which matters for multi-row inserts with 32,000 values each.

use async_trait::async_trait;
use sea_orm::sqlx::postgres::PgArguments;
use sea_orm::sqlx::sqlite::SqliteArguments;
use sea_orm::sqlx::{self, Postgres, Sqlite};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement, Value,
    Values,
};
use tokio::sync::Mutex;

use crate::sql::insert_rows;
use crate::store::SqlMetadataStore;

/// One `apply`'s transaction (rolled back when dropped uncommitted).
pub(crate) enum Txn {
    Pg(Mutex<sqlx::Transaction<'static, Postgres>>),
    Sqlite(Mutex<sqlx::Transaction<'static, Sqlite>>),
}

fn exec_err(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(e))
}

fn query_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(e))
}

/// Failing to get a connection or to begin is the database being unavailable.
fn conn_err(e: sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(e))
}

impl Txn {
    /// Begins a write transaction on `store`'s database.
    pub(crate) async fn begin(store: &SqlMetadataStore) -> Result<Txn, DbErr> {
        let db = store.db();
        Ok(match db.get_database_backend() {
            DatabaseBackend::Postgres => Txn::Pg(Mutex::new(
                db.get_postgres_connection_pool()
                    .begin()
                    .await
                    .map_err(conn_err)?,
            )),
            _ => Txn::Sqlite(Mutex::new(
                db.get_sqlite_connection_pool()
                    .begin()
                    .await
                    .map_err(conn_err)?,
            )),
        })
    }

    /// Commits.
    pub(crate) async fn commit(self) -> Result<(), DbErr> {
        match self {
            Txn::Pg(t) => t.into_inner().commit().await.map_err(exec_err),
            Txn::Sqlite(t) => t.into_inner().commit().await.map_err(exec_err),
        }
    }

    /// Writes `rows` (each `ncols` values, in `columns` order) into `table` as plain inserts: with
    /// `COPY` on PostgreSQL, with multi-row `INSERT`s elsewhere. Either way rows go in in order,
    /// so identity/autoincrement ids follow the order of `rows`.
    pub(crate) async fn insert_plain(
        &self,
        table: &str,
        columns: &str,
        ncols: usize,
        rows: Vec<Vec<Value>>,
    ) -> Result<u64, DbErr> {
        if rows.is_empty() {
            return Ok(0);
        }
        match self {
            Txn::Sqlite(_) => {
                insert_rows(
                    self,
                    &format!("INSERT INTO {table} ({columns})"),
                    ncols,
                    rows,
                    "",
                )
                .await
            }
            Txn::Pg(t) => {
                let mut data = Vec::with_capacity(rows.len() * ncols * 12);
                for row in &rows {
                    debug_assert_eq!(row.len(), ncols, "row width matches the column list");
                    copy_row(&mut data, row)?;
                }
                let mut tx = t.lock().await;
                let conn: &mut sqlx::PgConnection = &mut tx;
                let mut copy = conn
                    .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN"))
                    .await
                    .map_err(exec_err)?;
                copy.send(data).await.map_err(exec_err)?;
                copy.finish().await.map_err(exec_err)
            }
        }
    }
}

/// Appends one row in `COPY`'s text format: tab-separated, `\N` for NULL, backslash escapes.
fn copy_row(out: &mut Vec<u8>, row: &[Value]) -> Result<(), DbErr> {
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match v {
            Value::String(Some(s)) => escape_into(out, s),
            Value::BigInt(Some(n)) => out.extend_from_slice(n.to_string().as_bytes()),
            Value::Bool(Some(b)) => out.push(if *b { b't' } else { b'f' }),
            Value::String(None) | Value::BigInt(None) | Value::Bool(None) => {
                out.extend_from_slice(b"\\N")
            }
            other => {
                return Err(DbErr::Custom(format!(
                    "COPY does not handle this value type: {other:?}"
                )))
            }
        }
    }
    out.push(b'\n');
    Ok(())
}

fn escape_into(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Binds a statement's values to a sqlx query, moving them (the value types this crate binds).
macro_rules! bind_values {
    ($q:expr, $values:expr) => {{
        let mut q = $q;
        for v in $values.map(|vs: Values| vs.0).unwrap_or_default() {
            q = match v {
                Value::Bool(b) => q.bind(b),
                Value::TinyInt(n) => q.bind(n.map(i16::from)),
                Value::SmallInt(n) => q.bind(n),
                Value::Int(n) => q.bind(n),
                Value::BigInt(n) => q.bind(n),
                Value::Double(n) => q.bind(n),
                Value::String(s) => q.bind(s.map(|s| *s)),
                Value::Bytes(b) => q.bind(b.map(|b| *b)),
                other => {
                    return Err(DbErr::Custom(format!(
                        "unsupported bind value type: {other:?}"
                    )))
                }
            };
        }
        q
    }};
}

fn pg_query(
    sql: &str,
    values: Option<Values>,
) -> Result<sqlx::query::Query<'_, Postgres, PgArguments>, DbErr> {
    Ok(bind_values!(sqlx::query(sql), values))
}

fn sqlite_query<'q>(
    sql: &'q str,
    values: Option<Values>,
) -> Result<sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>, DbErr> {
    Ok(bind_values!(sqlx::query(sql), values))
}

#[async_trait]
impl ConnectionTrait for Txn {
    fn get_database_backend(&self) -> DatabaseBackend {
        match self {
            Txn::Pg(_) => DatabaseBackend::Postgres,
            Txn::Sqlite(_) => DatabaseBackend::Sqlite,
        }
    }

    async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            Txn::Pg(t) => {
                let q = pg_query(&stmt.sql, stmt.values)?;
                let mut tx = t.lock().await;
                Ok(q.execute(&mut **tx).await.map_err(exec_err)?.into())
            }
            Txn::Sqlite(t) => {
                let q = sqlite_query(&stmt.sql, stmt.values)?;
                let mut tx = t.lock().await;
                Ok(q.execute(&mut **tx).await.map_err(exec_err)?.into())
            }
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        use sqlx::Executor;
        match self {
            Txn::Pg(t) => {
                let mut tx = t.lock().await;
                let conn: &mut sqlx::PgConnection = &mut tx;
                Ok(conn.execute(sql).await.map_err(exec_err)?.into())
            }
            Txn::Sqlite(t) => {
                let mut tx = t.lock().await;
                let conn: &mut sqlx::SqliteConnection = &mut tx;
                Ok(conn.execute(sql).await.map_err(exec_err)?.into())
            }
        }
    }

    async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Txn::Pg(t) => {
                let q = pg_query(&stmt.sql, stmt.values)?;
                let mut tx = t.lock().await;
                let row = q.fetch_optional(&mut **tx).await.map_err(query_err)?;
                Ok(row.map(Into::into))
            }
            Txn::Sqlite(t) => {
                let q = sqlite_query(&stmt.sql, stmt.values)?;
                let mut tx = t.lock().await;
                let row = q.fetch_optional(&mut **tx).await.map_err(query_err)?;
                Ok(row.map(Into::into))
            }
        }
    }

    async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Txn::Pg(t) => {
                let q = pg_query(&stmt.sql, stmt.values)?;
                let mut tx = t.lock().await;
                let rows = q.fetch_all(&mut **tx).await.map_err(query_err)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
            Txn::Sqlite(t) => {
                let q = sqlite_query(&stmt.sql, stmt.values)?;
                let mut tx = t.lock().await;
                let rows = q.fetch_all(&mut **tx).await.map_err(query_err)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_escape_and_mark_nulls() {
        let mut out = Vec::new();
        copy_row(
            &mut out,
            &[
                Value::String(Some(Box::new("a\tb\\c\nd\re".into()))),
                Value::String(None),
                Value::BigInt(Some(-42)),
                Value::Bool(Some(true)),
                Value::Bool(Some(false)),
                Value::BigInt(None),
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\tb\\\\c\\nd\\re\t\\N\t-42\tt\tf\t\\N\n"
        );
        let mut out = Vec::new();
        assert!(copy_row(&mut out, &[Value::Double(Some(1.0))]).is_err());
    }
}
