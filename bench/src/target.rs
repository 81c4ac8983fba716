//! Target specs: which registry to measure and how to log in to it.
//!
//! Written as `URL` or `NAME=URL`, optionally followed by comma-separated
//! settings:
//!
//! ```text
//! --target http://127.0.0.1:5000
//! --target berth=http://127.0.0.1:5000
//! --target hub=https://registry.example,user=me,password-env=HUB_PASSWORD
//! --target zot=https://10.0.0.5:5000,insecure,token-env=ZOT_TOKEN
//! --target corp=https://registry.corp:443,ca=/etc/ssl/corp-ca.pem
//! ```
//!
//! `user`/`password` (or `password-env`, to keep it out of the process
//! list) are sent as basic credentials, to the registry or to its token
//! endpoint; `token`/`token-env` is a fixed bearer token; `insecure`
//! accepts any TLS certificate for this target; `ca` adds a PEM file of
//! certificate authorities to trust.

use std::path::PathBuf;

use reqwest::Url;

/// A parsed `--target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// Name shown in reports.
    pub name: String,
    /// Base URL of the registry.
    pub url: Url,
    /// User for basic or token authentication.
    pub user: Option<String>,
    /// Password for `user`.
    pub password: Option<String>,
    /// Fixed bearer token.
    pub token: Option<String>,
    /// Accept any TLS certificate.
    pub insecure: bool,
    /// PEM file of extra certificate authorities to trust.
    pub ca_file: Option<PathBuf>,
}

impl TargetSpec {
    /// Parses a spec; `lookup_env` reads `*-env` settings.
    pub fn parse(
        spec: &str,
        lookup_env: impl Fn(&str) -> Option<String>,
    ) -> Result<TargetSpec, String> {
        let mut parts = spec.split(',');
        let first = parts.next().unwrap_or_default().trim();

        let (mut name, url_text) = match first.split_once('=') {
            Some((name, url)) if !name.contains(':') && !name.contains('/') => {
                (Some(name.to_string()), url)
            }
            _ => (None, first),
        };
        let url = Url::parse(url_text)
            .map_err(|e| format!("target {spec:?}: bad URL {url_text:?}: {e}"))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(format!("target {spec:?}: URL must be http or https"));
        }

        let mut target = TargetSpec {
            name: String::new(),
            url,
            user: None,
            password: None,
            token: None,
            insecure: false,
            ca_file: None,
        };

        for part in parts.map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = match part.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (part, None),
            };
            let need = |v: Option<&str>| {
                v.map(str::to_string)
                    .ok_or_else(|| format!("target {spec:?}: {key} needs a value"))
            };
            let env = |v: Option<&str>| {
                let var = need(v)?;
                lookup_env(&var).ok_or_else(|| format!("target {spec:?}: {var} is not set"))
            };
            match key {
                "name" => name = Some(need(value)?),
                "user" => target.user = Some(need(value)?),
                "password" => target.password = Some(need(value)?),
                "password-env" => target.password = Some(env(value)?),
                "token" => target.token = Some(need(value)?),
                "token-env" => target.token = Some(env(value)?),
                "insecure" => target.insecure = true,
                "ca" => target.ca_file = Some(PathBuf::from(need(value)?)),
                _ => return Err(format!("target {spec:?}: unknown setting {key:?}")),
            }
        }

        target.name = name.unwrap_or_else(|| {
            let host = target.url.host_str().unwrap_or("registry");
            match target.url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            }
        });
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<TargetSpec, String> {
        TargetSpec::parse(spec, |var| (var == "PW").then(|| "secret".into()))
    }

    #[test]
    fn plain_url_is_named_by_host() {
        let t = parse("http://127.0.0.1:5000").unwrap();
        assert_eq!(t.name, "127.0.0.1:5000");
        assert_eq!(t.user, None);
    }

    #[test]
    fn name_and_settings_parse() {
        let t = parse("hub=https://r.example,user=me,password-env=PW,insecure").unwrap();
        assert_eq!(t.name, "hub");
        assert_eq!(t.url.as_str(), "https://r.example/");
        assert_eq!(t.user.as_deref(), Some("me"));
        assert_eq!(t.password.as_deref(), Some("secret"));
        assert!(t.insecure);
    }

    #[test]
    fn bad_targets_are_refused() {
        for spec in [
            "nothing",
            "ftp://x",
            "a=http://x,colour=blue",
            "a=http://x,password-env=MISSING",
            "a=http://x,user",
        ] {
            assert!(parse(spec).is_err(), "{spec}");
        }
    }
}
