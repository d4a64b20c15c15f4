//! Where bronze reads from, and whether it may: the caller's privilege,
//! directory confinement (`golden360.data_dir`), the nine-file inventory,
//! and each file's bytes.
//!
//! A file is opened once, by `openat` on the source directory's descriptor
//! with O_NOFOLLOW | O_NONBLOCK, and checked on that descriptor: fstat says
//! it is a regular file, and the path the kernel gives for the descriptor
//! (`/proc/self/fd/N`) lies inside `golden360.data_dir`. Its header, its
//! SHA-256 and its rows are then all read from that same descriptor with
//! positional reads, so swapping a symlink or a FIFO in after the check
//! changes nothing: a FIFO never blocks the open, and nothing is opened by
//! name again.

use crate::error::raise;
use olist_model::{SourceFile, SOURCE_FILES};
use crate::ops;
use crate::pg::owner::may_read_server_files;
use pgrx::PgSqlErrorCode;
use sha2::{Digest, Sha256};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use crate::pg::helper;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

/// Read buffer for hashing and parsing: large enough that syscalls vanish
/// from the profile, small enough to stay in L2.
pub const READ_BUFFER: usize = 1 << 20;

/// Reading server files is what COPY FROM 'file' guards with the same rule.
/// Checked for the caller, before `ingest_bronze` takes the owner's identity.
pub fn require_read_privilege() {
    if !may_read_server_files() {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied to read server files with golden360.ingest_bronze",
            Some("Only superusers and members of pg_read_server_files may ingest files from the server's file system.".into()),
            "An administrator can run: GRANT golden360_loader TO <role>; (it includes pg_read_server_files)",
        );
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

/// An open source directory: its descriptor and its real path.
pub struct SourceDir {
    fd: OwnedFd,
    pub real: PathBuf,
}

/// One source file, open and checked: read it only through `file`.
pub struct SourceHandle {
    pub file: File,
    /// The path the kernel gives for the descriptor.
    pub real: PathBuf,
}

fn os_error(what: &str, shown: &str, e: io::Error) -> ! {
    let code = match e.kind() {
        io::ErrorKind::NotFound => PgSqlErrorCode::ERRCODE_UNDEFINED_FILE,
        io::ErrorKind::PermissionDenied => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        _ => PgSqlErrorCode::ERRCODE_IO_ERROR,
    };
    raise(
        code,
        format!("cannot open {what} \"{shown}\": {e}"),
        None,
        "The path is read by the database server's operating-system user (usually postgres); \
         check that it exists there and that this user may read it.",
    )
}

/// The path the kernel has for an open descriptor.
fn real_path(fd: &impl AsRawFd) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `openat(dir, name, flags)`, as an owned descriptor.
fn open_at(dir: Option<&OwnedFd>, name: &Path, flags: i32) -> io::Result<OwnedFd> {
    let name = CString::new(name.as_os_str().as_encoded_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `name` is a NUL-terminated path that outlives the call; the
    // descriptor returned, if any, is owned by nobody else.
    let fd = unsafe { libc::openat(dirfd, name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is not shared.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl SourceDir {
    /// The source directory: absolute, a directory, inside
    /// `golden360.data_dir` when that is set (checked on its real path, so
    /// symlinks and '..' are followed first).
    pub fn open(source_dir: &str) -> SourceDir {
        require_absolute(Some(source_dir));
        let fd = open_at(None, Path::new(source_dir), libc::O_RDONLY | libc::O_DIRECTORY).unwrap_or_else(|e| {
            if e.raw_os_error() == Some(libc::ENOTDIR) {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("source_dir \"{source_dir}\" is not a directory"),
                    None,
                    "Pass the directory that holds the nine Olist CSV files.",
                );
            }
            os_error("source directory", source_dir, e)
        });
        let real = real_path(&fd).unwrap_or_else(|e| os_error("source directory", source_dir, e));
        confine(&real, source_dir);
        SourceDir { fd, real }
    }

    /// The nine files: those present, in registry order, and the names of
    /// those missing.
    pub fn inventory(&self) -> (Vec<(&'static SourceFile, SourceHandle)>, Vec<&'static str>) {
        let mut present = Vec::new();
        let mut missing = Vec::new();
        for source in &SOURCE_FILES {
            match self.open_file(source.file_name) {
                Some(handle) => present.push((source, handle)),
                None => missing.push(source.file_name),
            }
        }
        (present, missing)
    }

    /// Open one file of the directory, or None if there is none by that name.
    fn open_file(&self, name: &str) -> Option<SourceHandle> {
        let shown = self.real.join(name).display().to_string();
        let fd = match open_at(Some(&self.fd), Path::new(name), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("source file \"{shown}\" is a symbolic link"),
                Some("golden360 reads regular files only, never through a symbolic link.".into()),
                "Copy or move the file itself into the source directory.",
            ),
            Err(e) => os_error("source file", &shown, e),
        };
        let file = File::from(fd);
        let metadata = file.metadata().unwrap_or_else(|e| os_error("source file", &shown, e));
        if !metadata.is_file() {
            // A FIFO or device would block the backend or read forever.
            raise(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("source file \"{shown}\" is not a regular file"),
                None,
                "Each of the nine Olist names must be a regular CSV file.",
            );
        }
        let real = real_path(&file).unwrap_or_else(|e| os_error("source file", &shown, e));
        confine(&real, &shown);
        Some(SourceHandle { file, real })
    }
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

/// Reads a file from its start through positional reads (pread), so two
/// passes over one descriptor never disturb each other. On the backend's
/// thread it checks for a cancel between reads; on a helper thread, which
/// must not touch PostgreSQL, it stops with an error once `stop` is set
/// instead (the backend, cancelled or failing, sets it: `helper::Stop`).
pub struct PositionalReader<'f> {
    file: &'f File,
    offset: u64,
    stop: Option<&'f AtomicBool>,
}

impl<'f> PositionalReader<'f> {
    pub fn new(file: &'f File) -> Self {
        PositionalReader { file, offset: 0, stop: None }
    }

    /// For a helper thread.
    pub fn stopped_by(file: &'f File, stop: &'f AtomicBool) -> Self {
        PositionalReader { file, offset: 0, stop: Some(stop) }
    }
}

impl Read for PositionalReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stop {
            // A pending cancel raises its ERROR here, between two reads.
            None => {
                crate::pg::helper::check_for_interrupts();
            }
            Some(stop) if stop.load(Relaxed) => return Err(io::Error::other("stopped: the ingest ended")),
            Some(_) => {}
        }
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
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
pub fn sha256_file(handle: &SourceHandle) -> (String, u64) {
    let mut buf = vec![0u8; READ_BUFFER];
    hash_all(HashingReader::new(PositionalReader::new(&handle.file)), &mut buf).unwrap_or_else(|e| io_error(&handle.real, e))
}

/// SHA-256 and size of each file, in order. With helper threads, several
/// files at once: the helpers (up to `golden360.helper_threads`) and the
/// backend each take the next file not yet taken; the backend's reads check
/// for a cancel, and a cancel or an error tells the helpers to stop.
pub fn sha256_files(handles: &[&SourceHandle]) -> Vec<(String, u64)> {
    let helpers = crate::ops::helper_threads().min(handles.len().saturating_sub(1));
    if helpers == 0 {
        return handles.iter().map(|handle| sha256_file(handle)).collect();
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let hashed: Vec<Mutex<Option<io::Result<(String, u64)>>>> = handles.iter().map(|_| Mutex::new(None)).collect();
    let take = || next.fetch_add(1, Relaxed);
    let helper_work = || {
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let i = take();
            let Some(handle) = handles.get(i) else { break };
            let result = hash_all(HashingReader::new(PositionalReader::stopped_by(&handle.file, &stop)), &mut buf);
            *hashed[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        }
    };
    std::thread::scope(|scope| {
        let _stop = helper::Stop(&stop);
        let running: Vec<_> = (0..helpers).map(|_| helper::spawn(scope, "golden360 ingest hash", &helper_work)).collect();
        loop {
            let i = take();
            let Some(handle) = handles.get(i) else { break };
            *hashed[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(Ok(sha256_file(handle)));
        }
        running.into_iter().for_each(helper::join);
    });
    hashed
        .into_iter()
        .zip(handles)
        .map(|(slot, handle)| match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(hash)) => hash,
            Some(Err(e)) => io_error(&handle.real, e),
            None => io_error(&handle.real, "it was not hashed"),
        })
        .collect()
}

fn hash_all<R: Read>(mut reader: HashingReader<R>, buf: &mut [u8]) -> io::Result<(String, u64)> {
    while reader.read(buf)? > 0 {}
    Ok(reader.finish())
}

pub fn io_error(path: &Path, e: impl std::fmt::Display) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_IO_ERROR,
        format!("could not read \"{}\": {e}", path.display()),
        None,
        "Check the file on the database server; nothing of this batch was loaded.",
    )
}

/// Fails unless the file's first record is exactly the registry's header
/// (a UTF-8 BOM before it is allowed: the parser drops it).
pub fn check_header(source: &SourceFile, path: &Path, reader: &mut impl super::csv::RecordSource) {
    let found: Vec<String> = match reader.next() {
        Ok(super::csv::Next::Record(record)) => {
            record.fields().map(|f| String::from_utf8_lossy(f).into_owned()).collect()
        }
        Ok(super::csv::Next::TooLong(_)) => vec!["(a header longer than golden360.max_record_bytes)".into()],
        Ok(super::csv::Next::End) => Vec::new(),
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
