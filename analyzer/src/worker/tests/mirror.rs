use std::fs;
use std::os::unix::fs::symlink;
use std::time::{Duration, SystemTime};

use lab_model::Bundle;

use super::*;
use crate::worker::api::Server;
use crate::worker::tests::fake::{self, Fake, listing, quick_backoff, temp_dir};

const MEDIA: &str = "media/main-00001.mkv";

fn sync_from(fake: &Fake, dir: &Path, files: &[LeaseFile]) -> Result<Synced, MirrorError> {
    let fetch = |path: &str, offset: u64| fake.open_file(1, "lease-1", path, offset);
    let fetcher = Fetcher {
        fetch: &fetch,
        stop: &|| false,
        log: &|_| {},
        backoff: quick_backoff(),
        max_tries: 3,
    };
    sync(dir, &dir.with_extension("sums.json"), files, &fetcher)
}

/// The bundle's files, as lab-web holds them.
type Files = Vec<(&'static str, Vec<u8>)>;

/// A fake lab-web with the minimal bundle, its listing, and an empty copy folder.
fn setup(name: &str) -> (Fake, Vec<LeaseFile>, PathBuf, Files) {
    let files = fake::bundle_files();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (*p, b.as_slice())).collect();
    let dir = temp_dir(name).join("S1");
    (Fake::with_files(&refs), listing(&refs), dir, files)
}

fn assert_copy(dir: &Path, files: &Files) {
    for (p, b) in files {
        assert_eq!(&fs::read(dir.join(p)).unwrap(), b, "{p}");
    }
    Bundle::new(dir)
        .check_contents()
        .expect("lab-analyze run would take it");
}

#[test]
fn listed_files_are_kept_their_parts_resumed_and_the_rest_deleted() {
    let files = listing(&[(MEDIA, b"x"), ("a.part", b"y"), ("manifest.json", b"{}")]);
    let l = Listed::new(&files);
    let file = Kind::File { nlink: 1 };
    assert_eq!(l.judge(MEDIA, file), Verdict::Keep);
    assert_eq!(l.judge("media", Kind::Dir), Verdict::Descend);
    assert_eq!(l.judge("media/main-00001.mkv.part", file), Verdict::Partial);
    // A listed name that happens to end in .part is a file like any other.
    assert_eq!(l.judge("a.part", file), Verdict::Keep);
    assert_eq!(l.judge("manifest.json.part.part", file), Verdict::Delete);
    assert_eq!(l.judge("old.txt", file), Verdict::Delete);
    assert_eq!(l.judge("analysis", Kind::Dir), Verdict::Delete);
    assert_eq!(
        l.judge(MEDIA, Kind::Dir),
        Verdict::Delete,
        "a folder where a file goes"
    );
    assert_eq!(
        l.judge("media", file),
        Verdict::Delete,
        "a file where a folder goes"
    );
    assert_eq!(l.judge(MEDIA, Kind::File { nlink: 2 }), Verdict::Delete);
    assert_eq!(l.judge(MEDIA, Kind::Other), Verdict::Delete);
}

#[test]
fn a_fresh_copy_downloads_everything_and_a_second_sync_reads_nothing() {
    let (fake, list, dir, files) = setup("fresh");
    let s = sync_from(&fake, &dir, &list).unwrap();
    assert_eq!((s.downloaded, s.kept, s.deleted), (3, 0, 0));
    assert_eq!(s.bytes, files.iter().map(|f| f.1.len() as u64).sum::<u64>());
    assert_copy(&dir, &files);
    assert!(!dir.join(format!("{MEDIA}{PART_SUFFIX}")).exists());
    let gets = fake.calls_starting("get").len();
    let s = sync_from(&fake, &dir, &list).unwrap();
    assert_eq!(
        (s.downloaded, s.kept, s.hashed),
        (0, 3, 0),
        "all from the sums cache"
    );
    assert_eq!(fake.calls_starting("get").len(), gets);
}

#[test]
fn a_file_with_a_new_time_is_hashed_not_downloaded_and_a_changed_one_is_replaced() {
    let (fake, list, dir, files) = setup("touched");
    sync_from(&fake, &dir, &list).unwrap();
    let media = fs::File::options()
        .write(true)
        .open(dir.join(MEDIA))
        .unwrap();
    media
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(media);
    // Same size, other bytes (and surely another time).
    fs::write(dir.join("events.jsonl"), b"[]\n").unwrap();
    fs::File::options()
        .write(true)
        .open(dir.join("events.jsonl"))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let gets = fake.calls_starting("get").len();
    let s = sync_from(&fake, &dir, &list).unwrap();
    assert_eq!((s.kept, s.hashed, s.downloaded), (2, 2, 1));
    assert_eq!(
        fake.calls_starting("get")[gets..],
        ["get events.jsonl @0".to_string()]
    );
    assert_copy(&dir, &files);
    // The new times are remembered.
    let s = sync_from(&fake, &dir, &list).unwrap();
    assert_eq!((s.kept, s.hashed), (3, 0));
}

#[test]
fn unlisted_files_links_hard_links_and_odd_folders_are_removed() {
    let (fake, list, dir, files) = setup("prune");
    sync_from(&fake, &dir, &list).unwrap();
    let outside = dir.parent().unwrap().join("outside.txt");
    fs::write(&outside, b"not the worker's").unwrap();
    fs::write(dir.join("old.txt"), b"gone from lab-web").unwrap();
    fs::create_dir_all(dir.join("analysis/web")).unwrap();
    fs::write(dir.join("analysis/web/x.jpg"), b"old").unwrap();
    symlink(&outside, dir.join("media/link.mkv")).unwrap();
    symlink(dir.parent().unwrap(), dir.join("up")).unwrap();
    fs::hard_link(
        dir.join("events.jsonl"),
        dir.parent().unwrap().join("second-link"),
    )
    .unwrap();
    let s = sync_from(&fake, &dir, &list).unwrap();
    assert_eq!(s.deleted, 5, "{s:?}");
    assert_eq!(
        s.downloaded, 1,
        "the hard-linked file comes again as a file of its own"
    );
    assert!(!dir.join("old.txt").exists() && !dir.join("analysis").exists());
    assert!(fs::symlink_metadata(dir.join("up")).is_err());
    assert_eq!(
        fs::read(&outside).unwrap(),
        b"not the worker's",
        "links are not followed"
    );
    assert_copy(&dir, &files);
}

#[test]
fn a_part_file_is_resumed_from_its_length() {
    let (fake, list, dir, files) = setup("resume");
    let media = &files[2].1;
    fs::create_dir_all(dir.join("media")).unwrap();
    fs::write(dir.join(format!("{MEDIA}{PART_SUFFIX}")), &media[..70_000]).unwrap();
    let s = sync_from(&fake, &dir, &list).unwrap();
    assert_eq!((s.downloaded, s.resumed), (3, 1));
    assert!(fake.calls().contains(&format!("get {MEDIA} @70000")));
    assert_eq!(
        s.bytes as usize,
        files.iter().map(|f| f.1.len()).sum::<usize>() - 70_000
    );
    assert_copy(&dir, &files);
    assert!(!dir.join(format!("{MEDIA}{PART_SUFFIX}")).exists());
}

#[test]
fn a_broken_download_goes_on_where_it_broke() {
    let (fake, list, dir, files) = setup("broken");
    fake.breaks
        .lock()
        .unwrap()
        .insert(MEDIA.into(), (2, 50_000));
    sync_from(&fake, &dir, &list).unwrap();
    let gets = fake.calls_starting(&format!("get {MEDIA}"));
    assert_eq!(
        gets,
        [
            format!("get {MEDIA} @0"),
            format!("get {MEDIA} @50000"),
            format!("get {MEDIA} @100000")
        ]
    );
    assert_copy(&dir, &files);
}

#[test]
fn a_server_that_sends_the_whole_file_instead_of_the_rest_is_taken_from_the_start() {
    let (fake, list, dir, files) = setup("norange");
    fs::create_dir_all(dir.join("media")).unwrap();
    fs::write(
        dir.join(format!("{MEDIA}{PART_SUFFIX}")),
        &files[2].1[..1000],
    )
    .unwrap();
    fake.ignore_range
        .store(true, std::sync::atomic::Ordering::SeqCst);
    sync_from(&fake, &dir, &list).unwrap();
    assert_copy(&dir, &files);
}

#[test]
fn a_stale_part_beside_a_good_file_is_removed() {
    let (fake, list, dir, files) = setup("stalepart");
    sync_from(&fake, &dir, &list).unwrap();
    fs::write(dir.join(format!("{MEDIA}{PART_SUFFIX}")), b"half").unwrap();
    let s = sync_from(&fake, &dir, &list).unwrap();
    assert_eq!((s.kept, s.deleted, s.downloaded), (3, 1, 0));
    assert!(!dir.join(format!("{MEDIA}{PART_SUFFIX}")).exists());
    assert_copy(&dir, &files);
}

#[test]
fn one_mismatch_is_downloaded_again() {
    let (fake, list, dir, files) = setup("mismatch1");
    fake.corrupt.lock().unwrap().insert(MEDIA.into(), 1);
    sync_from(&fake, &dir, &list).unwrap();
    assert_eq!(fake.calls_starting(&format!("get {MEDIA}")).len(), 2);
    assert_copy(&dir, &files);
}

#[test]
fn a_second_mismatch_fails_naming_the_file_and_both_sums() {
    let (fake, list, dir, files) = setup("mismatch2");
    fake.corrupt.lock().unwrap().insert(MEDIA.into(), 2);
    let e = sync_from(&fake, &dir, &list).unwrap_err();
    let mut bad = files[2].1.clone();
    bad[0] ^= 0xff;
    assert_eq!(
        e.to_string(),
        format!(
            "checksum mismatch: {MEDIA}: lab-web listed {}, received {}",
            fake::sha(&files[2].1),
            fake::sha(&bad)
        )
    );
    assert!(matches!(e, MirrorError::Mismatch { .. }));
    assert!(!dir.join(MEDIA).exists() && !dir.join(format!("{MEDIA}{PART_SUFFIX}")).exists());
    // What was verified before the failure is remembered.
    fake.corrupt.lock().unwrap().clear();
    let s = sync_from(&fake, &dir, &list).unwrap();
    assert_eq!((s.kept, s.hashed, s.downloaded), (2, 0, 1));
}

#[test]
fn a_file_longer_than_listed_is_a_mismatch_too() {
    let (fake, mut list, dir, _) = setup("toolong");
    list[1].size -= 1; // events.jsonl
    let e = sync_from(&fake, &dir, &list).unwrap_err();
    assert_eq!(
        e.to_string(),
        "size mismatch: events.jsonl: lab-web listed 2 bytes and sent more"
    );
    assert_eq!(fake.calls_starting("get events.jsonl").len(), 2);
}

#[test]
fn a_download_that_keeps_breaking_gives_up_and_a_missing_file_is_an_answer() {
    let (fake, list, dir, _) = setup("giveup");
    fake.breaks.lock().unwrap().insert(MEDIA.into(), (100, 0));
    let e = sync_from(&fake, &dir, &list).unwrap_err();
    assert!(
        matches!(
            &e,
            MirrorError::Call {
                source: CallError::Transport(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        fake.calls_starting(&format!("get {MEDIA}")).len(),
        3,
        "max_tries"
    );
    fake.breaks.lock().unwrap().clear();
    fake.files.lock().unwrap().remove(MEDIA);
    let e = sync_from(&fake, &dir, &list).unwrap_err();
    assert!(
        matches!(
            &e,
            MirrorError::Call {
                source: CallError::Answer { status: 404, .. },
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_stopped_job_stops_downloading() {
    let (fake, list, dir, _) = setup("stop");
    let fetch = |path: &str, offset: u64| fake.open_file(1, "lease-1", path, offset);
    let fetcher = Fetcher {
        fetch: &fetch,
        stop: &|| true,
        log: &|_| {},
        backoff: quick_backoff(),
        max_tries: 3,
    };
    let e = sync(&dir, &dir.with_extension("sums.json"), &list, &fetcher).unwrap_err();
    assert!(matches!(e, MirrorError::Stopped));
    assert!(fake.calls_starting("get").is_empty());
}

#[test]
fn a_link_in_place_of_the_copy_folder_is_replaced_by_a_folder() {
    let (fake, list, dir, files) = setup("linkdir");
    let elsewhere = dir.parent().unwrap().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    symlink(&elsewhere, &dir).unwrap();
    sync_from(&fake, &dir, &list).unwrap();
    assert!(fs::symlink_metadata(&dir).unwrap().is_dir());
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert_copy(&dir, &files);
}
