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

use crate::sql::{insert_rows, rows_per_statement};
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
    /// Writes `tables` in order. Plain inserts (no `on_conflict`) go in with `COPY` on PostgreSQL,
    /// streamed in chunks so the server works on one while the next is encoded; rows go in in
    /// order, so identity/autoincrement ids follow the order of `rows`. Everything else, and every
    /// table on SQLite, is multi-row `INSERT`s. On SQLite the next statement (its text and bound
    /// values) is built while the current one runs on SQLite's worker thread.
    ///
    /// # Errors
    /// The failing table's `doing` with the database error.
    pub(crate) async fn write(
        &self,
        tables: Vec<TableRows<'_>>,
    ) -> Result<(), (&'static str, DbErr)> {
        match self {
            Txn::Sqlite(t) => {
                let mut chunks = SqliteChunks {
                    tables: tables.into_iter(),
                    current: None,
                    pending: std::collections::VecDeque::new(),
                };
                let mut next = chunks.next_statement().transpose()?;
                while let Some(Built { sql, args, doing }) = next.take() {
                    let run = async {
                        let mut tx = t.lock().await;
                        sqlx::query_with(&sql, args)
                            .execute(&mut **tx)
                            .await
                            .map_err(|e| (doing, exec_err(e)))
                    };
                    // The statement is sent to the worker on the first poll of `run`; the next
                    // one is built meanwhile.
                    let (done, built) = tokio::join!(run, async { chunks.next_statement() });
                    done?;
                    next = built.transpose()?;
                }
                Ok(())
            }
            Txn::Pg(t) => {
                for tr in tables {
                    let doing = tr.doing;
                    let mut rows = tr.rows.peekable();
                    if rows.peek().is_none() {
                        continue;
                    }
                    if !tr.on_conflict.is_empty() {
                        let rows = rows
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| (doing, e))?;
                        insert_rows(
                            self,
                            &format!("INSERT INTO {} ({})", tr.table, tr.columns),
                            tr.ncols,
                            rows,
                            tr.on_conflict,
                        )
                        .await
                        .map_err(|e| (doing, e))?;
                        continue;
                    }
                    let mut tx = t.lock().await;
                    let conn: &mut sqlx::PgConnection = &mut tx;
                    copy_in(conn, tr.table, tr.columns, tr.ncols, rows)
                        .await
                        .map_err(|e| (doing, e))?;
                }
                Ok(())
            }
        }
    }
}

/// Rows built on demand, so they are built while earlier statements run.
pub(crate) type RowIter<'a> = Box<dyn Iterator<Item = Result<Vec<Value>, DbErr>> + Send + 'a>;

/// One table's rows for [`Txn::write`], each `ncols` values in `columns` order.
pub(crate) struct TableRows<'a> {
    pub(crate) table: &'static str,
    pub(crate) columns: &'static str,
    pub(crate) ncols: usize,
    pub(crate) rows: RowIter<'a>,
    /// `ON CONFLICT …` for upserts; empty for plain inserts.
    pub(crate) on_conflict: &'static str,
    /// What writing them is, for errors.
    pub(crate) doing: &'static str,
}

/// Bytes of `COPY` data sent at a time.
const COPY_CHUNK: usize = 256 * 1024;

async fn copy_in(
    conn: &mut sqlx::PgConnection,
    table: &str,
    columns: &str,
    ncols: usize,
    rows: impl Iterator<Item = Result<Vec<Value>, DbErr>>,
) -> Result<u64, DbErr> {
    let mut copy = conn
        .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN"))
        .await
        .map_err(exec_err)?;
    let mut data = Vec::with_capacity(COPY_CHUNK + 4096);
    for row in rows {
        let encoded = row.and_then(|row| {
            debug_assert_eq!(row.len(), ncols, "row width matches the column list");
            copy_row(&mut data, &row)
        });
        if let Err(e) = encoded {
            copy.abort(e.to_string()).await.map_err(exec_err)?;
            return Err(e);
        }
        if data.len() >= COPY_CHUNK {
            copy.send(std::mem::replace(
                &mut data,
                Vec::with_capacity(COPY_CHUNK + 4096),
            ))
            .await
            .map_err(exec_err)?;
        }
    }
    if !data.is_empty() {
        copy.send(data).await.map_err(exec_err)?;
    }
    copy.finish().await.map_err(exec_err)
}

/// A multi-row `INSERT` ready to run on SQLite.
struct Built {
    sql: String,
    args: SqliteArguments<'static>,
    doing: &'static str,
}

/// Splits [`TableRows`] into SQLite statements under the bind-parameter limit, one at a time.
///
/// Statements carry the full `rows_per_statement` rows or a power of two fewer (a table's last
/// rows go out as 1,024 + 256 + …), so each table has a dozen statement texts whatever the batch
/// sizes, and sqlx's per-connection statement cache hits instead of preparing (and caching) a
/// statement with thousands of parameters for every new remainder.
struct SqliteChunks<'a> {
    tables: std::vec::IntoIter<TableRows<'a>>,
    current: Option<TableRows<'a>>,
    /// Rows taken from `current` and not yet in a statement.
    pending: std::collections::VecDeque<Vec<Value>>,
}

impl SqliteChunks<'_> {
    fn next_statement(&mut self) -> Option<Result<Built, (&'static str, DbErr)>> {
        use sqlx::Arguments;
        loop {
            if let Some(tr) = &mut self.current {
                let per = rows_per_statement(DatabaseBackend::Sqlite, tr.ncols);
                let mut sql = String::with_capacity(
                    tr.table.len()
                        + tr.columns.len()
                        + tr.on_conflict.len()
                        + per * tr.ncols * 3
                        + 32,
                );
                sql.push_str("INSERT INTO ");
                sql.push_str(tr.table);
                sql.push_str(" (");
                sql.push_str(tr.columns);
                sql.push_str(") VALUES ");
                while self.pending.len() < per {
                    match tr.rows.next() {
                        Some(Ok(row)) => self.pending.push_back(row),
                        Some(Err(e)) => return Some(Err((tr.doing, e))),
                        None => break,
                    }
                }
                let take = if self.pending.len() >= per {
                    per
                } else if self.pending.is_empty() {
                    0
                } else {
                    1 << self.pending.len().ilog2()
                };
                let mut args = SqliteArguments::default();
                let mut n = 0;
                for row in self.pending.drain(..take) {
                    debug_assert_eq!(row.len(), tr.ncols, "row width matches the column list");
                    sql.push_str(if n > 0 { ", (" } else { "(" });
                    n += 1;
                    for (c, v) in row.into_iter().enumerate() {
                        sql.push_str(if c > 0 { ", ?" } else { "?" });
                        let added = match v {
                            Value::String(s) => args.add(s.map(|s| *s)),
                            Value::BigInt(n) => args.add(n),
                            Value::Bool(b) => args.add(b),
                            other => {
                                return Some(Err((
                                    tr.doing,
                                    DbErr::Custom(format!(
                                        "unsupported bind value type: {other:?}"
                                    )),
                                )))
                            }
                        };
                        if let Err(e) = added {
                            return Some(Err((tr.doing, DbErr::Custom(e.to_string()))));
                        }
                    }
                    sql.push(')');
                }
                if n > 0 {
                    sql.push(' ');
                    sql.push_str(tr.on_conflict);
                    return Some(Ok(Built {
                        sql,
                        args,
                        doing: tr.doing,
                    }));
                }
            }
            self.current = Some(self.tables.next()?);
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
    fn sqlite_statements_are_full_or_a_power_of_two() {
        let per = rows_per_statement(DatabaseBackend::Sqlite, 2);
        let total = 2 * per + 100;
        let rows = (0..total).map(|i| Ok(vec![Value::BigInt(Some(i as i64)), Value::Bool(None)]));
        let mut chunks = SqliteChunks {
            tables: vec![TableRows {
                table: "t",
                columns: "a, b",
                ncols: 2,
                rows: Box::new(rows),
                on_conflict: "",
                doing: "testing",
            }]
            .into_iter(),
            current: None,
            pending: std::collections::VecDeque::new(),
        };
        let mut sizes = Vec::new();
        while let Some(built) = chunks.next_statement() {
            let built = built.map_err(|(_, e)| e).unwrap();
            sizes.push(built.sql.matches('(').count() - 1);
        }
        assert_eq!(sizes, vec![per, per, 64, 32, 4]);
    }

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
