//! Exports of a session or a study into the formats researchers take
//! elsewhere: ELAN for coding, subtitles for players and clips, findings for
//! spreadsheets and tools, and a printable journey-map report. Every export is
//! a pure function from the API's data types (`crate::types`) to text, so the
//! handlers only fetch data and set content types.

pub mod eaf;
pub mod findings;
pub mod report;
pub mod subtitles;

mod escape;
