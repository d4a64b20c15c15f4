//! The SQL types of golden360's tables, as declared in Rust: each knows its
//! type OID and typmod, so a table can be checked against its declaration
//! before a datum is read from it or built for it, and its DDL spelled.

use pgrx::pg_sys;

/// A value as PostgreSQL passes it, and an object's identifier: the two
/// PostgreSQL types the layers name (lineage datums, a background worker's
/// argument, a column's type).
pub use pg_sys::{Datum, Oid};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Text,
    SmallInt,
    Integer,
    BigInt,
    Double,
    Date,
    Timestamp,
    TimestampTz,
    /// numeric(precision, scale)
    Numeric(u16, u16),
    TextArray,
    Jsonb,
}

impl SqlType {
    /// The type as DDL spells it.
    pub fn sql(self) -> String {
        match self {
            SqlType::Text => "text".into(),
            SqlType::SmallInt => "smallint".into(),
            SqlType::Integer => "integer".into(),
            SqlType::BigInt => "bigint".into(),
            SqlType::Double => "double precision".into(),
            SqlType::Date => "date".into(),
            SqlType::Timestamp => "timestamp".into(),
            SqlType::TimestampTz => "timestamptz".into(),
            SqlType::Numeric(p, s) => format!("numeric({p},{s})"),
            SqlType::TextArray => "text[]".into(),
            SqlType::Jsonb => "jsonb".into(),
        }
    }

    pub fn oid(self) -> pg_sys::Oid {
        match self {
            SqlType::Text => pg_sys::TEXTOID,
            SqlType::SmallInt => pg_sys::INT2OID,
            SqlType::Integer => pg_sys::INT4OID,
            SqlType::BigInt => pg_sys::INT8OID,
            SqlType::Double => pg_sys::FLOAT8OID,
            SqlType::Date => pg_sys::DATEOID,
            SqlType::Timestamp => pg_sys::TIMESTAMPOID,
            SqlType::TimestampTz => pg_sys::TIMESTAMPTZOID,
            SqlType::Numeric(..) => pg_sys::NUMERICOID,
            SqlType::TextArray => pg_sys::TEXTARRAYOID,
            SqlType::Jsonb => pg_sys::JSONBOID,
        }
    }

    /// The attribute typmod PostgreSQL stores for a column of this type.
    pub fn typmod(self) -> i32 {
        match self {
            SqlType::Numeric(p, s) => ((i32::from(p) << 16) | i32::from(s)) + pg_sys::VARHDRSZ as i32,
            _ => -1,
        }
    }

    /// Whether a numeric(p, s) column holds `scaled` / 10^s: its magnitude
    /// stays below 10^p. Types without a precision hold any value.
    pub fn holds(self, scaled: i64) -> bool {
        match self {
            SqlType::Numeric(p, _) => i128::from(scaled).abs() < 10i128.pow(u32::from(p)),
            _ => true,
        }
    }
}

/// A declared column: its name and type.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: SqlType,
}

pub const fn column(name: &'static str, ty: SqlType) -> Column {
    Column { name, ty }
}

#[cfg(test)]
mod tests {
    use super::SqlType;

    #[test]
    fn numeric_typmods_are_postgresqls() {
        // numeric(12,2): (12 << 16 | 2) + 4, as pg_attribute.atttypmod shows it.
        assert_eq!(SqlType::Numeric(12, 2).typmod(), 786438);
        assert_eq!(SqlType::Text.typmod(), -1);
        assert!(SqlType::Numeric(12, 2).holds(999_999_999_999) && !SqlType::Numeric(12, 2).holds(-1_000_000_000_000));
    }
}
