//! Packing speech spans into Whisper windows, and mapping times back.
//!
//! Whisper reads 30-second windows. Silence is never sent: consecutive
//! speech spans are concatenated, with a short silent joint between them so
//! the model still hears a pause, until a window would exceed `MAX_WINDOW`;
//! a single span longer than that is cut at its quietest moment. Each window
//! keeps the pieces it is made of, and the tight speech inside each, so a
//! word inside the window maps back to the original timeline by the speech
//! it belongs to (`word_times`).

use crate::audio::RATE;

/// Leave Whisper a little room inside its 30 s window.
pub const MAX_WINDOW: usize = 28 * RATE as usize;
/// Silence inserted between two spans in one window: enough to read as a pause.
pub const JOINT: usize = RATE as usize * 3 / 10;

#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// Where the piece starts in the window (samples).
    pub at: usize,
    /// Where it came from in the original audio (samples).
    pub from: usize,
    pub len: usize,
    /// The tight speech spans inside the piece (original samples): where
    /// its words can be (`word_times::place`).
    pub speech: Vec<(usize, usize)>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Window {
    pub pieces: Vec<Piece>,
    pub len: usize,
}

impl Window {
    pub fn samples(&self, audio: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; self.len];
        for p in &self.pieces {
            out[p.at..p.at + p.len].copy_from_slice(&audio[p.from..p.from + p.len]);
        }
        out
    }
}

/// Splits a span longer than `MAX_WINDOW` at its quietest 100 ms (lowest RMS)
/// in the last third of each window, so no window is cut mid-word if a pause exists.
fn split_long(audio: &[f32], (start, end): (usize, usize)) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut s = start;
    let frame = RATE as usize / 10;
    while end - s > MAX_WINDOW {
        let lo = s + MAX_WINDOW * 2 / 3;
        let hi = s + MAX_WINDOW - frame;
        let cut = (lo..hi)
            .step_by(frame / 2)
            .min_by(|&a, &b| {
                let rms = |x: usize| {
                    audio[x..(x + frame).min(audio.len())]
                        .iter()
                        .map(|v| v * v)
                        .sum::<f32>()
                };
                rms(a).total_cmp(&rms(b))
            })
            .map_or(hi, |c| c + frame / 2);
        out.push((s, cut));
        s = cut;
    }
    out.push((s, end));
    out
}

/// Packs speech spans (sample ranges of `audio`) into Whisper windows;
/// `tight` are the tight speech spans, recorded in the pieces they fall in.
pub fn pack(audio: &[f32], spans: &[(usize, usize)], tight: &[(usize, usize)]) -> Vec<Window> {
    let mut windows = Vec::new();
    let mut w = Window::default();
    for &span in spans {
        for (from, to) in split_long(audio, span) {
            let len = to - from;
            let speech: Vec<(usize, usize)> = tight
                .iter()
                .map(|&(s, e)| (s.max(from), e.min(to)))
                .filter(|(s, e)| s < e)
                .collect();
            let at = if w.pieces.is_empty() {
                0
            } else {
                w.len + JOINT
            };
            if at + len > MAX_WINDOW && !w.pieces.is_empty() {
                windows.push(std::mem::take(&mut w));
                w.pieces.push(Piece {
                    at: 0,
                    from,
                    len,
                    speech,
                });
                w.len = len;
            } else {
                w.pieces.push(Piece {
                    at,
                    from,
                    len,
                    speech,
                });
                w.len = at + len;
            }
        }
    }
    if !w.pieces.is_empty() {
        windows.push(w);
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: usize = RATE as usize;

    #[test]
    fn spans_share_windows_with_joints_and_keep_their_speech() {
        let audio = vec![0.1f32; 100 * S];
        let tight = [(2 * S + 100, 3 * S), (10 * S + 200, 11 * S + 500)];
        let w = pack(&audio, &[(2 * S, 4 * S), (10 * S, 11 * S)], &tight);
        assert_eq!(w.len(), 1);
        assert_eq!(
            w[0].pieces[1],
            Piece {
                at: 2 * S + JOINT,
                from: 10 * S,
                len: S,
                speech: vec![(10 * S + 200, 11 * S)],
            }
        );
        assert_eq!(w[0].pieces[0].speech, vec![tight[0]]);
        assert_eq!(w[0].samples(&audio).len(), 3 * S + JOINT);
    }

    #[test]
    fn windows_never_exceed_the_limit_and_long_speech_is_cut_at_a_pause() {
        let mut audio = vec![0.5f32; 70 * S];
        // A quiet moment at 22 s, inside the last third of the first window.
        audio[22 * S..22 * S + S / 5].fill(0.0);
        let w = pack(&audio, &[(0, 70 * S)], &[(S, 69 * S)]);
        assert!(
            w.iter().all(|w| w.len <= MAX_WINDOW),
            "{:?}",
            w.iter().map(|w| w.len).collect::<Vec<_>>()
        );
        let first_cut = w[0].pieces[0].len;
        assert!(
            (22 * S..22 * S + S / 5).contains(&first_cut),
            "cut at {first_cut}"
        );
        let covered: usize = w.iter().flat_map(|w| &w.pieces).map(|p| p.len).sum();
        assert_eq!(covered, 70 * S, "no speech is dropped");
        // A tight span cut with its piece is split between the pieces.
        assert_eq!(w[0].pieces[0].speech, vec![(S, first_cut)]);
        assert_eq!(w[1].pieces[0].speech[0].0, first_cut);
    }
}
