//! Clips: a tag's range of the screen rendition cut to MP4 (H.264 + AAC,
//! faststart) with the transcript of that range as a `mov_text` subtitle
//! track, by the `ffmpeg` CLI. Written to `clips/<tag>.mp4.part` and renamed,
//! so a half-written clip is never served.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::Context;
use tokio::sync::watch;

use crate::db::now_ms;
use crate::state::AppState;
use crate::store;
use crate::types::{JobArgs, JobOutcome as Outcome};

pub fn clip_path(state: &AppState, tag_id: i64) -> PathBuf {
    state.clips_dir().join(format!("{tag_id}.mp4"))
}

async fn set_clip(
    state: &AppState,
    tag_id: i64,
    status: &str,
    file: Option<&str>,
    job: i64,
) -> anyhow::Result<()> {
    store::clips::set_status(&state.db.pool, tag_id, status, file, job, now_ms()).await?;
    Ok(())
}

pub async fn run_clip(
    state: &AppState,
    job: i64,
    args: &JobArgs,
    mut cancel: watch::Receiver<bool>,
) -> anyhow::Result<Outcome> {
    let tag_id = args.tag_id.context("clip job without a tag")?;
    let r = clip_inner(state, job, tag_id, &mut cancel).await;
    // Done, failed or cancelled: the subtitles and the partial clip are gone
    // before the job's end is recorded (the guard covers a dropped job).
    let dir = state.clips_dir();
    for p in [format!("{tag_id}.srt"), format!("{tag_id}.mp4.part")] {
        let _ = tokio::fs::remove_file(dir.join(p)).await;
    }
    let status = match &r {
        Ok(Outcome::Done(_)) => "done",
        Ok(Outcome::Cancelled) => "cancelled",
        Err(_) => "failed",
    };
    let file = (status == "done").then(|| format!("{tag_id}.mp4"));
    set_clip(state, tag_id, status, file.as_deref(), job).await?;
    r
}

async fn clip_inner(
    state: &AppState,
    job: i64,
    tag_id: i64,
    cancel: &mut watch::Receiver<bool>,
) -> anyhow::Result<Outcome> {
    set_clip(state, tag_id, "running", None, job).await?;
    let src = store::clips::source(&state.db.pool, tag_id)
        .await
        .with_context(|| format!("tag {tag_id}"))?;
    let (start_ms, end_ms) = (src.start_ms, src.end_ms);
    anyhow::ensure!(!src.withdrawn, "the participant withdrew");
    let screen = src
        .media
        .screen
        .as_ref()
        .context("the session has no screen rendition yet (run the analysis)")?;
    let file_start_ms = screen.start_ms;
    // The rendition is opened like every bundle file (no links, no `..`, a
    // regular single-link file: never a FIFO or a server file) and ffmpeg
    // reads that open file through /proc, never a path the bundle chose.
    let (bundle_dir, rel) = (PathBuf::from(&src.bundle_path), screen.file.clone());
    let (input_file, _) =
        tokio::task::spawn_blocking(move || crate::bundle_files::open(&bundle_dir, &rel)).await??;
    let input = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        std::os::fd::AsRawFd::as_raw_fd(&input_file)
    ));
    let transcript = store::sessions::transcript(&state.db.pool, &src.session_id).await?;
    let srt = crate::export::subtitles::srt_range(&transcript, start_ms, end_ms);

    let dir = state.clips_dir();
    tokio::fs::create_dir_all(&dir).await?;
    // The subtitles (the participant's words) and the partial clip are
    // removed on every way out: done, failed, cancelled or dropped.
    let _cleanup = Cleanup(vec![
        dir.join(format!("{tag_id}.srt")),
        dir.join(format!("{tag_id}.mp4.part")),
    ]);
    // A range without speech has no subtitles (ffmpeg refuses an empty SRT).
    let subs = dir.join(format!("{tag_id}.srt"));
    let has_subs = !srt.trim().is_empty();
    if has_subs {
        tokio::fs::write(&subs, srt.as_bytes()).await?;
    }
    let part = dir.join(format!("{tag_id}.mp4.part"));
    let seek = (start_ms - file_start_ms).max(0) as f64 / 1000.0;
    let dur = ((end_ms - start_ms).max(500)) as f64 / 1000.0;
    let mut cmd = tokio::process::Command::new(&state.config.ffmpeg);
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-ss", &format!("{seek:.3}"), "-i"])
        .arg(&input)
        .args(if has_subs {
            vec!["-i".as_ref(), subs.as_os_str()]
        } else {
            vec![]
        })
        .args(["-t", &format!("{dur:.3}")])
        .args(["-map", "0:v:0", "-map", "0:a:0?"])
        .args(if has_subs {
            &[
                "-map",
                "1:s:0",
                "-c:s",
                "mov_text",
                "-metadata:s:s:0",
                "language=rus",
            ][..]
        } else {
            &[][..]
        })
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        ])
        .args([
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
        ])
        .arg(&part)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", state.config.ffmpeg.display()))?;
    let out = tokio::select! {
        out = child.wait_with_output() => out?,
        _ = cancel.changed() => return Ok(Outcome::Cancelled),
    };
    drop(input_file);
    if !out.status.success() {
        // ffmpeg's own words can name files; they go to the log, not to the
        // job message every role can read.
        tracing::warn!(
            "clip of tag {tag_id}: ffmpeg failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        anyhow::bail!(
            "ffmpeg failed ({}); the server log has its message",
            out.status
        );
    }
    tokio::fs::rename(&part, clip_path(state, tag_id)).await?;
    Ok(Outcome::Done(format!("clip {tag_id}.mp4, {dur:.1} s")))
}

/// Removes its files when dropped.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let files = std::mem::take(&mut self.0);
        let remove = move || {
            for p in &files {
                let _ = std::fs::remove_file(p);
            }
        };
        // Dropped on an async thread: the unlinks run on a blocking one.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}
