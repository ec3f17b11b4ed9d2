//! A workspace's Slack domain, read from what an export carries: files shared in its messages
//! have permalinks on `https://{domain}.slack.com/files/…`. Standard exports have no other
//! record of it, and without it message permalinks cannot be built.

use chatvault_core::FileRef;

/// The `{domain}` of `https://{domain}.slack.com/…`, if `url` is one (Enterprise Grid's
/// `{domain}.enterprise.slack.com` included).
pub(crate) fn slack_domain(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if parsed.scheme() != "https" {
        return None;
    }
    let host = parsed.host_str()?.to_ascii_lowercase();
    let sub = host.strip_suffix(".slack.com")?;
    let sub = sub.strip_suffix(".enterprise").unwrap_or(sub);
    let valid = !sub.is_empty()
        && !sub.contains('.')
        && sub.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !matches!(
            sub,
            "app" | "files" | "api" | "www" | "status" | "slack-files"
        );
    valid.then(|| sub.to_string())
}

/// The domain named by the first file permalink among `files`.
pub(crate) fn from_files(files: &[FileRef]) -> Option<String> {
    files
        .iter()
        .filter_map(|f| f.permalink.as_deref())
        .find_map(slack_domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_workspace_domain_of_a_permalink() {
        assert_eq!(
            slack_domain("https://houstondatavis.slack.com/files/micahstubbs/F064MED17/x.png")
                .as_deref(),
            Some("houstondatavis")
        );
        assert_eq!(
            slack_domain("https://acme.enterprise.slack.com/files/U1/F1/x").as_deref(),
            Some("acme")
        );
        assert_eq!(
            slack_domain("https://slack-files.com/T061A2UFL-F064MED17-9e"),
            None
        );
        assert_eq!(
            slack_domain("https://files.slack.com/files-pri/T1-F1/x"),
            None
        );
        assert_eq!(slack_domain("http://acme.slack.com/files/x"), None);
        assert_eq!(slack_domain("https://evil.com/?acme.slack.com"), None);
    }
}
