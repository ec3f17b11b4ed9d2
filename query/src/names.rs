//! Names people type, resolved to ids.

use chatvault_core::{Error, MetadataStore, Result, UserId, WorkspaceId};

/// A user given as `@handle`, display or real name, or an id.
///
/// # Errors
/// `NotFound` naming the user.
pub async fn resolve_user(
    meta: &dyn MetadataStore,
    workspace: &WorkspaceId,
    given: &str,
) -> Result<UserId> {
    let name = given.trim_start_matches('@');
    let users = meta.list_users(workspace).await?;
    let found = users.iter().find(|u| u.id.as_str() == name).or_else(|| {
        users.iter().find(|u| {
            u.name.eq_ignore_ascii_case(name)
                || u.display_name
                    .as_deref()
                    .is_some_and(|d| d.eq_ignore_ascii_case(name))
                || u.real_name
                    .as_deref()
                    .is_some_and(|d| d.eq_ignore_ascii_case(name))
        })
    });
    found
        .map(|u| u.id.clone())
        .ok_or_else(|| Error::not_found(format!("no user {given:?} in workspace {workspace}")))
}
