use std::fs;
use std::os::unix::fs::symlink;

use super::*;
use crate::worker::tests::fake::{sha, temp_dir};

/// (path, type, size, mode) of every entry, in order.
fn entries(tar: &[u8]) -> Vec<(String, tar::EntryType, u64, u32)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.entry_type(),
                h.size().unwrap(),
                h.mode().unwrap(),
            )
        })
        .collect()
}

fn analysis(name: &str) -> (PathBuf, PathBuf) {
    let root = temp_dir(name);
    let a = root.join("bundle").join(ANALYSIS_DIR);
    fs::create_dir_all(a.join("web/thumbs")).unwrap();
    fs::write(a.join("notes.txt"), b"hello").unwrap();
    fs::write(a.join("web/b.mp4"), vec![7u8; 3000]).unwrap();
    fs::write(a.join("web/thumbs/000010.jpg"), b"jpg").unwrap();
    fs::write(a.join("web/a.json"), b"{}").unwrap();
    // write_atomic's leftover of a killed write.
    fs::write(a.join("half.tmp"), b"{").unwrap();
    (a, root.join("out.tar"))
}

#[test]
fn the_contents_of_analysis_are_packed_sorted_relative_and_plain() {
    let (a, out) = analysis("pack");
    let p = pack(&a, &out).unwrap();
    let bytes = fs::read(&out).unwrap();
    assert_eq!(p.sha256, sha(&bytes));
    assert_eq!(p.bytes, bytes.len() as u64);
    assert_eq!(p.files, 4);
    let got: Vec<(String, tar::EntryType, u64)> = entries(&bytes)
        .into_iter()
        .map(|(p, t, s, _)| (p, t, s))
        .collect();
    use tar::EntryType::{Directory as D, Regular as R};
    assert_eq!(
        got,
        [
            ("notes.txt".to_string(), R, 5),
            ("web/".to_string(), D, 0),
            ("web/a.json".to_string(), R, 2),
            ("web/b.mp4".to_string(), R, 3000),
            ("web/thumbs/".to_string(), D, 0),
            ("web/thumbs/000010.jpg".to_string(), R, 3),
        ]
    );
    // The bytes come back as they were.
    let mut ar = tar::Archive::new(&bytes[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().into_owned();
        if e.header().entry_type() == R {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            assert_eq!(v, fs::read(a.join(&path)).unwrap());
        }
    }
}

#[test]
fn packing_twice_gives_the_same_bytes() {
    let (a, out) = analysis("again");
    let first = pack(&a, &out).unwrap();
    let second = pack(&a, &out).unwrap();
    assert_eq!(first, second);
}

#[test]
fn an_empty_analysis_folder_packs_to_an_empty_tar() {
    let root = temp_dir("empty");
    fs::create_dir_all(root.join(ANALYSIS_DIR)).unwrap();
    let p = pack(&root.join(ANALYSIS_DIR), &root.join("out.tar")).unwrap();
    assert_eq!(p.files, 0);
    assert!(entries(&fs::read(root.join("out.tar")).unwrap()).is_empty());
}

#[test]
fn a_link_inside_analysis_is_refused_not_followed() {
    let (a, out) = analysis("link");
    let secret = a.parent().unwrap().parent().unwrap().join("secret.txt");
    fs::write(&secret, b"outside").unwrap();
    symlink(&secret, a.join("web/leak.txt")).unwrap();
    let e = pack(&a, &out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "analysis/web/leak.txt: not sent: the result holds only regular files and folders, this is a symbolic link"
    );
    fs::remove_file(a.join("web/leak.txt")).unwrap();
    symlink(a.parent().unwrap(), a.join("up")).unwrap();
    assert!(matches!(pack(&a, &out), Err(ResultError::NotPlain(p, _)) if p == "analysis/up"));
}

#[test]
fn analysis_itself_as_a_link_or_a_fifo_inside_is_refused() {
    let (a, out) = analysis("fifo");
    let fifo = a.join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert!(matches!(
        pack(&a, &out),
        Err(ResultError::NotPlain(_, "a FIFO, socket or device"))
    ));
    fs::remove_file(&fifo).unwrap();
    let link = a.parent().unwrap().join("linked-analysis");
    symlink(&a, &link).unwrap();
    assert!(matches!(
        pack(&link, &out),
        Err(ResultError::NotPlain(_, "not a folder"))
    ));
}

#[test]
fn a_name_lab_web_would_refuse_is_named() {
    let (a, out) = analysis("badname");
    fs::write(a.join(".hidden"), b"x").unwrap();
    let e = pack(&a, &out).unwrap_err();
    assert!(
        e.to_string().starts_with("\"analysis/.hidden\": not sent"),
        "{e}"
    );
}
