//! Running a step as the extension's owner. `ingest_bronze` checks its
//! caller's right to read server files, then writes bronze and the audit
//! tables as the owner: no other role holds INSERT on them, so nothing but
//! `ingest_bronze` can write them. This is what a SECURITY DEFINER function
//! does (fmgr_security_definer), done from Rust so that the caller can be
//! checked first: SQL offers no way to see the caller inside a definer.

use crate::error::raise;
use pgrx::{pg_sys, PgSqlErrorCode, Spi};

/// While alive, the current user is the extension's owner and search_path
/// is `pg_catalog, pg_temp`, so no object of the caller's can stand in for
/// one the extension names. Dropping it restores both. On an error the
/// (sub)transaction's abort restores them instead, as it does for a
/// SECURITY DEFINER function.
pub struct AsExtensionOwner {
    saved_user: pg_sys::Oid,
    saved_context: i32,
    guc_level: i32,
}

/// The role that owns extension golden360.
fn extension_owner() -> pg_sys::Oid {
    Spi::get_one::<pg_sys::Oid>("SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'golden360'")
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                "extension golden360 is not installed in this database",
                None,
                "CREATE EXTENSION golden360;",
            )
        })
}

impl AsExtensionOwner {
    pub fn enter() -> AsExtensionOwner {
        let owner = extension_owner();
        let (mut saved_user, mut saved_context) = (pg_sys::InvalidOid, 0);
        // SAFETY: the same calls fmgr_security_definer makes: save the user
        // and security context, switch the user for this call only
        // (SECURITY_LOCAL_USERID_CHANGE), and open a GUC nesting level whose
        // saved values AtEOXact_GUC (in Drop) or the abort restores.
        let guc_level = unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
            pg_sys::SetUserIdAndSecContext(owner, saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
            let level = pg_sys::NewGUCNestLevel();
            pg_sys::set_config_option(
                c"search_path".as_ptr(),
                c"pg_catalog, pg_temp".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
            level
        };
        AsExtensionOwner { saved_user, saved_context, guc_level }
    }
}

impl Drop for AsExtensionOwner {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // An ERROR is unwinding: the abort that follows restores the
            // user and the GUCs; touching GUC state now could fail again.
            return;
        }
        // SAFETY: undoes exactly what `enter` did, in reverse order.
        unsafe {
            pg_sys::AtEOXact_GUC(true, self.guc_level);
            pg_sys::SetUserIdAndSecContext(self.saved_user, self.saved_context);
        }
    }
}

/// Whether the current user may read the server's files: what COPY FROM a
/// file requires (superuser or pg_read_server_files).
pub fn may_read_server_files() -> bool {
    // SAFETY: privilege look-ups for the current user.
    unsafe {
        pg_sys::superuser()
            || pg_sys::has_privs_of_role(pg_sys::GetUserId(), pg_sys::Oid::from(pg_sys::ROLE_PG_READ_SERVER_FILES))
    }
}
