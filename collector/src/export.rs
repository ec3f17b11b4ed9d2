//! Reading a Slack export, a directory or a `.zip`, one file at a time.
//!
//! Nothing is read ahead: [`ExportArchive::read`] loads one file (a day file is small), so memory
//! stays flat whatever the archive's size. Nothing outside the export is read: symbolic links are
//! refused, and a zip entry is read only up to the size its header declares.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use chatvault_core::{Error, Result};

/// The largest single file read from an export (a day file, `users.json`).
pub const MAX_EXPORT_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// An opened export: a directory or a zip archive in Slack's export layout.
pub struct ExportArchive {
    inner: Inner,
    max_file_bytes: u64,
}

enum Inner {
    Dir(PathBuf),
    Zip {
        archive: Box<zip::ZipArchive<BufReader<File>>>,
        /// A folder all entries sit in (`export-name/`), stripped from names.
        prefix: String,
    },
}

impl std::fmt::Debug for ExportArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Dir(p) => write!(f, "ExportArchive(dir {})", p.display()),
            Inner::Zip { prefix, .. } => write!(f, "ExportArchive(zip, prefix {prefix:?})"),
        }
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!("cannot read export {}: {e}", path.display()))
        .with_context("file", path.display())
}

/// The files that list an export's conversations; each conversation folder must be listed in one.
pub(crate) const CONVERSATION_LISTINGS: [&str; 4] =
    ["channels.json", "groups.json", "dms.json", "mpims.json"];

fn not_an_export(path: &Path, zip: bool, nested: Option<&Path>) -> Error {
    let mut message = format!(
        "no Slack export found at {}: none of {} is at its top level{}",
        path.display(),
        CONVERSATION_LISTINGS.join(", "),
        if zip {
            " or in a folder of the zip"
        } else {
            ""
        }
    );
    if let Some(n) = nested {
        message.push_str(&format!(
            "; {} looks like one: import that folder instead",
            n.display()
        ));
    }
    Error::invalid_input(message).with_context("file", path.display())
}

/// The files that mark an export's top level: a conversation listing, or the org-level users of
/// an Enterprise Grid org export.
const TOP_LEVEL_MARKERS: [&str; 5] = [
    "channels.json",
    "groups.json",
    "dms.json",
    "mpims.json",
    "org_users.json",
];

/// Where an Enterprise Grid org export keeps its workspaces, one folder each.
pub(crate) const GRID_TEAMS_FOLDER: &str = "teams";

/// The listings one of whose presence makes a folder under `teams/` a workspace of a Grid export.
const WORKSPACE_MARKERS: [&str; 5] = [
    "channels.json",
    "groups.json",
    "dms.json",
    "mpims.json",
    "users.json",
];

/// Whether the folder `dir` holds a conversation listing: an export's top level.
fn holds_listing(dir: &Path) -> bool {
    TOP_LEVEL_MARKERS.iter().any(|f| dir.join(f).is_file())
}

/// A sub-folder of `dir` that holds an export, to point a user who chose the folder above it.
fn nested_export(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| holds_listing(p))
        .collect();
    found.sort();
    found.into_iter().next()
}

impl ExportArchive {
    /// Opens a directory, or a `.zip` file, in Slack's export layout.
    ///
    /// An export is recognised by a conversation listing (`channels.json`, `groups.json`,
    /// `dms.json` or `mpims.json`) at its top level (in a zip, at the top or inside the shallowest
    /// folder holding one): without one, no conversation folder could be imported, so an empty
    /// folder or a folder above the export is refused here rather than imported as an empty
    /// workspace.
    ///
    /// # Errors
    /// `InvalidInput` naming the path when it does not exist, is not a readable zip, or holds no
    /// Slack export.
    pub fn open(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
        if meta.is_dir() {
            if !holds_listing(path) {
                return Err(not_an_export(path, false, nested_export(path).as_deref()));
            }
            return Ok(ExportArchive {
                inner: Inner::Dir(path.to_path_buf()),
                max_file_bytes: MAX_EXPORT_FILE_BYTES,
            });
        }
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        let archive = zip::ZipArchive::new(BufReader::new(file))
            .map_err(|e| io_err(path, format!("not a zip archive: {e}")))?;
        // The export may sit inside one folder of the zip: find where its listings are.
        let mut prefix: Option<String> = None;
        for name in archive.file_names() {
            if name.starts_with("__MACOSX/") {
                continue;
            }
            let base = name.rsplit('/').next().unwrap_or(name);
            if TOP_LEVEL_MARKERS.contains(&base) {
                let p = &name[..name.len() - base.len()];
                if prefix.as_ref().is_none_or(|q| p.len() < q.len()) {
                    prefix = Some(p.to_string());
                }
            }
        }
        let Some(prefix) = prefix else {
            return Err(not_an_export(path, true, None));
        };
        Ok(ExportArchive {
            inner: Inner::Zip {
                archive: Box::new(archive),
                prefix,
            },
            max_file_bytes: MAX_EXPORT_FILE_BYTES,
        })
    }

    /// The workspaces of an Enterprise Grid org export: the folders under `teams/` that hold a
    /// listing (`channels.json`, `groups.json`, `dms.json`, `mpims.json` or `users.json`), by
    /// folder name, sorted. Empty for a workspace export (a conversation folder named `teams`
    /// holds day files, not listings). Links under `teams/` are listed in the second vector,
    /// refused.
    ///
    /// # Errors
    /// As [`entries_at`](Self::entries_at).
    pub fn grid_workspaces(&mut self) -> Result<(Vec<String>, Vec<String>)> {
        let base = format!("{GRID_TEAMS_FOLDER}/");
        let entries = self.entries_at(&base)?;
        let folders = entries
            .folders
            .iter()
            .filter(|f| {
                WORKSPACE_MARKERS
                    .iter()
                    .any(|m| entries.json.binary_search(&format!("{f}/{m}")).is_ok())
            })
            .filter_map(|f| f.strip_prefix(&base).map(str::to_string))
            .collect();
        Ok((folders, entries.links))
    }

    /// Caps the bytes read from any one file at `max` (default [`MAX_EXPORT_FILE_BYTES`]).
    pub fn with_max_file_bytes(mut self, max: u64) -> Self {
        self.max_file_bytes = max;
        self
    }

    /// What the export holds: every `.json` file at the top level or one folder down (as
    /// `"name.json"` or `"folder/name.json"`, sorted), the folders, and the symbolic links that
    /// were refused (links are never followed: nothing outside the export is read).
    ///
    /// # Errors
    /// `InvalidInput` when a directory cannot be listed or a zip entry cannot be read.
    pub fn entries(&mut self) -> Result<ExportEntries> {
        self.entries_at("")
    }

    /// [`entries`](Self::entries) of the folder `base` of the export (`"teams/acme/"`, ending
    /// in `/`; `""` for the top level): its `.json` files and those one folder further down, its
    /// folders and its refused links, all named from the export's top level
    /// (`"teams/acme/general/2016-01-02.json"`). A `base` that is absent lists nothing.
    ///
    /// # Errors
    /// `InvalidInput` when a directory cannot be listed, a zip entry cannot be read, or `base`
    /// (or a folder on the way to it) is a symbolic link.
    pub fn entries_at(&mut self, base: &str) -> Result<ExportEntries> {
        let mut out = ExportEntries::default();
        match &mut self.inner {
            Inner::Dir(root) => {
                let mut here = root.clone();
                for part in base.split('/').filter(|p| !p.is_empty()) {
                    here.push(part);
                    match std::fs::symlink_metadata(&here) {
                        Ok(m) if m.file_type().is_symlink() => {
                            return Err(Error::invalid_input(format!(
                                "{base} is a symbolic link: links are not followed, so nothing outside the export is read"
                            ))
                            .with_context("file", base));
                        }
                        Ok(m) if m.is_dir() => {}
                        Ok(_) => return Ok(out),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                        Err(e) => return Err(io_err(&here, e)),
                    }
                }
                for entry in std::fs::read_dir(&here).map_err(|e| io_err(&here, e))? {
                    let entry = entry.map_err(|e| io_err(&here, e))?;
                    let name = format!("{base}{}", entry.file_name().to_string_lossy());
                    let ft = entry.file_type().map_err(|e| io_err(&entry.path(), e))?;
                    if ft.is_symlink() {
                        out.links.push(name);
                    } else if ft.is_dir() {
                        let dir = entry.path();
                        out.folders.push(name.clone());
                        for sub in std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
                            let sub = sub.map_err(|e| io_err(&dir, e))?;
                            let sname = sub.file_name().to_string_lossy().to_string();
                            let sft = sub.file_type().map_err(|e| io_err(&sub.path(), e))?;
                            if !sname.ends_with(".json") {
                                continue;
                            }
                            if sft.is_symlink() {
                                out.links.push(format!("{name}/{sname}"));
                            } else {
                                out.json.push(format!("{name}/{sname}"));
                            }
                        }
                    } else if name.ends_with(".json") {
                        out.json.push(name);
                    }
                }
            }
            Inner::Zip { archive, prefix } => {
                let start = format!("{prefix}{base}");
                for i in 0..archive.len() {
                    let entry = archive.by_index_raw(i).map_err(|e| {
                        Error::invalid_input(format!("cannot read entry {i} of the zip: {e}"))
                    })?;
                    let Some(rel) = entry.name().strip_prefix(start.as_str()) else {
                        continue;
                    };
                    if rel.starts_with("__MACOSX") || rel.is_empty() {
                        continue;
                    }
                    let rel = rel.trim_end_matches('/').to_string();
                    let depth = rel.matches('/').count();
                    if let Some((folder, _)) = rel.split_once('/') {
                        out.folders.push(format!("{base}{folder}"));
                    } else if entry.is_dir() {
                        out.folders.push(format!("{base}{rel}"));
                    }
                    if entry.is_symlink() {
                        out.links.push(format!("{base}{rel}"));
                    } else if !entry.is_dir() && rel.ends_with(".json") && depth <= 1 {
                        out.json.push(format!("{base}{rel}"));
                    }
                }
            }
        }
        out.json.sort();
        out.links.sort();
        out.folders.sort();
        out.folders.dedup();
        Ok(out)
    }

    /// The bytes of one file (`None` if the export has no such file).
    ///
    /// A symbolic link is refused, not followed. In a zip, an entry is read only up to the size
    /// its header declares: one that inflates further is refused (a corrupt archive or a zip
    /// bomb), so memory stays bounded by the declared size, itself capped by
    /// [`with_max_file_bytes`](Self::with_max_file_bytes).
    ///
    /// # Errors
    /// `InvalidInput` naming the file when it cannot be read, is a symbolic link, is too large or
    /// inflates past its declared size.
    pub fn read(&mut self, rel: &str) -> Result<Option<Vec<u8>>> {
        let ctx = |e: Error| e.with_context("file", rel);
        let max = self.max_file_bytes;
        let too_big = |len: u64| {
            ctx(Error::invalid_input(format!(
                "{rel} is {len} bytes, more than the {max} allowed"
            )))
        };
        match &mut self.inner {
            Inner::Dir(root) => {
                let path = root.join(rel);
                // The file and the folder it sits in must both be real, not links.
                let mut here = root.clone();
                for part in rel.split('/') {
                    here.push(part);
                    match std::fs::symlink_metadata(&here) {
                        Ok(m) if m.file_type().is_symlink() => {
                            return Err(ctx(Error::invalid_input(format!(
                                "{} is a symbolic link: links are not followed, so nothing outside the export is read",
                                here.strip_prefix(&*root).unwrap_or(&here).display()
                            ))));
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                        Err(e) => return Err(io_err(&here, e)),
                    }
                }
                let file = File::open(&path).map_err(|e| io_err(&path, e))?;
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                if len > max {
                    return Err(too_big(len));
                }
                let mut buf = Vec::with_capacity(len as usize);
                // Bounded too: a file growing while read stops at the cap.
                BufReader::new(file)
                    .take(max + 1)
                    .read_to_end(&mut buf)
                    .map_err(|e| io_err(&path, e))?;
                if buf.len() as u64 > max {
                    return Err(too_big(buf.len() as u64));
                }
                Ok(Some(buf))
            }
            Inner::Zip { archive, prefix } => {
                let name = format!("{prefix}{rel}");
                let entry = match archive.by_name(&name) {
                    Ok(e) => e,
                    Err(zip::result::ZipError::FileNotFound) => return Ok(None),
                    Err(e) => {
                        return Err(ctx(Error::invalid_input(format!(
                            "cannot read {rel} from the zip: {e}"
                        ))))
                    }
                };
                if entry.is_symlink() {
                    return Err(ctx(Error::invalid_input(format!(
                        "{rel} is a symbolic link in the zip: links are not followed, so nothing outside the export is read"
                    ))));
                }
                let declared = entry.size();
                if declared > max {
                    return Err(too_big(declared));
                }
                let mut buf = Vec::with_capacity(declared.min(INITIAL_CAPACITY) as usize);
                entry
                    .take(declared + 1)
                    .read_to_end(&mut buf)
                    .map_err(|e| {
                        ctx(Error::invalid_input(format!(
                            "cannot read {rel} from the zip: {e}"
                        )))
                    })?;
                if buf.len() as u64 > declared {
                    return Err(ctx(Error::invalid_input(format!(
                        "{rel} inflates past the {declared} bytes its zip header declares: a corrupt or malicious archive (zip bomb); refused after reading {} bytes",
                        buf.len()
                    ))));
                }
                Ok(Some(buf))
            }
        }
    }
}

/// What [`ExportArchive::entries`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportEntries {
    /// `.json` files at the top level or one folder down, sorted.
    pub json: Vec<String>,
    /// Folders at the top level, sorted.
    pub folders: Vec<String>,
    /// Symbolic links found and refused, sorted.
    pub links: Vec<String>,
}

/// The most a zip read reserves up front, whatever its header says.
const INITIAL_CAPACITY: u64 = 16 * 1024 * 1024;

/// Parses a JSON file's bytes. Invalid UTF-8 is replaced (U+FFFD) rather than losing the whole
/// file; the returned warning says where it was.
///
/// # Errors
/// `InvalidInput` naming the file, line and column of a syntax error.
pub(crate) fn parse_json(rel: &str, bytes: &[u8]) -> Result<(serde_json::Value, Option<String>)> {
    let (text, warning) = match std::str::from_utf8(bytes) {
        Ok(s) => (std::borrow::Cow::Borrowed(s), None),
        Err(e) => {
            let at = e.valid_up_to();
            let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
            (
                String::from_utf8_lossy(bytes),
                Some(format!(
                    "invalid UTF-8 at byte {at} (line {line}); invalid bytes replaced with U+FFFD"
                )),
            )
        }
    };
    let value = serde_json::from_str(&text).map_err(|e| {
        Error::invalid_input(format!(
            "malformed JSON in {rel} at line {}, column {}: {e}",
            e.line(),
            e.column()
        ))
        .with_context("file", rel)
        .with_context("line", e.line())
    })?;
    Ok((value, warning))
}
