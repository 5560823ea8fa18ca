//! Driving the dashboard over plain HTTP: users made with `resq user`,
//! logins, pages and form posts with exactly the headers a test chooses.
#![allow(dead_code)]

use super::http::{request, Response, Server};
use super::Env;

pub const PASSWORD: &str = "correct horse battery staple";

/// `resq user add NAME --role ROLE`, the password on stdin.
pub fn add_user(env: &Env, name: &str, role: &str) {
    use std::io::Write;
    let mut child = env
        .resq()
        .args(["user", "add", name, "--role", role, "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The value of `Set-Cookie: NAME=...` in a response.
pub fn set_cookie(r: &Response, name: &str) -> Option<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, v)| {
            v.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap_or("").to_string())
        })
}

/// Every `Set-Cookie` header, whole.
pub fn set_cookies(r: &Response) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.clone())
        .collect()
}

/// The value of the first `name="FIELD" value="..."` in a page.
pub fn field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// A browser's session, over the raw client.
pub struct Session {
    pub addr: String,
    pub cookie: String,
    pub csrf: String,
}

/// Form-encodes pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Fetches the login form: (its token, the login cookie header value).
pub fn login_form(addr: &str) -> (String, String) {
    let page = request(addr, "GET", "/login", &[], b"");
    assert_eq!(page.status, 200, "{}", page.text());
    let token = field(&page.text(), "token").expect("the login form's token");
    let cookie = set_cookie(&page, "resq-login").expect("the login cookie");
    (token, format!("resq-login={cookie}"))
}

/// Posts the login form with `name` and `password`.
pub fn try_login(addr: &str, name: &str, password: &str, extra_cookie: Option<&str>) -> Response {
    let (token, mut cookie) = login_form(addr);
    if let Some(extra) = extra_cookie {
        cookie = format!("{cookie}; {extra}");
    }
    let body = form(&[("name", name), ("password", password), ("token", &token)]);
    request(
        addr,
        "POST",
        "/login",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        body.as_bytes(),
    )
}

impl Session {
    pub fn login(server: &Server, name: &str) -> Session {
        let r = try_login(&server.addr, name, PASSWORD, None);
        assert_eq!(r.status, 303, "{}", r.text());
        let id = set_cookie(&r, "resq-session").expect("a session cookie");
        let mut s = Session {
            addr: server.addr.clone(),
            cookie: format!("resq-session={id}"),
            csrf: String::new(),
        };
        let page = s.get("/");
        assert_eq!(page.status, 200, "{}", page.text());
        s.csrf = field(&page.text(), "csrf").expect("the page's form token");
        s
    }

    pub fn get(&self, path: &str) -> Response {
        request(&self.addr, "GET", path, &[("Cookie", &self.cookie)], b"")
    }

    /// A form post from this site (Fetch Metadata same-origin), with the
    /// session's token unless `pairs` has its own.
    pub fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Response {
        self.post_with(path, pairs, &[("Sec-Fetch-Site", "same-origin")])
    }

    pub fn post_with(&self, path: &str, pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> Response {
        let mut all: Vec<(&str, &str)> = Vec::new();
        if !pairs.iter().any(|(k, _)| *k == "csrf") {
            all.push(("csrf", &self.csrf));
        }
        all.extend_from_slice(pairs);
        let body = form(&all);
        let mut h = vec![
            ("Cookie", self.cookie.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        h.extend_from_slice(headers);
        request(&self.addr, "POST", path, &h, body.as_bytes())
    }
}
