//! Hiding passwords in database URLs before they reach a message or a log.

/// `url` with its password replaced by `***`: the one in the user info
/// (`postgres://user:***@host/db`) and the value of any query parameter whose name contains
/// `password` (`?password=***`).
///
/// Works on malformed URLs too (a password with an unescaped `@`, `/` or `?`), erring on the
/// side of hiding more: everything between the user name and the last `@` is hidden.
///
/// ```
/// use chatvault_core::redact_url;
///
/// assert_eq!(
///     redact_url("postgres://app:s3cret@db:5432/chat?sslmode=require"),
///     "postgres://app:***@db:5432/chat?sslmode=require"
/// );
/// assert_eq!(redact_url("postgres://db/chat?password=s3cret"), "postgres://db/chat?password=***");
/// assert_eq!(redact_url("sqlite://data/chat.db"), "sqlite://data/chat.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let (head, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    // The user info ends at the last `@` of the authority. A password may hold an unescaped
    // `/`, `?` or `#`, so when the part before the first `?`/`#` has no `@`, the last `@`
    // anywhere is taken: hiding too much beats leaking.
    let before_query = rest.find(['?', '#']).map_or(rest, |i| &rest[..i]);
    let at = before_query.rfind('@').or_else(|| rest.rfind('@'));
    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    let tail = match at {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            &rest[at..]
        }
        None => rest,
    };
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..=q]);
            out.push_str(&redact_query(&tail[q + 1..]));
        }
        None => out.push_str(tail),
    }
    out
}

/// The secrets [`redact_url`] hides in `url` — as written and percent-decoded — so that a
/// message a library built from the URL can be checked or scrubbed. Empty secrets are left out.
///
/// ```
/// use chatvault_core::url_secrets;
///
/// assert_eq!(url_secrets("postgres://app:p%40ss@db/chat"), ["p%40ss", "p@ss"]);
/// assert!(url_secrets("postgres://db/chat").is_empty());
/// ```
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut raw = Vec::new();
    let rest = url.find("://").map_or(url, |i| &url[i + 3..]);
    let before_query = rest.find(['?', '#']).map_or(rest, |i| &rest[..i]);
    let at = before_query.rfind('@').or_else(|| rest.rfind('@'));
    let tail = match at {
        Some(at) => {
            if let Some((_, password)) = rest[..at].split_once(':') {
                raw.push(password);
            }
            &rest[at..]
        }
        None => rest,
    };
    if let Some((_, query)) = tail.split_once('?') {
        for pair in query.split('&') {
            if let Some((name, value)) = pair.split_once('=') {
                if name.to_ascii_lowercase().contains("password") {
                    raw.push(value.split('#').next().unwrap_or(value));
                }
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    for s in raw.into_iter().filter(|s| !s.is_empty()) {
        for v in [s.to_string(), percent_decode(s)] {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.to_ascii_lowercase().contains("password") => {
                format!("{name}=***")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn hides_passwords() {
        let cases = [
            ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
            ("postgresql://u:pw@h:5432", "postgresql://u:***@h:5432"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p/s?s#w@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u:pw@h/db?a=1&PassWord=x&b=2",
                "postgres://u:***@h/db?a=1&PassWord=***&b=2",
            ),
            (
                "postgres://h/db?sslpassword=x",
                "postgres://h/db?sslpassword=***",
            ),
            (
                "postgres://u:pw@h:notaport/db",
                "postgres://u:***@h:notaport/db",
            ),
            ("u:pw@h", "u:***@h"),
            ("", ""),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
            for secret in super::url_secrets(url) {
                assert!(!redact_url(url).contains(&secret), "{url}: {secret}");
            }
        }
    }

    #[test]
    fn finds_secrets() {
        use super::url_secrets;
        assert_eq!(
            url_secrets("postgres://u:p%40s@h/db?password=q%2"),
            ["p%40s", "p@s", "q%2"]
        );
        assert_eq!(url_secrets("postgres://u:p?w@h/db"), ["p?w"]);
        assert!(url_secrets("postgres://u@h/db?sslmode=x").is_empty());
    }
}
