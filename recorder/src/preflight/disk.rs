//! Free disk space where the bundles go and how many hours of recording it
//! holds with this station's encoder settings.

use std::path::{Path, PathBuf};

use lab_model::StationConfig;
use serde::Serialize;

use super::error::PreflightError;

/// Below this many hours the operator is warned (about two sessions).
const WARN_HOURS: f64 = 2.0;
/// Below this many hours a session may not fit.
const CRITICAL_HOURS: f64 = 1.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskState {
    /// The directory measured: the output directory or, before it exists,
    /// its nearest existing parent (the same file system).
    pub path: PathBuf,
    /// Bytes an unprivileged writer may still use.
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Estimated from the station's bitrates (`bytes_per_hour`).
    pub bytes_per_hour: u64,
    pub hours_left: f64,
    pub warning_ru: Option<String>,
    pub warning_en: Option<String>,
}

/// Bytes one hour of recording of `station` takes: screen and camera at
/// their encoder bitrates (the camera capped at 2.5 Mbit/s as the recorder
/// does), each microphone's Opus stream once per segment group (it is
/// written beside the screen and again beside the camera), plus 10 %
/// container overhead. Mirrors `crate::pipeline::plan`.
pub fn bytes_per_hour(station: &StationConfig) -> u64 {
    let enc = &station.encoder;
    let camera = station
        .camera
        .as_ref()
        .map_or(0, |_| enc.video_bitrate_kbps.min(2500));
    let groups = if station.camera.is_some() { 2 } else { 1 };
    let audio: u32 = station
        .microphones
        .iter()
        .map(|m| enc.audio_bitrate_kbps * m.channels.min(2) * groups)
        .sum();
    let kbps = u64::from(enc.video_bitrate_kbps + camera + audio);
    kbps * 1000 / 8 * 3600 * 11 / 10
}

/// Free space and hours left for recordings of `station` under `out_dir`.
pub fn disk(out_dir: &Path, station: &StationConfig) -> Result<DiskState, PreflightError> {
    let path = out_dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let (free, total) = statvfs(&path).map_err(|source| PreflightError::Disk {
        path: path.clone(),
        source,
    })?;
    Ok(assess(path, free, total, bytes_per_hour(station)))
}

fn statvfs(path: &Path) -> std::io::Result<(u64, u64)> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    // SAFETY: `c` is NUL-terminated; `st` is plain data statvfs fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; statvfs writes only into `st`.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

fn assess(path: PathBuf, free: u64, total: u64, per_hour: u64) -> DiskState {
    let hours_left = free as f64 / per_hour.max(1) as f64;
    let left_ru = duration_ru(hours_left);
    let left_en = duration_en(hours_left);
    let free_gb = free as f64 / 1e9;
    let free_ru = format!("{free_gb:.1}").replace('.', ",");
    let (warning_ru, warning_en) = if hours_left < CRITICAL_HOURS {
        (
            Some(format!(
                "Места на диске хватит только на {left_ru} записи (свободно {free_ru} ГБ) — освободите место до начала сессии"
            )),
            Some(format!(
                "Disk space is enough for only {left_en} of recording ({free_gb:.1} GB free) — free some before the session"
            )),
        )
    } else if hours_left < WARN_HOURS {
        (
            Some(format!(
                "Места на диске осталось на {left_ru} записи (свободно {free_ru} ГБ)"
            )),
            Some(format!(
                "Disk space left for {left_en} of recording ({free_gb:.1} GB free)"
            )),
        )
    } else {
        (None, None)
    };
    DiskState {
        path,
        free_bytes: free,
        total_bytes: total,
        bytes_per_hour: per_hour,
        hours_left,
        warning_ru,
        warning_en,
    }
}

fn split_minutes(hours: f64) -> (u64, u64) {
    let minutes = (hours * 60.0).floor().max(0.0) as u64;
    (minutes / 60, minutes % 60)
}

fn duration_ru(hours: f64) -> String {
    match split_minutes(hours) {
        (0, m) => format!("{m} мин"),
        (h, 0) => format!("{h} ч"),
        (h, m) => format!("{h} ч {m} мин"),
    }
}

fn duration_en(hours: f64) -> String {
    match split_minutes(hours) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_model::ChannelRole;

    #[test]
    fn an_hour_of_the_default_station_is_about_three_gigabytes() {
        let s = StationConfig::default_station();
        // 4000 screen + 2500 camera + 64 × 2 groups = 6628 kbit/s, + 10 %.
        assert_eq!(bytes_per_hour(&s), 6628 * 1000 / 8 * 3600 * 11 / 10);
        let mut more = s.clone();
        more.microphones[0].channels = 2;
        more.microphones[0].roles = vec![ChannelRole::Participant, ChannelRole::Moderator];
        more.microphones.push(more.microphones[0].clone());
        // Two stereo mics: 4 × 64 kbit/s more, twice.
        assert_eq!(
            bytes_per_hour(&more) - bytes_per_hour(&s),
            3 * 64 * 2 * 1000 / 8 * 3600 * 11 / 10
        );
        let mut no_camera = s;
        no_camera.camera = None;
        assert_eq!(bytes_per_hour(&no_camera), 4064 * 1000 / 8 * 3600 * 11 / 10);
    }

    #[test]
    fn warnings_follow_the_hours_left() {
        let gb = 1_000_000_000;
        let cases = [
            (100 * gb, 3 * gb, None),
            (
                5 * gb,
                3 * gb,
                Some("Места на диске осталось на 1 ч 40 мин записи (свободно 5,0 ГБ)"),
            ),
            (
                3 * gb / 2,
                3 * gb,
                Some(
                    "Места на диске хватит только на 30 мин записи (свободно 1,5 ГБ) — освободите место до начала сессии",
                ),
            ),
        ];
        for (free, per_hour, want) in cases {
            let d = assess(PathBuf::from("/x"), free, 200 * gb, per_hour);
            assert_eq!(d.warning_ru.as_deref(), want, "free {free}");
            assert_eq!(d.warning_en.is_some(), want.is_some());
            assert!((d.hours_left - free as f64 / per_hour as f64).abs() < 1e-9);
        }
    }

    #[test]
    fn a_directory_not_made_yet_is_measured_on_its_parent() {
        let dir = std::env::temp_dir().join(format!("preflight-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let station = StationConfig::default_station();
        let d = disk(&dir.join("sessions/not/yet"), &station).unwrap();
        assert_eq!(d.path, dir);
        assert!(d.total_bytes > 0 && d.free_bytes <= d.total_bytes, "{d:?}");
        assert_eq!(d.bytes_per_hour, bytes_per_hour(&station));
        assert!(
            (d.hours_left - d.free_bytes as f64 / d.bytes_per_hour as f64).abs() < 1e-6,
            "{d:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
