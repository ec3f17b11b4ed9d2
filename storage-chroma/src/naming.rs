//! Collection names: one pair per workspace, injective so that two workspaces never share one.
//!
//! Workspace ids may contain `-`, `_`, `.` and `:`; Chroma names allow `[a-zA-Z0-9._-]` and must
//! start and end with a letter or digit. So letters and digits are kept, and every other byte is
//! written `_xx` (two lowercase hex digits): `T-1.a` → `T_2d1_2ea`. `_` only ever starts an escape,
//! so the encoding is reversible, and the result never contains `.` — which leaves the
//! `.tombstones` suffix free.

use chatvault_core::WorkspaceId;

/// The prefix of every collection this store creates.
pub(crate) const PREFIX: &str = "chatvault_";
const TOMBSTONE_SUFFIX: &str = ".tombstones";

fn encode(ws: &WorkspaceId) -> String {
    let mut out = String::with_capacity(ws.as_str().len() * 2);
    for b in ws.as_str().bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The collection of the workspace's live documents.
pub(crate) fn content_collection(ws: &WorkspaceId) -> String {
    format!("{PREFIX}{}", encode(ws))
}

/// The collection of the workspace's tombstones.
pub(crate) fn tombstone_collection(ws: &WorkspaceId) -> String {
    format!("{PREFIX}{}{TOMBSTONE_SUFFIX}", encode(ws))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::validate_name;

    #[test]
    fn names_are_valid_and_distinct() {
        let ids = [
            "T1",
            "t1",
            "T-1",
            "T_1",
            "T.1",
            "T:1",
            "T_2d1",
            "a",
            "-",
            "x".repeat(64).as_str(),
        ]
        .map(|s| WorkspaceId::new(s).unwrap());
        let mut seen = std::collections::HashSet::new();
        for id in &ids {
            for name in [content_collection(id), tombstone_collection(id)] {
                validate_name("collection", &name).unwrap();
                assert!(seen.insert(name.clone()), "collision on {name}");
            }
        }
        assert_eq!(content_collection(&ids[2]), "chatvault_T_2d1");
    }
}
