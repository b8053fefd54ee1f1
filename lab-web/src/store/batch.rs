//! Multi-row inserts in batches under both databases' parameter limits.

use sqlx::AnyConnection as Conn;

/// A bindable value for the batched inserts.
#[derive(Clone, Debug, PartialEq)]
pub enum V {
    I(i64),
    F(f64),
    S(String),
    N,
    /// A NULL of a floating-point column (PostgreSQL types the NULL).
    NF,
}

/// Multi-row `INSERT … VALUES ($1,…),(…)` text for `rows` rows of `cols` columns.
pub fn values_sql(head: &str, rows: usize, cols: usize) -> String {
    let mut sql = String::with_capacity(head.len() + rows * cols * 5);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("${}", r * cols + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// Inserts rows of `cols` values each with the statement head `head`
/// (`INSERT INTO t (a, b)`).
pub async fn insert_rows(
    conn: &mut Conn,
    head: &str,
    cols: usize,
    rows: &[Vec<V>],
) -> Result<(), sqlx::Error> {
    let per_batch = (30_000 / cols).clamp(1, 1000);
    for chunk in rows.chunks(per_batch) {
        let sql = values_sql(head, chunk.len(), cols);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            debug_assert_eq!(row.len(), cols);
            for v in row {
                q = match v {
                    V::I(i) => q.bind(*i),
                    V::F(f) => q.bind(*f),
                    V::S(s) => q.bind(s.clone()),
                    V::N => q.bind(Option::<String>::None),
                    V::NF => q.bind(Option::<f64>::None),
                };
            }
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::values_sql;

    #[test]
    fn values_sql_numbers_placeholders_row_by_row() {
        assert_eq!(
            values_sql("INSERT INTO t (a, b)", 2, 2),
            "INSERT INTO t (a, b) VALUES ($1,$2),($3,$4)"
        );
    }
}
