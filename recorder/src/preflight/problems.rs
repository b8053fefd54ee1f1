//! What is wrong with a device, worded for the operator in Russian (and in
//! English), naming the device the way the station config does:
//! «Камера /dev/video0 не найдена — проверьте, что камера подключена».

use gstreamer as gst;
use lab_model::ChannelRole;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Screen,
    Camera,
    Microphone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The device does not exist (unplugged, wrong path or name).
    NotFound,
    /// Another program holds it.
    Busy,
    /// It exists but would not start; `detail` has GStreamer's words.
    Failed,
    /// It started but has delivered nothing for a while.
    NoData,
    /// A microphone channel delivers only digital silence (muted, switched off).
    Silent,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceProblem {
    /// Track id as the recorder names it: `screen`, `camera`, `mic0`, ...
    pub track: String,
    /// The configured device (`/dev/video0`, a Pulse source, `:0`); empty
    /// for the system default and for test sources.
    pub device: String,
    pub kind: ProblemKind,
    /// The microphone channel (0-based) for `Silent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<u32>,
    pub message_ru: String,
    pub message_en: String,
    /// GStreamer's own words, for the log and a "details" fold.
    pub detail: String,
}

/// How to refer to a device in messages, in both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DeviceNames {
    pub kind: DeviceKind,
    pub ru: String,
    pub en: String,
}

impl DeviceNames {
    /// `index` is the microphone's position in the config (ignored otherwise);
    /// `test` means a GStreamer test pattern stands in for the device.
    pub fn new(kind: DeviceKind, device: &str, index: usize, test: bool) -> Self {
        let (ru, en) = match (kind, test) {
            (DeviceKind::Screen, true) => (
                "Экран (тестовый сигнал)".into(),
                "Screen (test pattern)".into(),
            ),
            (DeviceKind::Camera, true) => (
                "Камера (тестовый сигнал)".into(),
                "Camera (test pattern)".into(),
            ),
            (DeviceKind::Microphone, true) => (
                format!("Микрофон {} (тестовый сигнал)", index + 1),
                format!("Microphone {} (test tone)", index + 1),
            ),
            (DeviceKind::Screen, false) => (format!("Экран {device}"), format!("Screen {device}")),
            (DeviceKind::Camera, false) => (format!("Камера {device}"), format!("Camera {device}")),
            (DeviceKind::Microphone, false) if device.is_empty() => (
                format!("Микрофон {} (системный по умолчанию)", index + 1),
                format!("Microphone {} (system default)", index + 1),
            ),
            (DeviceKind::Microphone, false) => (
                format!("Микрофон {} «{device}»", index + 1),
                format!("Microphone {} \"{device}\"", index + 1),
            ),
        };
        Self { kind, ru, en }
    }

    /// The Russian past participle ending agreeing with the device's gender
    /// (камера is feminine, экран and микрофон masculine).
    fn ending(&self) -> &'static str {
        match self.kind {
            DeviceKind::Camera => "а",
            DeviceKind::Screen | DeviceKind::Microphone => "",
        }
    }

    fn check_hint(&self) -> (&'static str, &'static str) {
        match self.kind {
            DeviceKind::Screen => (
                "проверьте, что графический сеанс запущен",
                "check that the graphical session is running",
            ),
            DeviceKind::Camera => (
                "проверьте, что камера подключена",
                "check that the camera is connected",
            ),
            DeviceKind::Microphone => (
                "проверьте, что микрофон подключён",
                "check that the microphone is connected",
            ),
        }
    }
}

fn role_names(role: ChannelRole) -> (&'static str, &'static str) {
    match role {
        ChannelRole::Participant => ("участник", "participant"),
        ChannelRole::Moderator => ("модератор", "moderator"),
        ChannelRole::Mixed => ("общий", "mixed"),
        ChannelRole::Ambient => ("звук комнаты", "ambient"),
    }
}

/// The kind of problem a GStreamer error from a device's pipeline means.
pub(super) fn classify(err: &gst::glib::Error) -> ProblemKind {
    if err.matches(gst::ResourceError::NotFound) {
        ProblemKind::NotFound
    } else if err.matches(gst::ResourceError::Busy) {
        ProblemKind::Busy
    } else {
        let text = err.message().to_lowercase();
        if text.contains("busy") {
            ProblemKind::Busy
        } else if text.contains("no such") || text.contains("cannot identify device") {
            ProblemKind::NotFound
        } else {
            ProblemKind::Failed
        }
    }
}

impl DeviceProblem {
    pub(super) fn device_failed(
        track: &str,
        device: &str,
        names: &DeviceNames,
        kind: ProblemKind,
        detail: String,
    ) -> Self {
        let e = names.ending();
        let (hint_ru, hint_en) = names.check_hint();
        let (ru, en) = match kind {
            ProblemKind::NotFound => (
                format!("{} не найден{e} — {hint_ru}", names.ru),
                format!("{} not found — {hint_en}", names.en),
            ),
            ProblemKind::Busy => (
                format!("{} занят{e} другой программой — закройте её", names.ru),
                format!(
                    "{} is busy: another program is using it — close it",
                    names.en
                ),
            ),
            _ => (
                format!("{} не запускается: {detail}", names.ru),
                format!("{} failed to start: {detail}", names.en),
            ),
        };
        Self {
            track: track.into(),
            device: device.into(),
            kind,
            channel: None,
            message_ru: ru,
            message_en: en,
            detail,
        }
    }

    pub(super) fn no_data(track: &str, device: &str, names: &DeviceNames, seconds: u64) -> Self {
        let (what_ru, what_en) = match names.kind {
            DeviceKind::Microphone => ("звука", "sound"),
            DeviceKind::Screen | DeviceKind::Camera => ("кадров", "frames"),
        };
        Self {
            track: track.into(),
            device: device.into(),
            kind: ProblemKind::NoData,
            channel: None,
            message_ru: format!("{} не отвечает: нет {what_ru} уже {seconds} с", names.ru),
            message_en: format!(
                "{} is not responding: no {what_en} for {seconds} s",
                names.en
            ),
            detail: String::new(),
        }
    }

    pub(super) fn silent(
        track: &str,
        device: &str,
        names: &DeviceNames,
        channel: u32,
        role: ChannelRole,
        seconds: u64,
    ) -> Self {
        let (role_ru, role_en) = role_names(role);
        Self {
            track: track.into(),
            device: device.into(),
            kind: ProblemKind::Silent,
            channel: Some(channel),
            message_ru: format!(
                "{}, канал {} ({role_ru}): полная тишина уже {seconds} с — проверьте, не выключен ли микрофон",
                names.ru,
                channel + 1
            ),
            message_en: format!(
                "{}, channel {} ({role_en}): digital silence for {seconds} s — is it muted or switched off?",
                names.en,
                channel + 1
            ),
            detail: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_device_with_agreeing_endings() {
        let cases = [
            (
                DeviceNames::new(DeviceKind::Camera, "/dev/video0", 0, false),
                ProblemKind::NotFound,
                "Камера /dev/video0 не найдена — проверьте, что камера подключена",
            ),
            (
                DeviceNames::new(DeviceKind::Microphone, "usb-mic", 1, false),
                ProblemKind::NotFound,
                "Микрофон 2 «usb-mic» не найден — проверьте, что микрофон подключён",
            ),
            (
                DeviceNames::new(DeviceKind::Camera, "/dev/video2", 0, false),
                ProblemKind::Busy,
                "Камера /dev/video2 занята другой программой — закройте её",
            ),
            (
                DeviceNames::new(DeviceKind::Screen, ":1", 0, false),
                ProblemKind::Failed,
                "Экран :1 не запускается: Could not open X display",
            ),
        ];
        for (names, kind, want) in cases {
            let p = DeviceProblem::device_failed(
                "t",
                "d",
                &names,
                kind,
                "Could not open X display".into(),
            );
            assert_eq!(p.message_ru, want);
            assert!(p.message_en.starts_with(&names.en), "{}", p.message_en);
        }
        let m = DeviceNames::new(DeviceKind::Microphone, "", 0, false);
        assert_eq!(
            DeviceProblem::no_data("mic0", "", &m, 3).message_ru,
            "Микрофон 1 (системный по умолчанию) не отвечает: нет звука уже 3 с"
        );
        let s = DeviceProblem::silent("mic0", "", &m, 1, ChannelRole::Moderator, 3);
        assert!(s.message_ru.contains("канал 2 (модератор): полная тишина"));
        assert_eq!(s.channel, Some(1));
    }

    #[test]
    fn gstreamer_errors_map_to_kinds() {
        let e = |domain: gst::ResourceError, text: &str| gst::glib::Error::new(domain, text);
        let cases = [
            (
                e(
                    gst::ResourceError::NotFound,
                    "Cannot identify device '/dev/video99'.",
                ),
                ProblemKind::NotFound,
            ),
            (
                e(gst::ResourceError::Busy, "Device '/dev/video0' is busy"),
                ProblemKind::Busy,
            ),
            (
                e(gst::ResourceError::OpenRead, "Device '/dev/video0' is busy"),
                ProblemKind::Busy,
            ),
            (
                e(
                    gst::ResourceError::Failed,
                    "Failed to connect stream: No such entity",
                ),
                ProblemKind::NotFound,
            ),
            (
                e(
                    gst::ResourceError::Failed,
                    "Failed to connect: Connection refused",
                ),
                ProblemKind::Failed,
            ),
        ];
        for (err, want) in cases {
            assert_eq!(classify(&err), want, "{err}");
        }
    }
}
