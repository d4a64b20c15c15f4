//! Where bronze reads from, and whether it may: privilege checks, directory
//! confinement (`golden360.data_dir`), the nine-file inventory, SHA-256 of a
//! file's exact bytes, and the header check.

use crate::error::raise;
use crate::olist::{SourceFile, SOURCE_FILES};
use crate::ops;
use pgrx::{pg_sys, PgSqlErrorCode};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Read buffer for hashing and parsing: large enough that syscalls vanish
/// from the profile, small enough to stay in L2.
pub const READ_BUFFER: usize = 1 << 20;

/// Reading server files is what COPY FROM 'file' guards with the same rule;
/// writing bronze needs the grants that role golden360_loader carries.
pub fn require_read_privilege() {
    let allowed = unsafe {
        pg_sys::superuser()
            || pg_sys::has_privs_of_role(pg_sys::GetUserId(), pg_sys::Oid::from(pg_sys::ROLE_PG_READ_SERVER_FILES))
    };
    if !allowed {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied to read server files with golden360.ingest_bronze",
            Some("Only superusers and members of pg_read_server_files may ingest files from the server's file system.".into()),
            "An administrator can run: GRANT golden360_loader TO <role>; (it includes pg_read_server_files)",
        );
    }
    // Then every grant on golden360's own objects, listed at once.
    if let Err(e) = pgrx::Spi::run("SELECT golden360.assert_can_ingest()") {
        raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("checking ingestion privileges: {e}"), None, "");
    }
}

/// Refuse a source_dir (NULL included) that is not an absolute path: the
/// server's working directory is no place a DBA means.
pub fn require_absolute(source_dir: Option<&str>) {
    if !source_dir.is_some_and(|dir| Path::new(dir).is_absolute()) {
        let shown = source_dir.map_or("NULL".to_string(), |dir| format!("\"{dir}\""));
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("source_dir {shown} is not an absolute path"),
            None,
            "Pass the directory's full path as the database server sees it, e.g. '/srv/olist/2018-10'.",
        );
    }
}

/// The source directory as an absolute, symlink-free path that exists and
/// lies inside `golden360.data_dir` when that is set.
pub fn resolve_source_dir(source_dir: &str) -> PathBuf {
    require_absolute(Some(source_dir));
    let real = canonical(Path::new(source_dir), "source directory");
    if !real.is_dir() {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("source_dir \"{source_dir}\" is not a directory"),
            None,
            "Pass the directory that holds the nine Olist CSV files.",
        );
    }
    confine(&real, source_dir);
    real
}

/// A file of the inventory, resolved and confined like its directory: a
/// symlink inside the data directory must not point outside it.
pub fn resolve_file(path: &Path) -> PathBuf {
    let real = canonical(path, "source file");
    confine(&real, &path.display().to_string());
    if !real.is_file() {
        // A FIFO or device would block the backend or read forever.
        raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("source file \"{}\" is not a regular file", path.display()),
            None,
            "Each of the nine Olist names must be a regular CSV file.",
        );
    }
    real
}

fn canonical(path: &Path, what: &str) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|e| {
        let code = match e.kind() {
            io::ErrorKind::NotFound => PgSqlErrorCode::ERRCODE_UNDEFINED_FILE,
            io::ErrorKind::PermissionDenied => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            _ => PgSqlErrorCode::ERRCODE_IO_ERROR,
        };
        raise(
            code,
            format!("cannot open {what} \"{}\": {e}", path.display()),
            None,
            "The path is read by the database server's operating-system user (usually postgres); \
             check that it exists there and that this user may read it.",
        )
    })
}

fn confine(real: &Path, as_given: &str) {
    let Some(root) = ops::data_dir() else { return };
    let root_real = std::fs::canonicalize(&root).unwrap_or_else(|e| {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("golden360.data_dir \"{}\" cannot be resolved: {e}", root.display()),
            None,
            "A superuser should set golden360.data_dir to an existing directory, or reset it.",
        )
    });
    // Path::starts_with compares whole components: /data2 is not inside /data.
    if !real.starts_with(&root_real) {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("\"{as_given}\" is outside golden360.data_dir"),
            Some(format!("It resolves to \"{}\"; golden360.data_dir is \"{}\".", real.display(), root_real.display())),
            "Put the files below golden360.data_dir (symlinks and '..' are followed before this check).",
        );
    }
}

/// The nine files of a directory: those present, in registry order, and the
/// names of those missing.
pub fn inventory(dir: &Path) -> (Vec<(&'static SourceFile, PathBuf)>, Vec<&'static str>) {
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for source in &SOURCE_FILES {
        let path = dir.join(source.file_name);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => present.push((source, resolve_file(&path))),
            Err(_) => missing.push(source.file_name),
        }
    }
    (present, missing)
}

/// A reader that hashes every byte that passes through it, so the loader
/// can prove it parsed exactly the bytes whose SHA-256 it recorded.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), bytes: 0 }
    }
    /// (lower-case hex SHA-256, byte count) of everything read so far.
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// SHA-256 and size of a file's exact bytes.
pub fn sha256_file(path: &Path) -> (String, u64) {
    let mut reader = HashingReader::new(open(path));
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return reader.finish(),
            Ok(_) => {}
            Err(e) => io_error(path, e),
        }
    }
}

pub fn open(path: &Path) -> File {
    File::open(path).unwrap_or_else(|e| io_error(path, e))
}

pub fn io_error(path: &Path, e: impl std::fmt::Display) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_IO_ERROR,
        format!("could not read \"{}\": {e}", path.display()),
        None,
        "Check the file on the database server; nothing of this batch was loaded.",
    )
}

/// A CSV reader configured the way bronze parses every file: RFC 4180
/// quoting, any field count (short and long rows are rejected per row, not
/// per file), the header read as a record like any other.
pub fn csv_reader<R: Read>(inner: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(READ_BUFFER)
        .from_reader(inner)
}

/// Fails unless the file's first record is exactly the registry's header
/// (a UTF-8 BOM before it is allowed: the csv parser drops it).
pub fn check_header<R: Read>(source: &SourceFile, path: &Path, reader: &mut csv::Reader<R>) {
    let mut record = csv::ByteRecord::new();
    let found: Vec<String> = match reader.read_byte_record(&mut record) {
        Ok(true) => record.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect(),
        Ok(false) => Vec::new(),
        Err(e) => io_error(path, e),
    };
    if found.iter().map(String::as_str).eq(source.columns.iter().copied()) {
        return;
    }
    let expected = source.columns.join(",");
    raise(
        PgSqlErrorCode::ERRCODE_BAD_COPY_FILE_FORMAT,
        format!("{} has the wrong header for bronze.{}", source.file_name, source.table),
        Some(format!("expected columns: {expected}\nfound columns:    {}", if found.is_empty() { "(empty file)".into() } else { found.join(",") })),
        "The header must name the Olist columns in the Olist order. Nothing of this batch was loaded.",
    );
}
