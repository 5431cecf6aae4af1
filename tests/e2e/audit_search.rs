//! The audit trail beyond LiteLLM's `/audit`: the search language (`/audit/search`), what an
//! organisation admin may read (`/audit`, `/audit/search`, `/audit/export`, `/audit/{id}`),
//! the JSON-lines export, and retention (pruning at start-up, the checkpoint, `verify`).
//!
//! Expectations are computed from the full log as the master key reads it with `/audit`, so
//! each search is checked entry by entry against an independent listing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{MASTER_KEY, Options, binary, eventually_async};
use crate::keys::{Api, secret_of};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const AUDIT: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit_v2");
const AUDIT_HASHES: redb::TableDefinition<u64, &str> =
    redb::TableDefinition::new("audit_hashes_v1");

const TEAM: &str = "LiteLLM_TeamTable";
const KEY: &str = "LiteLLM_VerificationToken";
const USER: &str = "LiteLLM_UserTable";
const ORG: &str = "LiteLLM_OrganizationTable";
const CUSTOMER: &str = "LiteLLM_EndUserTable";

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// An entry's sequence number (its `id`, a string on the wire).
fn seq(e: &Value) -> u64 {
    e["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {e}"))
        .parse()
        .unwrap()
}

fn seqs(entries: &[Value]) -> Vec<u64> {
    entries.iter().map(seq).collect()
}

/// `path` on the gateway with URL-encoded query parameters.
fn url_with(api: &Api, path: &str, params: &[(&str, &str)]) -> reqwest::Url {
    let mut url = reqwest::Url::parse(&api.gw.url(path)).unwrap();
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    url
}

/// `GET path` with query parameters as `auth`.
async fn get_q(api: &Api, auth: &str, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let resp = api
        .http
        .get(url_with(api, path, params))
        .bearer_auth(auth)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn search(api: &Api, auth: &str, params: &[(&str, &str)]) -> (u16, Value) {
    get_q(api, auth, "/audit/search", params).await
}

/// One search as `auth` with `q`, in one page (asserting it fits): its entries and `total`.
async fn search_all(api: &Api, auth: &str, q: &str) -> (Vec<Value>, u64) {
    let (s, out) = search(api, auth, &[("q", q), ("limit", "1000")]).await;
    assert_eq!(s, 200, "q={q}: {out}");
    assert!(out["next_cursor"].is_null(), "q={q}: {out}");
    assert_eq!(out["index_lag"], 0, "q={q}: {out}");
    let entries = out["entries"].as_array().unwrap().clone();
    (entries, out["total"].as_u64().unwrap())
}

/// Every entry `/audit` shows `auth`, oldest first, asserting `total` matches.
async fn list_all(api: &Api, auth: &str) -> Vec<Value> {
    let (s, out) = api
        .get_as(auth, "/audit?page_size=1000&sort_order=asc")
        .await;
    assert_eq!(s, 200, "{out}");
    let logs = out["audit_logs"].as_array().unwrap().clone();
    assert_eq!(out["total"].as_u64().unwrap() as usize, logs.len(), "{out}");
    logs
}

/// `/audit/export` as `auth`: status, content type and body.
async fn export(api: &Api, auth: &str, params: &[(&str, &str)]) -> (u16, String, String) {
    let resp = api
        .http
        .get(url_with(api, "/audit/export", params))
        .bearer_auth(auth)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, resp.text().await.unwrap())
}

/// An export body's lines, each parsed (asserting one JSON object per line, newline-ended).
fn lines(body: &str) -> Vec<Value> {
    if body.is_empty() {
        return Vec::new();
    }
    assert!(body.ends_with('\n'), "export does not end with a newline");
    body.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect()
}

/// The entry's before and after values as text, lower-cased (what free text searches).
fn values_text(e: &Value) -> String {
    format!("{} {}", e["before_value"], e["updated_values"]).to_lowercase()
}

fn ms(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"));
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn scope(e: &Value) -> Vec<String> {
    e["scope"]
        .as_array()
        .unwrap_or_else(|| panic!("no scope: {e}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn has_scope(e: &Value, org: &str) -> bool {
    scope(e).iter().any(|o| o == org)
}

async fn ok(api: &Api, path: &str, body: Value) -> Value {
    let (s, out) = api.post(path, body.clone()).await;
    assert_eq!(s, 200, "{path} {body}: {out}");
    out
}

/// Runs the CLI: exit code and everything printed.
fn cli(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(binary())
        .args(args)
        .env_remove("PORTCULLIS_DATA_DIR")
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn audit_verify(data_dir: &Path) -> (i32, String) {
    cli(&[
        "audit".as_ref(),
        "verify".as_ref(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
    ])
}

/// SIGTERM and a clean exit.
fn stop(api: Api) {
    let Api { mut gw, .. } = api;
    gw.signal("TERM");
    let status = gw.wait_exit(Duration::from_secs(30)).expect("exit");
    assert!(status.success(), "{status}");
}

// ---------------------------------------------------------------------------------------------
// 1. the search language
// ---------------------------------------------------------------------------------------------

/// A small, varied log: an organisation, teams (one deleted), a user who renames their own key,
/// keys with distinctive metadata (one updated), a customer. Returns the `k-one` key's hash.
async fn varied_log(api: &Api) -> String {
    ok(
        api,
        "/organization/new",
        json!({"organization_id": "acme", "organization_alias": "Acme"}),
    )
    .await;
    ok(
        api,
        "/team/new",
        json!({"team_id": "team-alpha", "team_alias": "Alpha Squad",
               "metadata": {"purpose": "quokka research"}}),
    )
    .await;
    ok(api, "/team/new", json!({"team_id": "team-beta"})).await;
    let ursula = ok(api, "/user/new", json!({"user_id": "user-ursula"})).await;
    let ursula_key = secret_of(&ursula);
    let k1 = api
        .generate(json!({"key_alias": "k-one", "metadata": {"note": "zebracorn migration plan"}}))
        .await;
    api.generate(json!({"key_alias": "k-two", "metadata": {"note": "plan migration"}}))
        .await;
    ok(
        api,
        "/key/update",
        json!({"key": secret_of(&k1), "key_alias": "k-one-renamed"}),
    )
    .await;
    let (s, out) = api
        .post_as(
            &ursula_key,
            "/key/update",
            json!({"key": ursula_key, "key_alias": "ursula-own"}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    ok(api, "/team/delete", json!({"team_ids": ["team-beta"]})).await;
    ok(api, "/customer/new", json!({"user_id": "cust-1"})).await;
    k1["token"].as_str().unwrap().to_string()
}

/// Checks one query against `pred` over the full log: the same entries, newest first, and a
/// `total` that counts them. Returns the matching entries.
async fn check(api: &Api, full: &[Value], q: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let (found, total) = search_all(api, MASTER_KEY, q).await;
    let mut expected: Vec<u64> = full.iter().filter(|e| pred(e)).map(seq).collect();
    expected.reverse();
    assert_eq!(seqs(&found), expected, "q={q}");
    assert_eq!(total as usize, expected.len(), "q={q}");
    // The entries are the stored ones, unchanged.
    for e in &found {
        let same = full.iter().find(|f| seq(f) == seq(e)).unwrap();
        assert_eq!(e, same, "q={q}");
    }
    found
}

#[tokio::test]
async fn search_language_matches_text_fields_prefixes_booleans_and_ranges() {
    let api = Api::start();
    let k1 = varied_log(&api).await;
    let full = list_all(&api, MASTER_KEY).await;
    assert_eq!(full.len(), 11, "{full:?}");
    let n = full.len();
    let table = |t: &'static str| move |e: &Value| e["table_name"] == t;
    let action = |a: &'static str| move |e: &Value| e["action"] == a;
    let text = |w: &'static str| move |e: &Value| values_text(e).contains(w);

    // Everything, newest first, and ascending on request.
    let all = check(&api, &full, "", |_| true).await;
    assert_eq!(all.len(), n);
    let (s, asc) = search(
        &api,
        MASTER_KEY,
        &[("sort_order", "asc"), ("limit", "1000")],
    )
    .await;
    assert_eq!(s, 200, "{asc}");
    assert_eq!(seqs(asc["entries"].as_array().unwrap()), seqs(&full));
    assert_eq!(asc["total"].as_u64().unwrap() as usize, n);
    check(&api, &full, "   ", |_| true).await;

    // Free text: a word of one key's metadata, in any case; a phrase only in its order.
    let z = check(&api, &full, "zebracorn", text("zebracorn")).await;
    assert_eq!(z.len(), 2, "created and renamed");
    assert!(z.iter().all(|e| e["object_id"] == k1.as_str()));
    assert_eq!(z[0]["action"], "updated");
    assert_eq!(z[1]["action"], "created");
    check(&api, &full, "ZebraCorn", text("zebracorn")).await;
    check(&api, &full, "text:zebracorn", text("zebracorn")).await;
    let p = check(&api, &full, "\"migration plan\"", text("migration plan")).await;
    assert_eq!(p.len(), 2);
    let p2 = check(&api, &full, "\"plan migration\"", text("plan migration")).await;
    assert_eq!(p2.len(), 1);
    assert_eq!(p2[0]["updated_values"]["key_alias"], "k-two");
    let q = check(&api, &full, "quokka", text("quokka")).await;
    assert_eq!(seqs(&q).len(), 1);
    assert_eq!(q[0]["object_id"], "team-alpha");
    // Free text searches the values only, not the other columns (the table name here).
    check(&api, &full, "LiteLLM_TeamTable", |_| false).await;

    // field:value, with LiteLLM's table names behind the short ones.
    let d = check(&api, &full, "action:deleted", action("deleted")).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["object_id"], "team-beta");
    assert!(d[0]["updated_values"].is_null(), "{}", d[0]);
    check(&api, &full, "action:DELETED", action("deleted")).await;
    let u = check(&api, &full, "action:updated", action("updated")).await;
    assert!(u.len() >= 2);
    for (short, long) in [
        ("key", KEY),
        ("user", USER),
        ("team", TEAM),
        ("organization", ORG),
        ("customer", CUSTOMER),
    ] {
        let found = check(&api, &full, &format!("table:{short}"), table(long)).await;
        assert!(!found.is_empty(), "table:{short}");
        check(&api, &full, &format!("table_name:{long}"), table(long)).await;
    }
    // Ursula's key, k-one and k-two created; k-one and Ursula's key renamed.
    assert_eq!(check(&api, &full, "table:key", table(KEY)).await.len(), 5);
    let a = check(&api, &full, "object:team-alpha", |e| {
        e["object_id"] == "team-alpha"
    })
    .await;
    assert_eq!(a.len(), 1);
    check(&api, &full, "object:team-alph", |_| false).await;
    check(&api, &full, "object:TEAM-ALPHA", |_| false).await;
    let t = check(&api, &full, "object:team-*", |e| {
        e["object_id"].as_str().unwrap().starts_with("team-")
    })
    .await;
    assert_eq!(t.len(), 3, "alpha created, beta created and deleted");
    let prefix = format!("object:{}*", &k1[..6]);
    check(&api, &full, &prefix, |e| {
        e["object_id"].as_str().unwrap().starts_with(&k1[..6])
    })
    .await;
    let by_ursula = check(&api, &full, "actor:user-ursula", |e| {
        e["changed_by"] == "user-ursula"
    })
    .await;
    assert_eq!(by_ursula.len(), 1);
    assert_eq!(by_ursula[0]["updated_values"]["key_alias"], "ursula-own");
    check(&api, &full, "changed_by:user-*", |e| {
        e["changed_by"] == "user-ursula"
    })
    .await;
    check(&api, &full, "actor:master_key", |e| {
        e["changed_by"] == "master_key"
    })
    .await;
    check(&api, &full, "role:internal_user", |e| {
        e["actor_role"] == "internal_user"
    })
    .await;

    // Booleans and parentheses (AND tighter than OR, NOT tightest).
    let team_created = |e: &Value| e["table_name"] == TEAM && e["action"] == "created";
    check(&api, &full, "table:team action:created", team_created).await;
    check(&api, &full, "table:team AND action:created", team_created).await;
    check(&api, &full, "+table:team +action:created", team_created).await;
    check(&api, &full, "action:deleted OR zebracorn", |e| {
        e["action"] == "deleted" || text("zebracorn")(e)
    })
    .await;
    let key_not_created = |e: &Value| e["table_name"] == KEY && e["action"] != "created";
    let knc = check(&api, &full, "table:key -action:created", key_not_created).await;
    assert_eq!(knc.len(), 2);
    check(&api, &full, "table:key NOT action:created", key_not_created).await;
    check(&api, &full, "-table:key", |e| e["table_name"] != KEY).await;
    check(&api, &full, "NOT table:key NOT table:team", |e| {
        e["table_name"] != KEY && e["table_name"] != TEAM
    })
    .await;
    check(
        &api,
        &full,
        "(table:team OR table:key) action:updated",
        |e| (e["table_name"] == TEAM || e["table_name"] == KEY) && e["action"] == "updated",
    )
    .await;
    check(&api, &full, "table:team OR table:key action:updated", |e| {
        e["table_name"] == TEAM || (e["table_name"] == KEY && e["action"] == "updated")
    })
    .await;
    check(&api, &full, "-(table:team OR table:key)", |e| {
        e["table_name"] != TEAM && e["table_name"] != KEY
    })
    .await;
    check(
        &api,
        &full,
        "NOT (action:created OR action:updated) table:team",
        |e| e["table_name"] == TEAM && e["action"] == "deleted",
    )
    .await;

    // Sequence ranges.
    let r = check(&api, &full, "seq:[3 TO 6]", |e| (3..=6).contains(&seq(e))).await;
    assert_eq!(seqs(&r), [6, 5, 4, 3]);
    let r = check(&api, &full, "seq:{3 TO 6}", |e| (4..=5).contains(&seq(e))).await;
    assert_eq!(seqs(&r), [5, 4]);
    check(&api, &full, "seq:[3 TO 6}", |e| (3..6).contains(&seq(e))).await;
    check(&api, &full, "seq:>=8", |e| seq(e) >= 8).await;
    check(&api, &full, "seq:<3", |e| seq(e) < 3).await;
    check(&api, &full, "id:[10 TO *]", |e| seq(e) >= 10).await;
    let one = check(&api, &full, "seq:4", |e| seq(e) == 4).await;
    assert_eq!(one.len(), 1);

    // Time: the last hour holds everything; a range in 2000 nothing; the day of the entries
    // (as a date) exactly its entries.
    check(&api, &full, "time:>=now-1h", |_| true).await;
    check(&api, &full, "time:<now-1h", |_| false).await;
    check(&api, &full, "time:[2000-01-01 TO 2000-12-31]", |_| false).await;
    check(&api, &full, "time:<2001-01-01", |_| false).await;
    let day = full[0]["updated_at"].as_str().unwrap()[..10].to_string();
    check(&api, &full, &format!("time:{day}"), |e| {
        e["updated_at"].as_str().unwrap().starts_with(&day)
    })
    .await;
    // An instant range between two entries' timestamps.
    let from = full[2]["updated_at"].as_str().unwrap().to_string();
    let to = full[n - 3]["updated_at"].as_str().unwrap().to_string();
    check(&api, &full, &format!("time:[{from} TO {to}]"), |e| {
        let t = ms(e["updated_at"].as_str().unwrap());
        t >= ms(&from) && t <= ms(&to)
    })
    .await;
    check(&api, &full, &format!("time:>{from} table:key"), |e| {
        ms(e["updated_at"].as_str().unwrap()) > ms(&from) && e["table_name"] == KEY
    })
    .await;

    // Cursor pagination: pages of 2, newest first, until next_cursor is null.
    let mut totals = Vec::new();
    for (order, q, pred) in [
        ("desc", "", (|_: &Value| true) as fn(&Value) -> bool),
        ("asc", "", |_: &Value| true),
        ("desc", "table:key OR table:team", |e: &Value| {
            e["table_name"] == KEY || e["table_name"] == TEAM
        }),
    ] {
        let mut expected: Vec<u64> = full.iter().filter(|e| pred(e)).map(seq).collect();
        if order == "desc" {
            expected.reverse();
        }
        let mut got: Vec<u64> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut params = vec![("q", q), ("limit", "2"), ("sort_order", order)];
            if let Some(c) = cursor.as_deref() {
                params.push(("cursor", c));
            }
            let (s, page) = search(&api, MASTER_KEY, &params).await;
            assert_eq!(s, 200, "{page}");
            let entries = page["entries"].as_array().unwrap();
            assert!(entries.len() <= 2);
            got.extend(seqs(entries));
            pages += 1;
            totals.push((
                order,
                q,
                pages,
                page["total"].as_u64().unwrap(),
                expected.len(),
            ));
            assert!(pages <= expected.len() + 1, "pagination does not end");
            match page["next_cursor"].as_str() {
                Some(c) => {
                    assert_eq!(entries.len(), 2, "a short page names a next page: {page}");
                    assert_eq!(c, entries[1]["id"].as_str().unwrap());
                    cursor = Some(c.to_string());
                }
                None => {
                    assert!(page["next_cursor"].is_null(), "{page}");
                    break;
                }
            }
        }
        let unique: HashSet<u64> = got.iter().copied().collect();
        assert_eq!(unique.len(), got.len(), "duplicates across pages: {got:?}");
        assert_eq!(got, expected, "{order} q={q}");
    }
    // `total` counts the query's matches, the same on every page (not what is left after the
    // cursor: a client showing "11 results" must not see it drop to 9 on page 2).
    for (order, q, page, total, expected) in totals {
        assert_eq!(
            total, expected as u64,
            "total on page {page} of {order} q={q:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. bad input
// ---------------------------------------------------------------------------------------------

/// Asserts a 400 naming `param`, whose message contains every one of `needles`.
fn assert_bad(status: u16, out: &Value, param: &str, needles: &[&str]) {
    assert_eq!(status, 400, "{out}");
    assert_eq!(out["error"]["param"], param, "{out}");
    let msg = out["error"]["message"].as_str().unwrap_or_default();
    for n in needles {
        assert!(msg.contains(n), "message lacks `{n}`: {msg}");
    }
}

#[tokio::test]
async fn malformed_searches_and_parameters_are_refused_and_huge_pages_capped() {
    let api = Api::start();
    for i in 0..5 {
        api.generate(json!({"key_alias": format!("bad-input-{i}")}))
            .await;
    }
    let total = list_all(&api, MASTER_KEY).await.len();
    assert_eq!(total, 5);

    let long = "a ".repeat(2500);
    for (q, needles) in [
        (
            "(action:created",
            &["unbalanced parenthesis", "never closed"][..],
        ),
        (
            "action:created)",
            &["unbalanced parenthesis", "no matching"],
        ),
        ("foo:bar", &["unknown field 'foo'", "action, table, object"]),
        ("time:>yesterday", &["bad time 'yesterday'", "RFC 3339"]),
        ("seq:[10 TO 1]", &["reversed range"]),
        (&long, &["too long", "4096"]),
        ("actor:", &["missing value after 'actor:'"]),
        ("\"abc", &["unbalanced quote"]),
        ("a AND", &["AND needs a term after it"]),
        ("object:*", &[]),
        ("seq:abc", &["seq must be a whole number"]),
        ("time:[2026-01-01 2026-02-01]", &["TO"]),
    ] {
        let (s, out) = search(&api, MASTER_KEY, &[("q", q)]).await;
        let shown = &q[..q.len().min(40)];
        assert_eq!(s, 400, "q={shown}: {out}");
        assert_bad(s, &out, "q", &["Bad query", "at character"]);
        assert_bad(s, &out, "q", needles);
        // The export refuses the same queries before it starts streaming.
        let (s, ctype, body) = export(&api, MASTER_KEY, &[("q", q)]).await;
        assert_eq!(s, 400, "export q={shown}: {body}");
        assert!(ctype.starts_with("application/json"), "{ctype}");
    }
    // Positions count from 0.
    let (_, out) = search(&api, MASTER_KEY, &[("q", "action:created foo:bar")]).await;
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at character 15:"),
        "{out}"
    );

    for (params, param) in [
        (&[("cursor", "abc")][..], "cursor"),
        (&[("cursor", "-1")], "cursor"),
        (&[("sort_order", "sideways")], "sort_order"),
        (&[("limit", "0")], "limit"),
        (&[("limit", "abc")], "limit"),
        (&[("limit", "-5")], "limit"),
    ] {
        let (s, out) = search(&api, MASTER_KEY, params).await;
        assert_bad(s, &out, param, &[param]);
    }
    // An oversized limit is capped, not refused.
    let (s, out) = search(&api, MASTER_KEY, &[("limit", "100000")]).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["entries"].as_array().unwrap().len(), total);
    assert_eq!(out["total"].as_u64().unwrap() as usize, total);
    assert!(out["next_cursor"].is_null());

    // /audit: reversed dates refused, a huge page size capped, a page far past the end empty.
    let (s, out) = api
        .get("/audit?start_date=2030-01-02&end_date=2030-01-01")
        .await;
    assert_bad(s, &out, "start_date", &["after"]);
    let (s, out) = api.get("/audit?start_date=yesterday").await;
    assert_bad(s, &out, "start_date", &["date"]);
    for bad in ["0", "abc", "-1"] {
        let (s, out) = api.get(&format!("/audit?page={bad}")).await;
        assert_bad(s, &out, "page", &["page"]);
        let (s, out) = api.get(&format!("/audit?page_size={bad}")).await;
        assert_bad(s, &out, "page_size", &["page_size"]);
    }
    let (s, out) = api.get("/audit?page_size=100000").await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["page_size"], 1000);
    assert_eq!(out["audit_logs"].as_array().unwrap().len(), total);
    for page in ["999999999", "18446744073709551"] {
        let started = Instant::now();
        let (s, out) = api.get(&format!("/audit?page={page}&page_size=1000")).await;
        assert_eq!(s, 200, "page={page}: {out}");
        assert!(started.elapsed() < Duration::from_secs(5), "page={page}");
        assert_eq!(out["audit_logs"], json!([]), "page={page}");
        assert_eq!(out["total"].as_u64().unwrap() as usize, total);
        assert_eq!(out["total_pages"], 1);
        assert_eq!(out["page"].to_string(), page);
    }
    // The server is still fine afterwards.
    assert_eq!(list_all(&api, MASTER_KEY).await.len(), total);

    // The largest page numbers: an offset that overflows when the page size is added to it
    // must still be an empty page, not an internal error.
    for (page, size) in [
        ("18446744073709551615", "1000"),
        ("9223372036854775807", "10"),
        ("18446744073709551615", "1"),
    ] {
        let (s, out) = api
            .get(&format!("/audit?page={page}&page_size={size}"))
            .await;
        assert_eq!(s, 200, "page={page} page_size={size}: {out}");
        assert_eq!(out["audit_logs"], json!([]));
        assert_eq!(out["total"].as_u64().unwrap() as usize, total);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. scope
// ---------------------------------------------------------------------------------------------

/// A user (with a key of their own) and that key.
async fn user_with_key(api: &Api, id: &str, role: &str) -> String {
    let out = ok(api, "/user/new", json!({"user_id": id, "user_role": role})).await;
    secret_of(&out)
}

#[tokio::test]
async fn an_org_admin_reads_exactly_its_subtree_and_others_nothing() {
    let api = Api::start();
    for (id, parent) in [
        ("root", None),
        ("child", Some("root")),
        ("grandchild", Some("child")),
        ("other", None),
    ] {
        ok(
            &api,
            "/organization/new",
            json!({"organization_id": id, "organization_alias": format!("{id} alias"),
                   "parent_organization_id": parent}),
        )
        .await;
    }
    let oa = user_with_key(&api, "oa", "internal_user").await;
    ok(
        &api,
        "/organization/member_add",
        json!({"organization_id": "child", "member": {"user_id": "oa", "role": "org_admin"}}),
    )
    .await;
    let plain = user_with_key(&api, "plain", "internal_user").await;
    let viewer = user_with_key(&api, "viewer", "proxy_admin_viewer").await;

    // Changes in every organisation, and at proxy level.
    let mut key_of = std::collections::HashMap::new();
    for org in ["root", "child", "grandchild", "other"] {
        let k = api
            .generate(json!({"key_alias": format!("key-{org}"), "organization_id": org}))
            .await;
        key_of.insert(org, k["token"].as_str().unwrap().to_string());
        ok(
            &api,
            "/team/new",
            json!({"team_id": format!("team-{org}"), "organization_id": org}),
        )
        .await;
        let member = format!("member-{org}");
        ok(
            &api,
            "/user/new",
            json!({"user_id": member, "auto_create_key": false}),
        )
        .await;
        ok(
            &api,
            "/organization/member_add",
            json!({"organization_id": org, "member": {"user_id": member, "role": "internal_user"}}),
        )
        .await;
        // A key of a team in the organisation (scope through the team).
        api.generate(
            json!({"key_alias": format!("team-key-{org}"), "team_id": format!("team-{org}")}),
        )
        .await;
    }
    let proxy_key = api.generate(json!({"key_alias": "proxy-level"})).await;
    ok(&api, "/team/new", json!({"team_id": "team-proxy"})).await;
    // The org admin changes something in its own subtree (an entry it both made and sees).
    let (s, out) = api
        .post_as(
            &oa,
            "/team/update",
            json!({"team_id": "team-grandchild", "metadata": {"by": "the org admin"}}),
        )
        .await;
    assert_eq!(s, 200, "{out}");

    let full = list_all(&api, MASTER_KEY).await;
    let find = |table: &str, object: &str, action: &str| -> Value {
        full.iter()
            .find(|e| e["table_name"] == table && e["object_id"] == object && e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} {table} {object} entry"))
            .clone()
    };
    // Scopes list the organisation and its ancestors, root first.
    let gc_key = find(KEY, &key_of["grandchild"], "created");
    assert_eq!(scope(&gc_key), ["root", "child", "grandchild"]);
    assert_eq!(
        scope(&find(TEAM, "team-grandchild", "created")),
        ["root", "child", "grandchild"]
    );
    assert_eq!(
        scope(&find(TEAM, "team-grandchild", "updated")),
        ["root", "child", "grandchild"]
    );
    assert_eq!(
        scope(&find(KEY, &key_of["child"], "created")),
        ["root", "child"]
    );
    assert_eq!(scope(&find(KEY, &key_of["root"], "created")), ["root"]);
    assert_eq!(scope(&find(KEY, &key_of["other"], "created")), ["other"]);
    assert_eq!(
        scope(&find(ORG, "grandchild", "created")),
        ["root", "child", "grandchild"]
    );
    assert_eq!(scope(&find(ORG, "other", "created")), ["other"]);
    assert_eq!(
        scope(&find(USER, "member-child", "updated")),
        ["root", "child"]
    );
    assert_eq!(
        scope(&find(KEY, proxy_key["token"].as_str().unwrap(), "created")),
        Vec::<String>::new()
    );
    assert_eq!(
        scope(&find(TEAM, "team-proxy", "created")),
        Vec::<String>::new()
    );
    assert_eq!(scope(&find(USER, "plain", "created")), Vec::<String>::new());
    // The team key in grandchild is scoped through its team.
    let team_key = full
        .iter()
        .find(|e| {
            e["table_name"] == KEY && e["updated_values"]["key_alias"] == "team-key-grandchild"
        })
        .unwrap();
    assert_eq!(scope(team_key), ["root", "child", "grandchild"]);

    let in_child: Vec<&Value> = full.iter().filter(|e| has_scope(e, "child")).collect();
    let expected: Vec<u64> = in_child.iter().map(|e| seq(e)).collect();
    let mut expected_desc = expected.clone();
    expected_desc.reverse();
    assert!(in_child.iter().any(|e| has_scope(e, "grandchild")));
    assert!(in_child.iter().any(|e| !has_scope(e, "grandchild")));
    let outside: Vec<&Value> = full.iter().filter(|e| !has_scope(e, "child")).collect();
    assert!(outside.iter().any(|e| scope(e) == ["root"]));
    assert!(outside.iter().any(|e| scope(e) == ["other"]));
    assert!(outside.iter().any(|e| scope(e).is_empty()));
    let other_entry = seq(&find(KEY, &key_of["other"], "created"));
    let root_entry = seq(&find(KEY, &key_of["root"], "created"));
    let proxy_entry = seq(&find(TEAM, "team-proxy", "created"));

    // /audit: exactly the subtree's entries, total and paging included.
    let listed = list_all(&api, &oa).await;
    assert_eq!(seqs(&listed), expected);
    for e in &listed {
        assert!(has_scope(e, "child"), "{e}");
        assert_eq!(e, full.iter().find(|f| seq(f) == seq(e)).unwrap());
    }
    let (s, page) = api.get_as(&oa, "/audit?page=2&page_size=3").await;
    assert_eq!(s, 200);
    assert_eq!(page["total"].as_u64().unwrap() as usize, expected.len());
    assert_eq!(
        seqs(page["audit_logs"].as_array().unwrap()),
        expected_desc[3..6]
    );
    let (_, teams) = api
        .get_as(&oa, &format!("/audit?table_name={TEAM}&page_size=100"))
        .await;
    let mut team_objects: Vec<&str> = teams["audit_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["object_id"].as_str().unwrap())
        .collect();
    team_objects.dedup();
    assert_eq!(team_objects, ["team-grandchild", "team-child"]);
    // LiteLLM's filters cannot reach past the scope either.
    let (_, by_id) = api
        .get_as(&oa, &format!("/audit?object_id={}", key_of["other"]))
        .await;
    assert_eq!(by_id["total"], 0, "{by_id}");

    // /audit/search: the same, with any query.
    let (found, total) = search_all(&api, &oa, "").await;
    assert_eq!(seqs(&found), expected_desc);
    assert_eq!(total as usize, expected.len());
    let (found, _) = search_all(&api, &oa, "table:team").await;
    let want: Vec<u64> = expected_desc
        .iter()
        .copied()
        .filter(|s| full.iter().any(|e| seq(e) == *s && e["table_name"] == TEAM))
        .collect();
    assert_eq!(seqs(&found), want);
    for q in [
        "org:other",
        "org:root -org:child",
        "object:team-other",
        "object:team-root",
    ] {
        let (found, total) = search_all(&api, &oa, q).await;
        assert!(found.is_empty() && total == 0, "q={q}: {found:?}");
    }
    let (found, _) = search_all(&api, &oa, "org:grandchild").await;
    let want: Vec<u64> = expected_desc
        .iter()
        .copied()
        .filter(|s| {
            full.iter()
                .any(|e| seq(e) == *s && has_scope(e, "grandchild"))
        })
        .collect();
    assert_eq!(seqs(&found), want);
    let (found, _) = search_all(&api, &oa, "-org:grandchild").await;
    assert!(found.iter().all(|e| scope(e) == ["root", "child"]));
    // For the master key, org:child means the same subtree.
    let (found, _) = search_all(&api, MASTER_KEY, "org:child").await;
    assert_eq!(seqs(&found), expected_desc);
    // Its own change is attributed to it, in its role.
    let (by_oa, _) = search_all(&api, &oa, "actor:oa").await;
    assert_eq!(by_oa.len(), 1, "{by_oa:?}");
    assert_eq!(by_oa[0]["object_id"], "team-grandchild");
    assert_eq!(
        by_oa[0]["changed_by_api_key"],
        crate::keys::sha256_hex(&oa).as_str()
    );

    // /audit/export: the same entries, oldest first.
    let (s, ctype, body) = export(&api, &oa, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(ctype, "application/x-ndjson");
    assert_eq!(seqs(&lines(&body)), expected);
    let (_, _, body) = export(&api, &oa, &[("q", "org:other OR org:root")]).await;
    assert_eq!(
        seqs(&lines(&body)),
        expected,
        "org:root inside the scope is the scope"
    );

    // Single entries.
    for id in [other_entry, root_entry, proxy_entry] {
        let (s, out) = api.get_as(&oa, &format!("/audit/{id}")).await;
        assert_eq!(s, 404, "entry {id}: {out}");
    }
    let (s, out) = api.get_as(&oa, &format!("/audit/{}", seq(&gc_key))).await;
    assert_eq!(s, 200);
    assert_eq!(out, gc_key);
    assert_eq!(api.get_as(&oa, "/audit/head").await.0, 403);

    // An internal user with no admin role: nothing at all.
    let (s, out) = api.get_as(&plain, "/audit?page_size=100").await;
    assert_eq!(s, 200);
    assert_eq!(out["total"], 0);
    assert_eq!(out["audit_logs"], json!([]));
    let (s, out) = search(&api, &plain, &[]).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["total"], 0);
    assert_eq!(out["entries"], json!([]));
    assert!(out["next_cursor"].is_null());
    let (s, ctype, body) = export(&api, &plain, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(ctype, "application/x-ndjson");
    assert_eq!(body, "");
    for id in [seq(&gc_key), other_entry, proxy_entry] {
        assert_eq!(api.get_as(&plain, &format!("/audit/{id}")).await.0, 404);
    }
    assert_eq!(api.get_as(&plain, "/audit/head").await.0, 403);

    // A proxy admin viewer: everything.
    assert_eq!(seqs(&list_all(&api, &viewer).await), seqs(&full));
    let (found, total) = search_all(&api, &viewer, "").await;
    assert_eq!(total as usize, full.len());
    assert_eq!(found.len(), full.len());
    let (_, _, body) = export(&api, &viewer, &[]).await;
    assert_eq!(lines(&body), full);
    let (s, out) = api.get_as(&viewer, &format!("/audit/{other_entry}")).await;
    assert_eq!(s, 200, "{out}");
    let (s, head) = api.get_as(&viewer, "/audit/head").await;
    assert_eq!(s, 200);
    assert_eq!(head["seq"].as_u64().unwrap(), seq(full.last().unwrap()));

    // Reading wrote nothing.
    assert_eq!(seqs(&list_all(&api, MASTER_KEY).await), seqs(&full));

    // The org admin's own change records the role it acted in (docs/audit.md: `role` is "the
    // role the actor acted in: proxy_admin, org_admin, internal_user, …"), so `role:org_admin`
    // finds it.
    assert_eq!(by_oa[0]["actor_role"], "org_admin", "{}", by_oa[0]);
    let (found, _) = search_all(&api, MASTER_KEY, "role:org_admin").await;
    assert_eq!(seqs(&found), seqs(&by_oa));
}

// ---------------------------------------------------------------------------------------------
// 4. export
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn export_streams_json_lines_oldest_first_like_the_search() {
    let api = Api::start();
    let k1 = varied_log(&api).await;
    let full = list_all(&api, MASTER_KEY).await;
    let n = full.len();

    // Everything: one object per line, oldest first, exactly the listed entries.
    let (s, ctype, body) = export(&api, MASTER_KEY, &[]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(ctype, "application/x-ndjson");
    assert_eq!(body.lines().count(), n);
    let all = lines(&body);
    assert_eq!(all, full);

    // With a query: the search's entries, in the other order.
    for q in [
        "table:key",
        "zebracorn",
        "action:deleted OR table:organization",
        "-actor:master_key",
    ] {
        let (_, _, body) = export(&api, MASTER_KEY, &[("q", q)]).await;
        let mut exported = lines(&body);
        let (found, total) = search_all(&api, MASTER_KEY, q).await;
        assert!(!found.is_empty(), "q={q}");
        assert_eq!(exported.len() as u64, total, "q={q}");
        exported.reverse();
        assert_eq!(exported, found, "q={q}");
    }
    let (_, _, body) = export(&api, MASTER_KEY, &[("q", "zebracorn")]).await;
    assert!(lines(&body).iter().all(|e| e["object_id"] == k1.as_str()));

    // Time ranges: dates cover whole days; instants are inclusive at both ends.
    let day = full[0]["updated_at"].as_str().unwrap()[..10].to_string();
    let (_, _, body) = export(
        &api,
        MASTER_KEY,
        &[("start_date", &day), ("end_date", &day)],
    )
    .await;
    let on_day: Vec<Value> = full
        .iter()
        .filter(|e| e["updated_at"].as_str().unwrap().starts_with(&day))
        .cloned()
        .collect();
    assert_eq!(lines(&body), on_day);
    let (_, _, body) = export(
        &api,
        MASTER_KEY,
        &[("start_date", "2000-01-01"), ("end_date", "2000-12-31")],
    )
    .await;
    assert_eq!(body, "");
    let (_, _, body) = export(&api, MASTER_KEY, &[("end_date", "2000-12-31")]).await;
    assert_eq!(body, "");
    let from = full[3]["updated_at"].as_str().unwrap().to_string();
    let to = full[n - 4]["updated_at"].as_str().unwrap().to_string();
    let within = |e: &Value| {
        let t = ms(e["updated_at"].as_str().unwrap());
        t >= ms(&from) && t <= ms(&to)
    };
    let (s, _, body) = export(
        &api,
        MASTER_KEY,
        &[("start_date", &from), ("end_date", &to)],
    )
    .await;
    assert_eq!(s, 200);
    let want: Vec<Value> = full.iter().filter(|e| within(e)).cloned().collect();
    assert!(want.len() >= n - 6, "{} of {n}", want.len());
    assert_eq!(lines(&body), want);
    // The same range as a search.
    let (found, _) = search_all(&api, MASTER_KEY, &format!("time:[{from} TO {to}]")).await;
    let mut found = found;
    found.reverse();
    assert_eq!(found, want);
    // Range and query together.
    let (_, _, body) = export(
        &api,
        MASTER_KEY,
        &[("start_date", &from), ("q", "table:key")],
    )
    .await;
    let want: Vec<Value> = full
        .iter()
        .filter(|e| ms(e["updated_at"].as_str().unwrap()) >= ms(&from) && e["table_name"] == KEY)
        .cloned()
        .collect();
    assert!(!want.is_empty());
    assert_eq!(lines(&body), want);

    // Bad dates.
    for params in [
        &[("start_date", "yesterday")][..],
        &[("end_date", "2026-13-01")],
        &[("start_date", "2026-02-30")],
        &[("start_date", "2030-01-02"), ("end_date", "2030-01-01")],
    ] {
        let resp = api
            .http
            .get(url_with(&api, "/audit/export", params))
            .bearer_auth(MASTER_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{params:?}");
        let out: Value = resp.json().await.unwrap();
        let param = params.iter().find(|(_, v)| !v.is_empty()).unwrap().0;
        assert_eq!(out["error"]["param"], param, "{params:?}: {out}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. retention
// ---------------------------------------------------------------------------------------------

const MOCK_MODELS: &str =
    "model_list:\n  - model_name: \"mock/*\"\n    litellm_params: {model: \"mock/*\"}\n";

#[tokio::test]
async fn retention_prunes_old_entries_at_start_up_and_the_chain_still_verifies() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");

    // A first life: ten changes, then time passes.
    let api = Api::on(
        Options::new()
            .config(MOCK_MODELS)
            .data_dir(&data_dir)
            .start(),
    );
    for i in 0..10 {
        api.generate(json!({"key_alias": format!("old-{i}"), "metadata": {"era": "wombat"}}))
            .await;
    }
    let (_, head) = api.get("/audit/head").await;
    let old_last = head["seq"].as_u64().unwrap();
    let old_hash = head["hash"].as_str().unwrap().to_string();
    assert_eq!(old_last, 10, "{head}");
    assert!(head["pruned_through_seq"].is_null(), "{head}");
    let (found, _) = search_all(&api, MASTER_KEY, "wombat").await;
    assert_eq!(found.len(), 10);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop(api);

    // A second life keeping ~0.9 s of history: the start-up run prunes all of the above.
    let config = format!("{MOCK_MODELS}general_settings:\n  audit_retention_days: 0.00001\n");
    let api = Api::on(Options::new().config(config).data_dir(&data_dir).start());
    let pruned = eventually_async(Duration::from_secs(10), || async {
        api.get("/audit/head").await.1["pruned_through_seq"].as_u64() == Some(old_last)
    })
    .await;
    let (_, head) = api.get("/audit/head").await;
    assert!(pruned, "{head}\n{}", api.gw.log());
    assert_eq!(head["pruned_through_hash"], old_hash.as_str());
    let pruning_seq = head["seq"].as_u64().unwrap();
    assert!(pruning_seq > old_last, "{head}");

    let listed = list_all(&api, MASTER_KEY).await;
    assert!(!listed.is_empty());
    assert!(listed.iter().all(|e| seq(e) > old_last), "{listed:?}");
    let record = &listed[0];
    assert_eq!(record["action"], "pruned", "{record}");
    assert_eq!(record["table_name"], "audit");
    assert_eq!(record["changed_by"], "system");
    assert_eq!(record["object_id"], format!("1-{old_last}"));
    assert_eq!(record["updated_values"]["first_seq"], 1);
    assert_eq!(record["updated_values"]["through_seq"], old_last);
    assert_eq!(record["updated_values"]["through_hash"], old_hash.as_str());
    assert_eq!(record["updated_values"]["entries"], old_last);
    assert_eq!(
        seq(record),
        old_last + 1,
        "the first entry after the pruned ones"
    );
    assert_eq!(record["prev_hash"], old_hash.as_str());
    assert_eq!(api.get("/audit/1").await.0, 404);
    assert_eq!(api.get(&format!("/audit/{old_last}")).await.0, 404);

    // The search index forgot them too.
    for q in ["wombat", "seq:<=10", "table:key action:created"] {
        let (found, total) = search_all(&api, MASTER_KEY, q).await;
        assert!(found.is_empty() && total == 0, "q={q}: {found:?}");
    }
    let (found, total) = search_all(&api, MASTER_KEY, "action:pruned table:audit").await;
    assert_eq!(total, 1);
    assert_eq!(found[0], *record);
    let (found, total) = search_all(&api, MASTER_KEY, "").await;
    assert_eq!(total as usize, listed.len());
    assert_eq!(
        seqs(&found).into_iter().rev().collect::<Vec<_>>(),
        seqs(&listed)
    );
    let (_, _, body) = export(&api, MASTER_KEY, &[]).await;
    assert_eq!(lines(&body), listed);

    // New changes keep chaining after the pruning entry (and are young enough to stay).
    api.generate(json!({"key_alias": "new-1", "metadata": {"era": "wombat"}}))
        .await;
    let (found, _) = search_all(&api, MASTER_KEY, "wombat").await;
    assert_eq!(found.len(), 1);
    assert!(seq(&found[0]) > pruning_seq);
    let (_, head) = api.get("/audit/head").await;
    let final_seq = head["seq"].as_u64().unwrap();
    stop(api);

    // The kept chain verifies, anchored at the checkpoint.
    let (code, out) = audit_verify(&data_dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact"), "{out}");
    let kept = final_seq - old_last;
    assert!(
        out.contains(&format!(
            "audit chain: intact, {kept} entries, head entry {final_seq}"
        )),
        "{out}"
    );

    // The first kept entry deleted (entry and hash): verify names it as missing.
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("tampered");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(
        data_dir.join("portcullis.redb"),
        copy.join("portcullis.redb"),
    )
    .unwrap();
    {
        let db = redb::Database::open(copy.join("portcullis.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut entries = txn.open_table(AUDIT).unwrap();
            let mut hashes = txn.open_table(AUDIT_HASHES).unwrap();
            assert!(entries.remove(old_last + 1).unwrap().is_some());
            assert!(hashes.remove(old_last + 1).unwrap().is_some());
        }
        txn.commit().unwrap();
    }
    let (code, out) = audit_verify(&copy);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("audit entry {} is missing", old_last + 1)),
        "{out}"
    );
    assert!(out.contains("BROKEN"), "{out}");
    // The original is untouched and still intact.
    assert_eq!(audit_verify(&data_dir).0, 0);
}
