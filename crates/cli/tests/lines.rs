//! The line endpoints: `/executions/{id}/lines` and `/executions/{id}/search`, against a real
//! server and the real store, for logs of many records.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

async fn lines(s: &Server, id: &str, query: &str) -> Value {
    let (code, body) = get(s, &format!("/v1/executions/{id}/lines?{query}")).await;
    assert_eq!(code, 200, "{body}");
    body
}

fn texts(page: &Value) -> Vec<String> {
    page["lines"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap().to_string()).collect()
}

async fn search(s: &Server, id: &str, query: &str) -> Vec<Value> {
    let body = reqwest::get(s.url(&format!("/v1/executions/{id}/search?{query}"))).await.unwrap();
    assert_eq!(body.headers()["content-type"], "application/x-ndjson");
    body.text().await.unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn any_line_of_a_log_of_many_records_is_read_by_number() {
    let s = Server::start();
    // 300,000 lines in many records (the writer cuts records at 1 MiB), then styled lines. The
    // unfinished `halt` ends in a letter no hex digit is: the action's auth token (32 hex
    // characters) is masked, so a pause after output ending in its first character would hold
    // that character back until the next stdout bytes — after the stderr line (README, masking).
    let cmd = "seq 1 300000; printf 'halt'; sleep 0.3; printf 'err\\n' >&2; sleep 0.3; printf '\\033[1;31mred\\033[0m\\n10%%\\r50%%\\r100%%\\n'; printf tail";
    let id = run_cmd(&s, cmd, json!({})).await;
    wait_done(&s, &id, Duration::from_secs(60)).await;

    let first = lines(&s, &id, "from=0&count=3").await;
    assert_eq!(texts(&first), ["1", "2", "3"]);
    assert_eq!((first["total"].as_u64(), first["status"].as_str()), (Some(300_005), Some("succeeded")));
    assert_eq!(first["lines"][0]["stream"], "stdout");
    assert!(first["lines"][0]["timestamp"].is_string() && first["lines"][0]["seq"].as_u64() == Some(1));

    // Deep in the log: the record it starts in is found, not read up to.
    for n in [54_321u64, 123_456, 299_998] {
        let page = lines(&s, &id, &format!("from={n}&count=2")).await;
        assert_eq!(texts(&page), [(n + 1).to_string(), (n + 2).to_string()], "line {n}");
        assert_eq!(page["lines"][0]["n"].as_u64(), Some(n));
    }

    // The end: a line cut by a change of stream, colours as runs, a progress bar's last state,
    // and the unfinished last line.
    let tail = lines(&s, &id, "from=-5&count=10").await;
    assert_eq!(tail["from"].as_u64(), Some(300_000));
    assert_eq!(texts(&tail), ["halt", "err", "red", "100%", "tail"]);
    let l = &tail["lines"];
    assert_eq!((l[0]["stream"].as_str(), l[1]["stream"].as_str()), (Some("stdout"), Some("stderr")));
    assert_eq!(l[2]["runs"], json!([[3, {"fg": 1, "bold": true}]]));
    assert!(l[3].get("runs").is_none());
    assert_eq!((l[4]["unfinished"].as_bool(), l[3].get("unfinished")), (Some(true), None));
    assert!(lines(&s, &id, "from=400000").await["lines"].as_array().unwrap().is_empty());

    // Bad requests are told why.
    for query in ["count=0", "count=100000", "from=x"] {
        let (code, body) = get(&s, &format!("/v1/executions/{id}/lines?{query}")).await;
        assert_eq!(code, 400, "{query}: {body}");
    }
    let (code, _) = get(&s, "/v1/executions/000000000000000000000000/lines").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn search_counts_every_hit_of_the_whole_log_and_sends_the_first() {
    let s = Server::start();
    let cmd = "seq 1 200000; printf '\\033[31mNeed\\033[0mle\\n' >&2";
    let id = run_cmd(&s, cmd, json!({})).await;
    wait_done(&s, &id, Duration::from_secs(60)).await;

    // `777` occurs in this many of 1..=200000 (counted here, not by the server).
    let expected = (1..=200_000u32).filter(|n| n.to_string().contains("777")).count() as u64;
    let events = search(&s, &id, "q=777&limit=5").await;
    let done = events.last().unwrap();
    assert_eq!((done["done"].as_bool(), done["count"].as_u64(), done["lines"].as_u64()), (Some(true), Some(expected), Some(200_001)));
    let hits: Vec<&Value> = events.iter().filter_map(|e| e.get("hit")).collect();
    assert_eq!(hits.iter().map(|h| h["text"].as_str().unwrap()).collect::<Vec<_>>(), ["777", "1777", "2777", "3777", "4777"]);
    assert_eq!(hits[0]["n"].as_u64(), Some(776));

    // Escapes are ignored, case too unless asked; regular expressions on request.
    let count = |events: Vec<Value>| events.last().unwrap()["count"].as_u64().unwrap();
    assert_eq!(count(search(&s, &id, "q=needle").await), 1);
    assert_eq!(count(search(&s, &id, "q=needle&case=true").await), 0);
    assert_eq!(count(search(&s, &id, "q=%5E1999%5Cd%24&regex=true").await), 10);
    assert_eq!(count(search(&s, &id, "q=1999.&regex=false").await), 0);
    // Narrowed to a stream: every line of it, or those of it that match.
    assert_eq!(count(search(&s, &id, "q=&output_type=stderr").await), 1);
    assert_eq!(count(search(&s, &id, "q=777&output_type=stderr").await), 0);
    let with_1999 = (1..=200_000u32).filter(|n| n.to_string().contains("1999")).count() as u64;
    assert_eq!(count(search(&s, &id, "q=1999&output_type=stdout").await), with_1999);
    // From a line on, stopping at the first hit: "the next error". (Where the stderr line lands
    // among stdout's depends on how the two pipes were read; the search says where.)
    let next = search(&s, &id, "q=needle&stop_after=1").await;
    let n = next[0]["hit"]["n"].as_u64().unwrap();
    assert_eq!((next[0]["hit"]["stream"].as_str(), next.last().unwrap()["stopped"].as_bool()), (Some("stderr"), Some(true)));
    assert_eq!(texts(&lines(&s, &id, &format!("from={n}&count=1")).await), ["Needle"]);
    assert_eq!(count(search(&s, &id, &format!("q=needle&from={}&stop_after=1", n + 1)).await), 0);
    for query in ["q=", "q=(&regex=true", "q=a&limit=-1"] {
        let (code, body) = get(&s, &format!("/v1/executions/{id}/search?{query}")).await;
        assert_eq!(code, 400, "{query}: {body}");
        assert!(body["faultstring"].is_string());
    }
}

#[tokio::test]
async fn raw_reads_of_a_finished_execution_answer_byte_ranges() {
    let s = Server::start();
    let id = run_cmd(&s, "seq 1 400000; echo err >&2; echo done", json!({})).await;
    wait_done(&s, &id, Duration::from_secs(60)).await;
    let full = get_bytes(&s, &format!("/v1/executions/{id}/stdout")).await;
    let client = reqwest::Client::new();
    let total = full.len();
    for (range, expected) in [
        ("bytes=0-9".to_string(), &full[..10]),
        (format!("bytes={}-{}", total / 2, total / 2 + 99_999), &full[total / 2..total / 2 + 100_000]),
        ("bytes=-5".to_string(), &full[total - 5..]),
        (format!("bytes={}-", total - 1_500_000), &full[total - 1_500_000..]),
    ] {
        let resp = client.get(s.url(&format!("/v1/executions/{id}/stdout"))).header("range", &range).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 206, "{range}");
        let content_range = resp.headers()["content-range"].to_str().unwrap().to_string();
        assert!(content_range.ends_with(&format!("/{total}")), "{content_range}");
        assert_eq!(resp.bytes().await.unwrap().as_ref(), expected, "{range}");
    }
    let resp = client.get(s.url(&format!("/v1/executions/{id}/stderr"))).header("range", "bytes=1-").send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.text().await.unwrap()), (206, "rr\n".to_string()));
    let resp = client.get(s.url(&format!("/v1/executions/{id}/stdout"))).header("range", format!("bytes={total}-")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 416);
    assert_eq!(resp.headers()["content-range"], format!("bytes */{total}").as_str());
    // Several ranges, or none that parses, get the whole stream.
    let resp = client.get(s.url(&format!("/v1/executions/{id}/stdout"))).header("range", "bytes=0-1,5-6").send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.bytes().await.unwrap().len()), (200, total));
}
