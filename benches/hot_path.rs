//! Benchmark 7: the hot path alone, without the network: read lines from an inbox file, parse each
//! record, derive its key, map it to a page body and serialize that body (what the client sends).
//! Prints records per second on one core. Run: `cargo bench --bench hot_path`.

use std::io::Write;
use std::time::Instant;

use notion_inbox::config::{Config, NotionVersion};
use notion_inbox::inbox::{Item, TailOptions, reader::Tailer};
use notion_inbox::notion::{Property, PropertyKind, Resolved};
use notion_inbox::record::Mapper;
use notion_inbox::record::line::{parse_line, record_key};

fn main() {
    let records: usize = std::env::var("HOT_PATH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500_000);
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&inbox).unwrap());
        for i in 0..records {
            writeln!(
                f,
                r#"{{"handle":"@user{i}","tweet":"Tweet number {i}: the quick brown fox jumps over the lazy dog, again and again, with some émoji 😀 to be fair."}}"#
            )
            .unwrap();
        }
    }
    let bytes = std::fs::metadata(&inbox).unwrap().len();
    let config = Config::from_toml(
        &dir.path().join("config.toml"),
        "[[target]]\nname = \"t\"\ninbox = \"inbox.jsonl\"\ndatabase_id = \"0123456789abcdef0123456789abcdef\"\ntoken = \"x\"\ndedupe_property = \"Inbox ID\"\n[target.properties]\nhandle = \"title\"\ntweet = \"tweet\"\n",
    )
    .unwrap();
    let prop = |name: &str, id: &str, kind: PropertyKind| Property {
        name: name.into(),
        id: id.into(),
        kind,
        options: vec![],
    };
    let resolved = Resolved {
        version: NotionVersion::V2025_09_03,
        database_id: Some("db".into()),
        data_source_id: Some("ds".into()),
        title: "Twitter".into(),
        properties: vec![
            prop("handle", "title", PropertyKind::Title),
            prop("tweet", "abc", PropertyKind::RichText),
            prop("Inbox ID", "def", PropertyKind::RichText),
        ],
    };
    let mapper = Mapper::new(&config.targets[0], &resolved).unwrap();

    println!("| stage | records | seconds | records/s/core | MB/s |");
    println!("|---|---:|---:|---:|---:|");
    let run = |label: &str, map: bool| {
        let start = Instant::now();
        let mut tailer = Tailer::new(inbox.clone(), TailOptions::default(), None).unwrap();
        let mut n = 0usize;
        let mut body_bytes = 0usize;
        loop {
            let batch = tailer.next_batch(4096, 8 << 20).unwrap();
            if batch.is_empty() {
                break;
            }
            for item in batch {
                if let Item::Line { pos, text } = item {
                    n += 1;
                    if map {
                        let record = parse_line(&text).unwrap();
                        let key = record_key(&record, &pos, &text).unwrap();
                        let body = mapper.page_body(&record, &key).unwrap();
                        body_bytes += serde_json::to_vec(&body).unwrap().len();
                    }
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(n, records);
        std::hint::black_box(body_bytes);
        println!(
            "| {label} | {n} | {secs:.3} | {:.0} | {:.0} |",
            n as f64 / secs,
            bytes as f64 / secs / 1e6
        );
    };
    run("read lines only", false);
    run("read + parse + key + map + serialize", true);
}
