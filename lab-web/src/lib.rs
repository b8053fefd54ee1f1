//! The researchers' review application. Not built yet: the lab-web issue
//! fills this crate. It is the only crate that knows SQL and HTTP routing
//! for the review app.
