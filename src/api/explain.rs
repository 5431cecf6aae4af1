//! `POST /access/explain`.
