//! The pages, embedded in the binary: `widget/` under `/widget/`, `operator-console/` under
//! `/console/` (with `/coordinator/` and `/setup` as shortcuts), and the landing page. In debug
//! builds rust-embed reads the same folders from disk, so front-end edits show without a rebuild.
//!
//! A requested path never leaves its folder, in any build: [`page_path`] refuses, before any
//! lookup, every path that could name something else (`..` and `.` segments, absolute paths,
//! backslashes, NUL; the router has already decoded `%2f` and `%2e`). In debug builds, where
//! rust-embed reads the disk and follows a symlink outside the folder, a file is also served
//! only if it resolves inside its folder ([`resolve_inside`]); a release build serves only the
//! files embedded at build time, and a test checks that every one of them resolves inside.

use std::path::{Path as FsPath, PathBuf};

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../widget/"]
#[exclude = "*.md"]
struct Widget;

#[derive(RustEmbed)]
#[folder = "../operator-console/"]
#[exclude = "*.md"]
struct Console;

#[derive(RustEmbed)]
#[folder = "assets/"]
#[exclude = "*.json"]
struct Gateway;

/// A page folder: its embedded files and the folder on disk they come from (the `folder`
/// attribute above, which rust-embed takes relative to the crate).
trait Folder: RustEmbed {
    const DIR: &'static str;
}

impl Folder for Widget {
    const DIR: &'static str = concat!(env!("CARGO_MANIFEST_DIR"), "/../widget/");
}

impl Folder for Console {
    const DIR: &'static str = concat!(env!("CARGO_MANIFEST_DIR"), "/../operator-console/");
}

impl Folder for Gateway {
    const DIR: &'static str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/");
}

/// `path` (already percent-decoded) if it can only name a file inside a page folder: relative,
/// made of non-empty segments that do not start with `.` (so no `.`, `..` or hidden files), and
/// free of backslashes (rust-embed reads them as `/`), `:` (drive prefixes), `%` (a second
/// decoding) and control characters such as NUL.
pub fn page_path(path: &str) -> Option<&str> {
    let forbidden = |c: char| c == '\\' || c == ':' || c == '%' || c.is_control();
    let clean = !path.is_empty()
        && !path.contains(forbidden)
        && path
            .split('/')
            .all(|segment| !segment.is_empty() && !segment.starts_with('.'));
    clean.then_some(path)
}

/// The file `rel` names inside `root` with every symlink resolved, or `None` when it does not
/// exist, is not a regular file, or resolves outside `root`.
pub fn resolve_inside(root: &FsPath, rel: &str) -> Option<PathBuf> {
    let root = root.canonicalize().ok()?;
    let file = root.join(page_path(rel)?).canonicalize().ok()?;
    (file.starts_with(&root) && file.is_file()).then_some(file)
}

fn serve<F: Folder>(path: &str) -> Response {
    let found = page_path(path)
        .filter(|rel| !cfg!(debug_assertions) || resolve_inside(FsPath::new(F::DIR), rel).is_some())
        .and_then(F::get);
    match found {
        Some(file) => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            (
                [
                    (header::CONTENT_TYPE, mime.as_ref().to_owned()),
                    (header::CACHE_CONTROL, "no-cache".to_owned()),
                ],
                file.data,
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

pub async fn landing() -> Response {
    serve::<Gateway>("index.html")
}

pub async fn gateway_file(Path(path): Path<String>) -> Response {
    serve::<Gateway>(&path)
}

pub async fn redirect_widget() -> Redirect {
    Redirect::permanent("/widget/")
}

pub async fn widget_index() -> Response {
    serve::<Widget>("chat.html")
}

pub async fn widget_file(Path(path): Path<String>) -> Response {
    serve::<Widget>(&path)
}

pub async fn redirect_console() -> Redirect {
    Redirect::permanent("/console/")
}

pub async fn console_index() -> Response {
    serve::<Console>("index.html")
}

pub async fn console_file(Path(path): Path<String>) -> Response {
    serve::<Console>(&path)
}

pub async fn coordinator() -> Response {
    serve::<Console>("coordinator.html")
}

pub async fn setup() -> Response {
    serve::<Console>("setup.html")
}

pub async fn admin() -> Response {
    serve::<Console>("admin.html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_paths_that_could_leave_the_folder_are_refused() {
        for ok in ["chat.html", "i18n/ja.json", "a-b_c.1.js"] {
            assert_eq!(page_path(ok), Some(ok));
        }
        for bad in [
            "",
            "/etc/passwd",
            "../secret",
            "i18n/../../secret",
            "./chat.html",
            "i18n/./ja.json",
            "i18n//ja.json",
            "chat.html/",
            ".env",
            "..\\secret",
            "i18n\\ja.json",
            "chat.html\0.js",
            "C:/Windows/win.ini",
            "%2e%2e/secret",
            "chat\n.html",
        ] {
            assert_eq!(page_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_symlink_inside_a_page_folder_that_points_outside_is_not_served() {
        let dir = std::env::temp_dir().join(format!("tsunagu-assets-{}", ulid::Ulid::new()));
        let pages = dir.join("pages");
        std::fs::create_dir_all(pages.join("sub")).unwrap();
        std::fs::write(pages.join("index.html"), "page").unwrap();
        std::fs::write(pages.join("sub/inner.js"), "script").unwrap();
        std::fs::write(dir.join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink("../secret.txt", pages.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink("/etc/os-release", pages.join("os-release")).unwrap();
        std::os::unix::fs::symlink("..", pages.join("up")).unwrap();
        std::os::unix::fs::symlink("index.html", pages.join("alias.html")).unwrap();

        assert_eq!(
            resolve_inside(&pages, "index.html"),
            Some(pages.canonicalize().unwrap().join("index.html"))
        );
        assert!(resolve_inside(&pages, "sub/inner.js").is_some());
        assert!(
            resolve_inside(&pages, "alias.html").is_some(),
            "a symlink that stays inside is fine"
        );
        for outside in [
            "leak.txt",
            "os-release",
            "up/secret.txt",
            "../secret.txt",
            "sub",
        ] {
            assert_eq!(resolve_inside(&pages, outside), None, "{outside}");
        }
        // The same through the folder's own path written with a symlink in it.
        std::os::unix::fs::symlink(&pages, dir.join("pages-link")).unwrap();
        assert!(resolve_inside(&dir.join("pages-link"), "index.html").is_some());
        assert_eq!(resolve_inside(&dir.join("pages-link"), "leak.txt"), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A release build embeds what the folders hold at build time, following symlinks: none
    /// of it may come from outside.
    #[test]
    fn every_embedded_file_resolves_inside_its_folder() {
        fn check<F: Folder>() -> usize {
            let mut n = 0;
            for name in F::iter() {
                assert!(
                    resolve_inside(FsPath::new(F::DIR), &name).is_some(),
                    "{}{name} resolves outside its folder",
                    F::DIR
                );
                assert!(serve::<F>(&name).status().is_success(), "{name} is served");
                n += 1;
            }
            n
        }
        assert!(check::<Widget>() > 3);
        assert!(check::<Console>() > 3);
        assert!(check::<Gateway>() > 1);
    }
}
