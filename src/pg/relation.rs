//! golden360's own tables, and nothing else: a table the Rust code reads or
//! writes is looked up by its fixed schema and name (never a name a caller
//! passes), must be a member of extension golden360 (`pg_depend`), must be
//! a plain heap table (relkind `r`), and must have exactly the columns,
//! types and typmods golden360 declares before the first datum is read
//! from it or built for it. A view, a partitioned table, a look-alike, or a
//! column whose type changed stops the run with an error, never a crash.

use super::types::{Column, SqlType};
use crate::error::raise;
use pgrx::{pg_sys, PgSqlErrorCode, PgTupleDesc};
use std::ffi::{CStr, CString};

/// What a DBA can do about a damaged extension table without losing data.
pub const DAMAGED_HINT: &str = "golden360's own tables must not be dropped, replaced or altered. Restore the table \
     from a backup, or undo the change; DROP EXTENSION would also drop bronze, the audit trail.";

/// A table of golden360's, found and checked.
pub struct OwnTable {
    pub oid: pg_sys::Oid,
    /// schema.table, for messages.
    pub name: String,
}

/// The OID of `schema.table`, looked up without ACL checks (callers check
/// the privileges that matter), or None.
fn relation_oid(schema: &str, table: &str) -> Option<pg_sys::Oid> {
    let schema = CString::new(schema).ok()?;
    let table = CString::new(table).ok()?;
    // SAFETY: both names are NUL-terminated C strings that outlive the calls;
    // the lookups only read the catalogs (missing_ok for the namespace).
    unsafe {
        let namespace = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        if namespace == pg_sys::InvalidOid {
            return None;
        }
        let relid = pg_sys::get_relname_relid(table.as_ptr(), namespace);
        (relid != pg_sys::InvalidOid).then_some(relid)
    }
}

/// golden360's own table `schema.table`: present, a member of the extension,
/// and a plain table.
pub fn own_table(schema: &str, table: &str) -> OwnTable {
    let name = format!("{schema}.{table}");
    let Some(oid) = relation_oid(schema, table) else {
        raise(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE, format!("{name} does not exist"), None, DAMAGED_HINT)
    };
    // SAFETY: catalog look-ups by OID and by a static C string name.
    let (extension, member_of, relkind) = unsafe {
        (
            pg_sys::get_extension_oid(c"golden360".as_ptr(), true),
            pg_sys::getExtensionOfObject(pg_sys::RelationRelationId, oid),
            pg_sys::get_rel_relkind(oid) as u8,
        )
    };
    if extension == pg_sys::InvalidOid || member_of != extension {
        raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{name} is not golden360's table"),
            Some(format!("{name} is not a member of extension golden360; golden360 reads and writes only its own tables.")),
            DAMAGED_HINT,
        );
    }
    if relkind != pg_sys::RELKIND_RELATION {
        raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{name} is not a plain table (relkind '{}')", relkind as char),
            None,
            DAMAGED_HINT,
        );
    }
    OwnTable { oid, name }
}

/// The type OID and typmod of each attribute of an open relation, with
/// its name (None for a dropped column).
pub fn attributes(rel: pg_sys::Relation) -> Vec<Option<(String, pg_sys::Oid, i32)>> {
    // SAFETY: `rel` is open (the callers hold it), so its tuple descriptor
    // is valid for the duration of this call; the names are copied out.
    let desc = unsafe { PgTupleDesc::from_pg_unchecked((*rel).rd_att) };
    desc.iter()
        .map(|a| (!a.is_dropped()).then(|| (a.name().to_string(), a.atttypid, a.atttypmod)))
        .collect()
}

/// `type(typmod)` as PostgreSQL spells it, for messages.
fn type_name(oid: pg_sys::Oid, typmod: i32) -> String {
    // SAFETY: format_type_with_typemod returns a palloc'd C string for any
    // OID (unknown ones as "???"); it is copied before the context resets.
    unsafe { CStr::from_ptr(pg_sys::format_type_with_typemod(oid, typmod)).to_string_lossy().into_owned() }
}

/// Fail unless the open relation has exactly `expected`: the same columns,
/// in order, none dropped, with the declared types and typmods.
pub fn check_columns(rel: pg_sys::Relation, name: &str, expected: &[Column]) {
    let found = attributes(rel);
    let matches = found.len() == expected.len()
        && found.iter().zip(expected).all(|(f, e)| {
            f.as_ref().is_some_and(|(n, oid, typmod)| n == e.name && *oid == e.ty.oid() && *typmod == e.ty.typmod())
        });
    if !matches {
        let show = |cols: Vec<String>| cols.join(", ");
        raise(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!("{name} does not have the columns golden360 declares"),
            Some(format!(
                "expected: {}\nfound:    {}",
                show(expected.iter().map(|c| format!("{} {}", c.name, c.ty.sql())).collect()),
                show(found
                    .iter()
                    .map(|f| match f {
                        Some((n, oid, typmod)) => format!("{n} {}", type_name(*oid, *typmod)),
                        None => "(dropped column)".into(),
                    })
                    .collect())
            )),
            DAMAGED_HINT,
        );
    }
}

/// The attribute index of `column`, which must be of type `ty`'s type (its
/// typmod aside: a reader decodes any numeric, a writer checks typmods with
/// `check_columns`).
pub fn column_index(rel: pg_sys::Relation, name: &str, column: &str, ty: SqlType) -> usize {
    let found = attributes(rel);
    let Some(i) = found.iter().position(|f| f.as_ref().is_some_and(|(n, ..)| n == column)) else {
        raise(PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN, format!("{name} has no column {column}"), None, DAMAGED_HINT)
    };
    let (_, oid, typmod) = found[i].clone().unwrap_or_default();
    if oid != ty.oid() {
        raise(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!("{name}.{column} is {}, not {} as golden360 declares", type_name(oid, typmod), ty.sql()),
            None,
            DAMAGED_HINT,
        );
    }
    i
}

/// A table privilege a bulk write needs.
#[derive(Clone, Copy, Debug)]
pub enum Privilege {
    Insert,
    Delete,
}

/// Fail unless the current user holds `privilege` on the table: bulk
/// writes bypass the executor, which would otherwise check it.
pub fn require_privilege(relid: pg_sys::Oid, name: &str, privilege: Privilege) {
    let bit = match privilege {
        Privilege::Insert => pg_sys::ACL_INSERT,
        Privilege::Delete => pg_sys::ACL_DELETE,
    };
    // SAFETY: an ACL look-up for the current user on an existing relation.
    let granted = unsafe { pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), bit as pg_sys::AclMode) };
    if granted != pg_sys::AclResult::ACLCHECK_OK {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for table {name}"),
            None,
            "golden360 writes its tables through its documented procedures only (see the README's public surface).",
        );
    }
}
