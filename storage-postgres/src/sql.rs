//! Building SQL that runs unchanged on PostgreSQL and SQLite: `$n` placeholders (both accept
//! them), multi-row inserts chunked under each database's bind-parameter limit, and positional
//! row reading.

use chatvault_core::{ChannelId, Ts};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, QueryResult, Statement, TryGetable, Value};

/// Bind parameters one statement may carry: PostgreSQL allows 65,535, SQLite (3.32+) 32,766.
pub(crate) fn max_params(backend: DatabaseBackend) -> usize {
    match backend {
        DatabaseBackend::Postgres => 65_000,
        _ => 32_000,
    }
}

/// Rows per multi-row statement at most, whatever the parameter limit: beyond a few thousand
/// rows the statement text and its plan cost more than the round trips they save.
const MAX_ROWS_PER_STATEMENT: usize = 4_000;

/// Rows one multi-row statement of `ncols` columns carries on `backend`.
pub(crate) fn rows_per_statement(backend: DatabaseBackend, ncols: usize) -> usize {
    (max_params(backend) / ncols).clamp(1, MAX_ROWS_PER_STATEMENT)
}

/// A SQL text with its bound values.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub(crate) sql: String,
    pub(crate) values: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(sql: &str) -> Self {
        Sql {
            sql: sql.to_string(),
            values: Vec::new(),
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, s: &str) -> &mut Self {
        self.sql.push_str(s);
        self
    }

    /// Appends a placeholder bound to `v`.
    pub(crate) fn bind(&mut self, v: impl Into<Value>) -> &mut Self {
        self.values.push(v.into());
        self.sql.push('$');
        self.sql.push_str(&self.values.len().to_string());
        self
    }

    /// Appends `$a, $b, …` bound to `vs` (at least one value must be given by the caller).
    pub(crate) fn bind_list<V: Into<Value>>(
        &mut self,
        vs: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        for (i, v) in vs.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.bind(v);
        }
        self
    }

    /// Appends `(channel_id, ts) IN (SELECT column1, column2 FROM (VALUES ($a, $b), …) AS keys)`
    /// for these message keys. SQLite plans a bare `(a, b) IN (VALUES …)` as a scan of every row
    /// of the workspace probing the list (`SEARCH … (workspace_id=?)`), so a batch costs time in
    /// the size of the table; the subquery form is a key lookup per listed key on both databases.
    pub(crate) fn bind_keys<'a>(
        &mut self,
        channel_col: &str,
        ts_col: &str,
        keys: impl IntoIterator<Item = (&'a ChannelId, &'a Ts)>,
    ) -> &mut Self {
        self.sql.push_str(&format!(
            "({channel_col}, {ts_col}) IN (SELECT column1, column2 FROM (VALUES "
        ));
        for (i, (c, t)) in keys.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.sql.push('(');
            self.bind(c.as_str());
            self.sql.push_str(", ");
            self.bind(t.as_str());
            self.sql.push(')');
        }
        self.sql.push_str(") AS keys)");
        self
    }

    pub(crate) fn stmt(self, backend: DatabaseBackend) -> Statement {
        Statement::from_sql_and_values(backend, placeholders_for(backend, self.sql), self.values)
    }
}

/// Placeholders for `backend`. PostgreSQL gets `$n`. SQLite gets anonymous `?`: it accepts `$n`,
/// but looks named and numbered parameters up by a linear scan (when parsing, and in
/// `sqlite3_bind_parameter_name`, which sqlx calls per parameter), so a statement with thousands
/// of them costs quadratic time; anonymous ones cost constant time. Every statement built here
/// binds its values in the order their placeholders appear, each once, so `?` is equivalent.
fn placeholders_for(backend: DatabaseBackend, sql: String) -> String {
    if backend != DatabaseBackend::Sqlite {
        return sql;
    }
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    let mut expected = 1usize;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '$' if !quoted && chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let mut n = 0usize;
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    n = n * 10 + d as usize;
                    chars.next();
                }
                debug_assert_eq!(n, expected, "placeholders appear in bind order, each once");
                expected += 1;
                out.push('?');
            }
            _ => out.push(c),
        }
    }
    out
}

/// How many keys a `bind_keys` statement may carry next to `extra` other parameters.
pub(crate) fn key_chunk(backend: DatabaseBackend, extra: usize) -> usize {
    ((max_params(backend) - extra) / 2).min(MAX_ROWS_PER_STATEMENT)
}

/// Writes `rows` (each `ncols` values) with as few multi-row `INSERT`s as the parameter limit allows:
/// `{head} VALUES (…), (…) {tail}`, where `tail` is usually an `ON CONFLICT` clause.
pub(crate) async fn insert_rows<C: ConnectionTrait>(
    conn: &C,
    head: &str,
    ncols: usize,
    rows: Vec<Vec<Value>>,
    tail: &str,
) -> Result<u64, DbErr> {
    if rows.is_empty() {
        return Ok(0);
    }
    let backend = conn.get_database_backend();
    let anonymous = backend == DatabaseBackend::Sqlite;
    let per = rows_per_statement(backend, ncols);
    let mut affected = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut sql = String::with_capacity(head.len() + tail.len() + per * ncols * 6);
        sql.push_str(head);
        sql.push_str(" VALUES ");
        let mut values = Vec::with_capacity(per * ncols);
        for (r, row) in rows.by_ref().take(per).enumerate() {
            debug_assert_eq!(row.len(), ncols, "row width matches the column list");
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for (c, v) in row.into_iter().enumerate() {
                if c > 0 {
                    sql.push_str(", ");
                }
                values.push(v);
                if anonymous {
                    sql.push('?');
                } else {
                    sql.push('$');
                    sql.push_str(&values.len().to_string());
                }
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(&placeholders_for(backend, tail.to_string()));
        let res = conn
            .execute(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        affected += res.rows_affected();
    }
    Ok(affected)
}

/// Reads a result row's columns in order.
pub(crate) struct Cols<'a> {
    row: &'a QueryResult,
    at: usize,
}

impl<'a> Cols<'a> {
    pub(crate) fn new(row: &'a QueryResult) -> Self {
        Cols { row, at: 0 }
    }

    /// The next column.
    pub(crate) fn next<T: TryGetable>(&mut self) -> Result<T, DbErr> {
        let v = self.row.try_get_by_index::<T>(self.at);
        self.at += 1;
        v
    }
}

/// An optional string as a bindable value (a typed NULL when absent).
pub(crate) fn opt_str(s: Option<&str>) -> Value {
    Value::String(s.map(|s| Box::new(s.to_string())))
}

/// A string as a bindable value.
pub(crate) fn s(s: &str) -> Value {
    Value::String(Some(Box::new(s.to_string())))
}

/// An optional i64 as a bindable value.
pub(crate) fn opt_i64(v: Option<i64>) -> Value {
    Value::BigInt(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_gets_anonymous_placeholders_outside_strings() {
        let sql = "SELECT '$1', $1, a || ':' || $2 FROM t WHERE x = $3".to_string();
        assert_eq!(
            placeholders_for(DatabaseBackend::Sqlite, sql.clone()),
            "SELECT '$1', ?, a || ':' || ? FROM t WHERE x = ?"
        );
        assert_eq!(
            placeholders_for(DatabaseBackend::Postgres, sql.clone()),
            sql
        );
    }
}
