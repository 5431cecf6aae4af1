//! `GET /spend/logs`.
