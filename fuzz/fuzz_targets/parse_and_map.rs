//! Fuzzes the hot path's pure part: a line of the inbox → parse → key → page body, for a schema
//! with every property type. Nothing may panic; a refusal must come with a reason; a body that is
//! produced must respect Notion's limits (every text item ≤ 2000 UTF-16 units, ≤ 100 items).

#![no_main]

use libfuzzer_sys::fuzz_target;
use notion_inbox::config::{Config, NotionVersion};
use notion_inbox::record::line::{parse_line, record_key};
use notion_inbox::inbox::{FileIdentity, LinePos};
use notion_inbox::notion::{Property, PropertyKind, Resolved};
use notion_inbox::record::Mapper;
use std::sync::OnceLock;

fn mapper() -> &'static Mapper {
    static M: OnceLock<Mapper> = OnceLock::new();
    M.get_or_init(|| {
        let config = Config::from_toml(
            std::path::Path::new("/fuzz/config.toml"),
            "[[target]]\nname = \"t\"\ninbox = \"i.jsonl\"\ndatabase_id = \"0123456789abcdef0123456789abcdef\"\ntoken = \"x\"\ndedupe_property = \"Inbox ID\"\n[target.properties]\nhandle = \"title\"\ntweet = \"tweet\"\nlink = \"Link\"\nwhen = \"When\"\nscore = \"Score\"\nkind = \"Kind\"\ntags = \"Tags\"\ndone = \"Done\"\nemail = \"Email\"\nphone = \"Phone\"\n",
        )
        .expect("a valid config");
        let p = |name: &str, id: &str, kind: &str| Property {
            name: name.into(),
            id: id.into(),
            kind: PropertyKind::parse(kind),
            options: vec![],
        };
        let resolved = Resolved {
            version: NotionVersion::V2025_09_03,
            database_id: Some("db".into()),
            data_source_id: Some("ds".into()),
            title: "Twitter".into(),
            properties: vec![
                p("handle", "title", "title"),
                p("tweet", "a", "rich_text"),
                p("Inbox ID", "b", "rich_text"),
                p("Link", "c", "url"),
                p("When", "d", "date"),
                p("Score", "e", "number"),
                p("Kind", "f", "select"),
                p("Tags", "g", "multi_select"),
                p("Done", "h", "checkbox"),
                p("Email", "i", "email"),
                p("Phone", "j", "phone_number"),
            ],
        };
        Mapper::new(&config.targets[0], &resolved).expect("the mapping fits")
    })
}

fuzz_target!(|data: &[u8]| {
    let pos = LinePos {
        file: FileIdentity { dev: 1, ino: 2, head_len: 3, head_hash: 4 },
        offset: 0,
        end: data.len() as u64 + 1,
    };
    let record = match parse_line(data) {
        Ok(r) => r,
        Err(reason) => {
            assert!(!reason.to_string().is_empty());
            return;
        }
    };
    let key = match record_key(&record, &pos, data) {
        Ok(k) => k,
        Err(reason) => {
            assert!(!reason.to_string().is_empty());
            return;
        }
    };
    match mapper().page_body(&record, &key) {
        Ok(body) => {
            for value in body["properties"].as_object().unwrap().values() {
                for items in [value.get("title"), value.get("rich_text")].into_iter().flatten() {
                    let items = items.as_array().unwrap();
                    assert!(items.len() <= 100);
                    for item in items {
                        let text = item["text"]["content"].as_str().unwrap();
                        assert!(text.encode_utf16().count() <= 2000);
                    }
                }
            }
        }
        Err(reason) => assert!(!reason.to_string().is_empty()),
    }
});
