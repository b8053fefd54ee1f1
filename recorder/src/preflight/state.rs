//! What each device's preview has delivered so far, and what that says is
//! wrong with it. Pure bookkeeping on times in milliseconds since the
//! pre-flight started, so the rules (no data for 3 s, digital silence for
//! 3 s) are tested without devices or waiting.

use lab_model::ChannelRole;
use serde::Serialize;

use super::branch::PreviewDevice;
use super::problems::{DeviceNames, DeviceProblem, ProblemKind};

/// A device that has delivered nothing for this long is "not responding".
pub(super) const NO_DATA_AFTER_MS: u64 = 3_000;
/// A microphone channel whose peak stayed below `SILENCE_DB` this long is silent.
pub(super) const SILENT_AFTER_MS: u64 = 3_000;
/// Below any real microphone's noise floor: only a muted or dead input is this quiet.
pub(super) const SILENCE_DB: f64 = -90.0;
/// Levels are clamped here; `level` reports -inf dB for digital silence,
/// which JSON cannot carry.
pub const FLOOR_DB: f64 = -120.0;

/// The latest preview frame of a video device.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// A baseline JPEG (starts FF D8, ends FF D9).
    pub jpeg: Vec<u8>,
    /// When it arrived, in ms since the pre-flight started.
    pub at_ms: u64,
    pub width: u32,
    pub height: u32,
}

/// The latest level of one microphone channel (`level`, every 100 ms).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelLevel {
    pub track: String,
    /// 0-based channel of that microphone.
    pub channel: u32,
    pub role: ChannelRole,
    /// dBFS over the last interval, at least `FLOOR_DB`.
    pub rms_db: f64,
    pub peak_db: f64,
    /// When it arrived, in ms since the pre-flight started.
    pub at_ms: u64,
}

#[derive(Debug)]
pub(super) struct TrackState {
    pub device: PreviewDevice,
    pub names: DeviceNames,
    /// When its pipeline was started.
    pub started_ms: u64,
    pub snapshot: Option<Snapshot>,
    pub levels: Vec<ChannelLevel>,
    pub first_data_ms: Option<u64>,
    pub last_data_ms: Option<u64>,
    /// Per channel: the last time its peak was above `SILENCE_DB`.
    pub last_sound_ms: Vec<Option<u64>>,
    /// The first error its pipeline reported; it delivers nothing after one.
    pub failure: Option<DeviceProblem>,
}

impl TrackState {
    pub fn new(device: PreviewDevice, names: DeviceNames, started_ms: u64) -> Self {
        Self {
            last_sound_ms: vec![None; device.channel_roles.len()],
            device,
            names,
            started_ms,
            snapshot: None,
            levels: Vec::new(),
            first_data_ms: None,
            last_data_ms: None,
            failure: None,
        }
    }

    fn on_data(&mut self, at_ms: u64) {
        self.first_data_ms.get_or_insert(at_ms);
        self.last_data_ms = Some(at_ms);
    }

    pub fn on_snapshot(&mut self, snapshot: Snapshot) {
        self.on_data(snapshot.at_ms);
        self.snapshot = Some(snapshot);
    }

    /// `rms` and `peak` in dB, one per channel, as `level` posts them.
    pub fn on_levels(&mut self, at_ms: u64, rms: &[f64], peak: &[f64]) {
        self.on_data(at_ms);
        let clamp = |db: f64| {
            if db.is_nan() {
                FLOOR_DB
            } else {
                db.max(FLOOR_DB)
            }
        };
        self.levels = rms
            .iter()
            .zip(peak)
            .enumerate()
            .map(|(c, (&rms, &peak))| ChannelLevel {
                track: self.device.track.clone(),
                channel: c as u32,
                role: self
                    .device
                    .channel_roles
                    .get(c)
                    .copied()
                    .unwrap_or(ChannelRole::Mixed),
                rms_db: clamp(rms),
                peak_db: clamp(peak),
                at_ms,
            })
            .collect();
        for l in &self.levels {
            if let Some(slot) = self.last_sound_ms.get_mut(l.channel as usize)
                && l.peak_db > SILENCE_DB
            {
                *slot = Some(at_ms);
            }
        }
    }

    /// Keeps the first failure: later errors are usually its consequences.
    pub fn on_failure(&mut self, kind: ProblemKind, detail: String) {
        if self.failure.is_none() {
            self.failure = Some(DeviceProblem::device_failed(
                &self.device.track,
                &self.device.device,
                &self.names,
                kind,
                detail,
            ));
        }
    }

    pub fn problems(&self, now_ms: u64) -> Vec<DeviceProblem> {
        if let Some(f) = &self.failure {
            return vec![f.clone()];
        }
        let (track, device) = (&self.device.track, &self.device.device);
        let quiet_for = now_ms.saturating_sub(self.last_data_ms.unwrap_or(self.started_ms));
        if quiet_for >= NO_DATA_AFTER_MS {
            return vec![DeviceProblem::no_data(
                track,
                device,
                &self.names,
                quiet_for / 1000,
            )];
        }
        let Some(first) = self.first_data_ms else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (c, last) in self.last_sound_ms.iter().enumerate() {
            let silent_for = now_ms.saturating_sub(last.unwrap_or(first));
            if silent_for >= SILENT_AFTER_MS {
                out.push(DeviceProblem::silent(
                    track,
                    device,
                    &self.names,
                    c as u32,
                    self.device.channel_roles[c],
                    silent_for / 1000,
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::problems::DeviceKind;

    fn mic(roles: &[ChannelRole]) -> TrackState {
        let names = DeviceNames::new(DeviceKind::Microphone, "usb", 0, false);
        let device = PreviewDevice {
            track: "mic0".into(),
            kind: DeviceKind::Microphone,
            source: "pulsesrc".into(),
            device: "usb".into(),
            name_ru: names.ru.clone(),
            name_en: names.en.clone(),
            channel_roles: roles.to_vec(),
        };
        TrackState::new(device, names, 1_000)
    }

    fn kinds(t: &TrackState, now_ms: u64) -> Vec<(ProblemKind, Option<u32>)> {
        t.problems(now_ms)
            .into_iter()
            .map(|p| (p.kind, p.channel))
            .collect()
    }

    #[test]
    fn a_device_that_never_delivers_is_not_responding_after_3_s() {
        let t = mic(&[ChannelRole::Mixed]);
        assert_eq!(kinds(&t, 3_999), []);
        assert_eq!(kinds(&t, 4_000), [(ProblemKind::NoData, None)]);
        assert!(
            t.problems(9_000)[0]
                .message_ru
                .contains("нет звука уже 8 с")
        );
    }

    #[test]
    fn a_device_that_stops_delivering_is_not_responding() {
        let mut t = mic(&[ChannelRole::Mixed]);
        t.on_levels(1_100, &[-20.0], &[-10.0]);
        t.on_levels(2_000, &[-20.0], &[-10.0]);
        assert_eq!(kinds(&t, 4_900), []);
        assert_eq!(kinds(&t, 5_000), [(ProblemKind::NoData, None)]);
    }

    #[test]
    fn a_silent_channel_is_named_and_a_live_one_is_not() {
        let roles = [ChannelRole::Participant, ChannelRole::Moderator];
        let mut t = mic(&roles);
        for i in 0..40 {
            let at = 1_100 + i * 100;
            t.on_levels(at, &[-25.0, f64::NEG_INFINITY], &[-12.0, f64::NEG_INFINITY]);
        }
        assert_eq!(t.levels[1].rms_db, FLOOR_DB, "-inf is clamped");
        assert_eq!(t.levels[1].role, ChannelRole::Moderator);
        assert_eq!(kinds(&t, 4_099), []);
        assert_eq!(kinds(&t, 5_000), [(ProblemKind::Silent, Some(1))]);
        // The channel comes alive: the problem goes away.
        t.on_levels(5_100, &[-25.0, -40.0], &[-12.0, -30.0]);
        assert_eq!(kinds(&t, 5_200), []);
    }

    #[test]
    fn a_failure_is_the_only_problem_and_the_first_one_stays() {
        let mut t = mic(&[ChannelRole::Mixed]);
        t.on_failure(ProblemKind::NotFound, "no such source".into());
        t.on_failure(ProblemKind::Failed, "internal data stream error".into());
        let p = t.problems(60_000);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].kind, ProblemKind::NotFound);
        assert_eq!(p[0].detail, "no such source");
    }
}
