//! Packing speech spans into Whisper windows, and mapping times back.
//!
//! Whisper reads 30-second windows. Silence is never sent: consecutive
//! speech spans are concatenated, with a short silent joint between them so
//! the model still hears a pause, until a window would exceed `MAX_WINDOW`;
//! a single span longer than that is cut at its quietest moment. Each window
//! keeps the pieces it is made of, so a time inside the window maps back to
//! the original timeline exactly, piece by piece.

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
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Window {
    pub pieces: Vec<Piece>,
    pub len: usize,
}

impl Window {
    /// Original sample index of window sample `t`. Times inside a joint map
    /// to the end of the piece before it (the pause belongs to the word before).
    pub fn to_original(&self, t: usize) -> usize {
        let mut last = self.pieces.first().map_or(0, |p| p.from);
        for p in &self.pieces {
            if t < p.at {
                return last;
            }
            if t < p.at + p.len {
                return p.from + (t - p.at);
            }
            last = p.from + p.len;
        }
        last
    }

    /// Original sample range of a word that Whisper placed at window samples
    /// `t0..t1`. A word belongs to one piece: the one it overlaps most (the
    /// nearest, if it lies inside a joint), and is clamped to it. Whisper
    /// often starts the first word of a piece inside the joint before it;
    /// mapped time by time, such a word would begin at the end of the
    /// previous span, possibly tens of seconds before it was said.
    pub fn to_original_range(&self, t0: usize, t1: usize) -> (usize, usize) {
        let t1 = t1.max(t0);
        let Some(best) = self.pieces.iter().max_by_key(|p| {
            let overlap = t1.min(p.at + p.len).saturating_sub(t0.max(p.at));
            // Ties (no overlap) go to the nearest piece.
            let gap = if t1 <= p.at {
                p.at - t1
            } else {
                t0.saturating_sub(p.at + p.len)
            };
            (overlap, std::cmp::Reverse(gap))
        }) else {
            return (t0, t1);
        };
        let clamp = |t: usize| best.from + t.clamp(best.at, best.at + best.len) - best.at;
        (clamp(t0), clamp(t1))
    }

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

/// Packs speech spans (sample ranges of `audio`) into Whisper windows.
pub fn pack(audio: &[f32], spans: &[(usize, usize)]) -> Vec<Window> {
    let mut windows = Vec::new();
    let mut w = Window::default();
    for &span in spans {
        for (from, to) in split_long(audio, span) {
            let len = to - from;
            let at = if w.pieces.is_empty() {
                0
            } else {
                w.len + JOINT
            };
            if at + len > MAX_WINDOW && !w.pieces.is_empty() {
                windows.push(std::mem::take(&mut w));
                w.pieces.push(Piece { at: 0, from, len });
                w.len = len;
            } else {
                w.pieces.push(Piece { at, from, len });
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
    fn spans_share_windows_with_joints_and_map_back() {
        let audio = vec![0.1f32; 100 * S];
        let w = pack(&audio, &[(2 * S, 4 * S), (10 * S, 11 * S)]);
        assert_eq!(w.len(), 1);
        assert_eq!(
            w[0].pieces[1],
            Piece {
                at: 2 * S + JOINT,
                from: 10 * S,
                len: S
            }
        );
        // A time in the second piece maps into the second span.
        assert_eq!(w[0].to_original(2 * S + JOINT + 100), 10 * S + 100);
        // A time inside the joint maps to the end of the first span.
        assert_eq!(w[0].to_original(2 * S + 10), 4 * S);
        assert_eq!(w[0].samples(&audio).len(), 3 * S + JOINT);
        // A word starting in the joint but said in the second piece belongs
        // to the second span, not to the end of the first.
        let second = 2 * S + JOINT;
        assert_eq!(
            w[0].to_original_range(2 * S + 100, second + S / 2),
            (10 * S, 10 * S + S / 2)
        );
        // A word that runs on into the joint stays in the first span.
        assert_eq!(
            w[0].to_original_range(2 * S - S / 2, 2 * S + 50),
            (4 * S - S / 2, 4 * S)
        );
        // Entirely inside the joint: the nearest piece.
        assert_eq!(
            w[0].to_original_range(second - 10, second - 5),
            (10 * S, 10 * S)
        );
        assert_eq!(
            w[0].to_original_range(2 * S + 5, 2 * S + 10),
            (4 * S, 4 * S)
        );
    }

    #[test]
    fn windows_never_exceed_the_limit_and_long_speech_is_cut_at_a_pause() {
        let mut audio = vec![0.5f32; 70 * S];
        // A quiet moment at 22 s, inside the last third of the first window.
        audio[22 * S..22 * S + S / 5].fill(0.0);
        let w = pack(&audio, &[(0, 70 * S)]);
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
    }
}
