//! The bootstrap page an instance serves (`protocol/gateway.md` §7): the files of one
//! directory (`web/dist` after `npm run build`), and the bootstrap document (`index.html`)
//! with the community key and some peers written into its `#peerhost-data` block at each
//! request, compressed then (brotli; a few recent renders kept). When the directory also holds
//! `index-nortc.html` (the same document without the WebRTC client, `web/build.mjs`), that one
//! is served while no WebRTC peer is listed. The document's
//! Content-Security-Policy `<meta>` is also sent as a header, with `frame-ancestors 'none'`
//! (which a `<meta>` cannot carry).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Files a [`Site`] holds at most.
pub const MAX_SITE_FILES: usize = 64;
/// Bytes a [`Site`] holds at most.
pub const MAX_SITE_BYTES: u64 = 16 << 20;
/// Rendered documents kept (one per distinct data block: the peers window rotates).
const RENDERS_KEPT: usize = 16;
/// The document without the WebRTC client, served while no WebRTC peer is listed.
pub const NO_RTC_DOCUMENT: &str = "index-nortc.html";

/// The data block the build leaves empty and the instance fills in.
const DATA_OPEN: &str = r#"<script id="peerhost-data" type="application/json">"#;
const DATA_EMPTY: &str = "null</script>";
const CSP_META: &str = r#"<meta http-equiv="Content-Security-Policy" content=""#;

/// One file of the bootstrap page, with its precompressed variants.
#[derive(Debug, Clone)]
pub(crate) struct SiteFile {
    pub(crate) content_type: &'static str,
    pub(crate) identity: Arc<[u8]>,
    pub(crate) br: Option<Arc<[u8]>>,
    pub(crate) gzip: Option<Arc<[u8]>>,
}

/// The bootstrap document split around its data block.
#[derive(Debug)]
struct Template {
    before: String,
    after: String,
    csp: Option<String>,
    renders: Mutex<Vec<(String, SiteFile)>>,
}

/// The bootstrap page: the files of one directory, read once at start, served at `/NAME`
/// (`/` is `index.html`). `NAME.br` and `NAME.gz` next to a file are sent instead of it to
/// clients that accept them.
#[derive(Debug, Clone, Default)]
pub struct Site {
    files: BTreeMap<String, SiteFile>,
    template: Option<Arc<Template>>,
    /// [`NO_RTC_DOCUMENT`], when the directory has it (never served by its own name).
    no_rtc: Option<Arc<Template>>,
}

/// Why a [`Site`] could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiteError {
    /// The directory or a file could not be read.
    #[error("cannot read the page directory {path}: {source}")]
    Read {
        /// What.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// No `index.html` in it (run `npm run build` in `web/`).
    #[error("{0} has no index.html (build it: cd web && npm ci && npm run build)")]
    NoIndex(String),
    /// Too many files or bytes.
    #[error("{0} holds more than {MAX_SITE_FILES} files or {MAX_SITE_BYTES} bytes")]
    TooLarge(String),
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Brotli at the highest quality (a document is a few KiB: about a millisecond).
fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / 2);
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 11, 22);
        // Writing to a Vec cannot fail.
        let _ = w.write_all(bytes);
    }
    out
}

/// JSON that is safe inside a `<script>` element: no `<`, `>`, `&` or line separators.
pub(crate) fn script_json(v: &serde_json::Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

impl Template {
    fn parse(html: &str) -> Option<Self> {
        let at = html.find(DATA_OPEN)? + DATA_OPEN.len();
        let rest = html[at..].strip_prefix(DATA_EMPTY)?;
        let csp = html.find(CSP_META).and_then(|i| {
            let s = &html[i + CSP_META.len()..];
            s.find('"').map(|end| s[..end].to_owned())
        });
        Some(Self {
            before: html[..at].to_owned(),
            after: format!("</script>{rest}"),
            csp,
            renders: Mutex::new(Vec::new()),
        })
    }

    fn render(&self, data: &str) -> SiteFile {
        let mut renders = self
            .renders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, f)) = renders.iter().find(|(d, _)| d == data) {
            return f.clone();
        }
        let doc = format!("{}{data}{}", self.before, self.after);
        let file = SiteFile {
            content_type: content_type("index.html"),
            br: Some(brotli(doc.as_bytes()).into()),
            identity: doc.into_bytes().into(),
            gzip: None,
        };
        if renders.len() >= RENDERS_KEPT {
            renders.remove(0);
        }
        renders.push((data.to_owned(), file.clone()));
        file
    }
}

impl Site {
    /// Read every plain file of `dir` (not its subdirectories).
    pub fn load(dir: &Path) -> Result<Self, SiteError> {
        let shown = dir.display().to_string();
        let read_err = |source| SiteError::Read {
            path: shown.clone(),
            source,
        };
        let mut raw = BTreeMap::new();
        let mut total = 0u64;
        for e in std::fs::read_dir(dir).map_err(read_err)? {
            let e = e.map_err(read_err)?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if !e.file_type().map_err(read_err)?.is_file()
                || name.starts_with('.')
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                continue;
            }
            let bytes = std::fs::read(e.path()).map_err(read_err)?;
            total += bytes.len() as u64;
            if raw.len() >= 3 * MAX_SITE_FILES || total > MAX_SITE_BYTES {
                return Err(SiteError::TooLarge(shown));
            }
            raw.insert(name, bytes);
        }
        let mut files = BTreeMap::new();
        for (name, bytes) in &raw {
            if name.ends_with(".br") || name.ends_with(".gz") {
                continue;
            }
            let variant = |ext: &str| raw.get(&format!("{name}.{ext}")).map(|b| b[..].into());
            files.insert(
                name.clone(),
                SiteFile {
                    content_type: content_type(name),
                    identity: bytes[..].into(),
                    br: variant("br"),
                    gzip: variant("gz"),
                },
            );
        }
        if files.len() > MAX_SITE_FILES {
            return Err(SiteError::TooLarge(shown));
        }
        let Some(index) = files.get("index.html") else {
            return Err(SiteError::NoIndex(shown));
        };
        let parse = |f: &SiteFile| {
            std::str::from_utf8(&f.identity)
                .ok()
                .and_then(Template::parse)
                .map(Arc::new)
        };
        let template = parse(index);
        // Only with a main template to fall back on; a document without a data block is
        // served as it is, whatever is listed.
        let no_rtc = files
            .remove(NO_RTC_DOCUMENT)
            .and_then(|f| parse(&f))
            .filter(|_| template.is_some());
        Ok(Self {
            files,
            template,
            no_rtc,
        })
    }

    /// The document to serve: [`NO_RTC_DOCUMENT`]'s when no WebRTC peer is listed (`rtc`
    /// false) and the directory has it, else `index.html`'s.
    fn document(&self, rtc: bool) -> Option<&Arc<Template>> {
        match (&self.no_rtc, rtc) {
            (Some(t), false) => Some(t),
            _ => self.template.as_ref(),
        }
    }

    /// The file `name`; `index.html` with `data` (JSON, from [`script_json`]) in its data
    /// block when it has one, without the WebRTC client when `rtc` is false and the build made
    /// that variant.
    pub(crate) fn file(
        &self,
        name: &str,
        rtc: bool,
        data: impl FnOnce() -> String,
    ) -> Option<SiteFile> {
        match (self.document(rtc), name) {
            (Some(t), "index.html") => Some(t.render(&data())),
            _ => self.files.get(name).cloned(),
        }
    }

    /// The Content-Security-Policy header of `name` (served as [`Site::file`] with the same
    /// `rtc` chose it): the document's own policy (its `<meta>`), with `frame-ancestors
    /// 'none'`.
    pub(crate) fn csp(&self, name: &str, rtc: bool) -> Option<String> {
        (name == "index.html").then(|| {
            let own = self.document(rtc).and_then(|t| t.csp.clone());
            match own {
                Some(p) => format!("{p}; frame-ancestors 'none'"),
                None => "frame-ancestors 'none'".to_owned(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = concat!(
        r#"<!doctype html><meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'sha256-x'">"#,
        r#"<script id="peerhost-data" type="application/json">null</script><script type="module">go()</script>"#
    );

    #[test]
    fn the_document_is_templated_escaped_and_compressed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), DOC).unwrap();
        std::fs::write(dir.path().join("sw.js"), "x").unwrap();
        let site = Site::load(dir.path()).unwrap();
        let data = script_json(&serde_json::json!({"community": "ab", "title": "</script><b>"}));
        assert!(!data.contains('<'));
        let f = site.file("index.html", true, || data.clone()).unwrap();
        let doc = std::str::from_utf8(&f.identity).unwrap();
        assert!(doc.contains(&format!(
            "type=\"application/json\">{data}</script><script type=\"module\">go()</script>"
        )));
        let mut plain = Vec::new();
        brotli::BrotliDecompress(&mut &f.br.as_deref().unwrap()[..], &mut plain).unwrap();
        assert_eq!(plain, doc.as_bytes());
        // A second render of the same data is the cached one.
        let again = site.file("index.html", true, || data.clone()).unwrap();
        assert!(Arc::ptr_eq(&f.identity, &again.identity));
        assert_eq!(
            site.csp("index.html", true).unwrap(),
            "default-src 'none'; script-src 'sha256-x'; frame-ancestors 'none'"
        );
        assert_eq!(site.csp("sw.js", true), None);
        assert_eq!(
            &*site.file("sw.js", true, String::new).unwrap().identity,
            b"x"
        );
    }

    #[test]
    fn a_document_without_a_data_block_is_served_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<p>hi").unwrap();
        let site = Site::load(dir.path()).unwrap();
        let f = site.file("index.html", false, || unreachable!()).unwrap();
        assert_eq!(&*f.identity, b"<p>hi");
        assert_eq!(
            site.csp("index.html", true).unwrap(),
            "frame-ancestors 'none'"
        );
    }

    #[test]
    fn without_a_webrtc_peer_the_document_without_the_client_is_served() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), DOC).unwrap();
        let plain = DOC
            .replace("'sha256-x'", "'sha256-y'")
            .replace("go()", "plain()");
        std::fs::write(dir.path().join(NO_RTC_DOCUMENT), &plain).unwrap();
        let site = Site::load(dir.path()).unwrap();
        let doc = |rtc: bool| {
            let f = site.file("index.html", rtc, || "{}".to_owned()).unwrap();
            String::from_utf8(f.identity.to_vec()).unwrap()
        };
        assert!(doc(true).contains("go()") && !doc(true).contains("plain()"));
        assert!(doc(false).contains("{}</script><script type=\"module\">plain()"));
        // Each with its own policy (the scripts' hashes differ).
        assert!(site.csp("index.html", true).unwrap().contains("'sha256-x'"));
        assert!(
            site.csp("index.html", false)
                .unwrap()
                .contains("'sha256-y'")
        );
        // Never served by its own name (its data block is empty there).
        assert!(site.file(NO_RTC_DOCUMENT, false, String::new).is_none());
        // Without the variant, index.html either way.
        std::fs::remove_file(dir.path().join(NO_RTC_DOCUMENT)).unwrap();
        let site = Site::load(dir.path()).unwrap();
        let f = site.file("index.html", false, || "{}".to_owned()).unwrap();
        assert!(std::str::from_utf8(&f.identity).unwrap().contains("go()"));
        assert!(
            site.csp("index.html", false)
                .unwrap()
                .contains("'sha256-x'")
        );
    }
}
