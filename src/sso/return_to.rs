//! Where a browser goes after login: only ever a path on this gateway. Anything else — another
//! origin (`https://…`), a protocol-relative `//host`, the backslash forms browsers read as
//! `//` (`/\host`), percent-encoded versions of those, control characters — becomes `/ui/`.

pub const HOME: &str = "/ui/";
const MAX_LEN: usize = 2048;

/// One round of percent-decoding (invalid escapes kept as they are).
fn decode_once(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn local(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && path.bytes().all(|c| c.is_ascii_graphic())
        && !dot_segments(path)
}

/// Whether the path (before any query or fragment) has a `.` or `..` segment: `/..//evil`
/// is resolved by the browser to the path `//evil`, which whatever reads the URL next (a
/// proxy, a page building links from it) may take for another host. No page here needs one.
fn dot_segments(path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    path.split('/').any(|seg| seg == "." || seg == "..")
}

/// `raw` (already decoded once from the query string) if it is a local path, else `/ui/`.
pub fn sanitize(raw: Option<&str>) -> String {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return HOME.to_string();
    };
    if raw.len() > MAX_LEN || !local(raw) {
        return HOME.to_string();
    }
    // Whatever decoding a browser or a proxy in front might still apply must stay local too.
    let mut seen = raw.to_string();
    for _ in 0..4 {
        let next = decode_once(&seen);
        if next == seen {
            break;
        }
        let still_local = next.starts_with('/')
            && !next.starts_with("//")
            && !next.contains('\\')
            && !next.chars().any(char::is_control)
            && !dot_segments(&next);
        if !still_local {
            return HOME.to_string();
        }
        seen = next;
    }
    raw.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_survive() {
        for ok in [
            "/ui/",
            "/ui/keys?x=1",
            "/key/list",
            "/ui/a%20b",
            "/ui/?next=../x",
            "/ui/a..b/.c",
        ] {
            assert_eq!(sanitize(Some(ok)), ok, "{ok}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "http:evil",
            "javascript:alert(1)",
            "evil.example",
            "/%2Fevil.example",
            "/%5Cevil.example",
            "%2F%2Fevil.example",
            "/%252F%252Fevil",
            "/ui/\r\nSet-Cookie: x=y",
            "/ui/\t",
            "/ü",
            " //evil",
            "/..//evil.example",
            "/./%2Fevil.example",
            "/ui/../..//evil.example",
            "/%2E%2E//evil.example",
            "/%2e./%2fevil",
            "/%09/evil.example",
        ] {
            assert_eq!(sanitize(Some(bad)), HOME, "{bad:?}");
        }
        assert_eq!(sanitize(None), HOME);
        assert_eq!(sanitize(Some("")), HOME);
        assert_eq!(sanitize(Some(&format!("/{}", "a".repeat(5000)))), HOME);
    }
}
