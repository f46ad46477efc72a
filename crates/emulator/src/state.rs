//! The emulated workspace: databases, data sources and their schemas, pages, tokens and grants,
//! OAuth codes. Everything a request touches lives here, behind one mutex.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::StoredPage;

/// A property of a data source's schema.
#[derive(Debug, Clone)]
pub(crate) struct PropDef {
    /// Name (unique within the schema).
    pub name: String,
    /// Id (stable, short, URL-encoded like Notion's).
    pub id: String,
    /// Type.
    pub ty: &'static str,
    /// Select and multi_select options: (id, name, color).
    pub options: Vec<(String, String, String)>,
}

/// A workspace an authorization can be for: its bot user and the person who consents there.
#[derive(Debug, Clone)]
pub(crate) struct Space {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The integration's bot user in this workspace.
    pub bot_id: String,
    /// The person who consents: (user id, name, email).
    pub owner: (String, String, String),
}

/// A database: a container of data sources.
#[derive(Debug, Clone)]
pub(crate) struct Db {
    /// Id (dashed).
    pub id: String,
    /// Title.
    pub title: String,
    /// Its data sources' ids.
    pub data_sources: Vec<String>,
    /// Unshared through the inspection API: invisible to every token.
    pub unshared: bool,
    /// Moved to the trash through the inspection API: still readable, no longer writable.
    pub in_trash: bool,
    /// Created and last edited, RFC 3339 (search orders by the latter).
    pub times: Times,
    /// Its workspace (an index into `Workspace::spaces`).
    pub space: usize,
    /// The page it is in (a duplicated template), or None: the workspace's top level.
    pub parent_page: Option<String>,
}

/// An object's `created_time` and `last_edited_time`, RFC 3339 with milliseconds and `Z`, so that
/// comparing the strings compares the times.
#[derive(Debug, Clone)]
pub(crate) struct Times {
    /// `created_time`.
    pub created: String,
    /// `last_edited_time`.
    pub edited: String,
}

impl Times {
    /// Created and last edited at `t`.
    pub(crate) fn at(t: &str) -> Times {
        Times {
            created: t.to_owned(),
            edited: t.to_owned(),
        }
    }
}

/// A page that is not a database row.
#[derive(Debug, Clone)]
pub(crate) struct PlainPage {
    /// Id (dashed).
    pub id: String,
    /// Title.
    pub title: String,
    /// Created and last edited.
    pub times: Times,
    /// Its workspace (an index into `Workspace::spaces`).
    pub space: usize,
}

/// A data source: a schema and rows.
#[derive(Debug, Clone)]
pub(crate) struct Ds {
    /// Id (dashed).
    pub id: String,
    /// Name.
    pub name: String,
    /// Its database.
    pub database_id: String,
    /// Schema, in display order.
    pub props: Vec<PropDef>,
    /// Created and last edited.
    pub times: Times,
}

/// How a token came to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// An internal integration token.
    Internal,
    /// Issued by the OAuth flow at this time.
    OAuth(Instant),
}

/// What a token may see and whether it still works.
#[derive(Debug, Clone)]
pub(crate) struct TokenInfo {
    /// Internal or OAuth.
    pub kind: TokenKind,
    /// Its workspace (an index into `Workspace::spaces`).
    pub space: usize,
    /// Databases granted.
    pub grants: BTreeSet<String>,
    /// Plain pages granted.
    pub page_grants: BTreeSet<String>,
    /// Revoked (401 from now on).
    pub revoked: bool,
    /// Expired by the inspection API (401, but its refresh token works).
    pub expired: bool,
    /// Unix seconds of issue (introspect's `iat`).
    pub iat: i64,
}

/// A refresh token.
#[derive(Debug, Clone)]
pub(crate) struct RefreshInfo {
    /// Its workspace.
    pub space: usize,
    /// Databases granted.
    pub grants: BTreeSet<String>,
    /// Plain pages granted (a duplicated template).
    pub page_grants: BTreeSet<String>,
    /// Used already (rotation: a second use is refused).
    pub used: bool,
}

/// An authorization code.
#[derive(Debug, Clone)]
pub(crate) struct CodeInfo {
    /// The redirect URI of the authorize request.
    pub redirect_uri: String,
    /// The workspace the user chose.
    pub space: usize,
    /// Databases the user picked (or the duplicated template's).
    pub grants: BTreeSet<String>,
    /// The duplicated template page, when the user chose the template.
    pub template: Option<String>,
    /// Used already.
    pub used: bool,
    /// When issued (codes live 10 minutes).
    pub issued: Instant,
}

/// A created row, with when queries may see it.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// What tests see.
    pub page: StoredPage,
    /// Queries see it from this instant on.
    pub visible_at: Instant,
    /// Created and last edited.
    pub times: Times,
    /// In the trash (`PATCH /v1/pages/{id}` with `in_trash` or `archived`).
    pub in_trash: bool,
    /// Locked (`is_locked`).
    pub is_locked: bool,
}

/// The workspace.
#[derive(Debug)]
pub(crate) struct Workspace {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The integration's bot user id.
    pub bot_id: String,
    /// The OAuth client.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// Registered redirect URIs (exact match).
    pub redirect_uris: Vec<String>,
    /// The workspaces: "Acme" (`id`, `name`, `bot_id` above) first, then "Globex".
    pub spaces: Vec<Space>,
    /// Whether the integration has a template the consent page offers to duplicate.
    pub template: bool,
    /// Databases.
    pub dbs: Vec<Db>,
    /// Data sources.
    pub dss: Vec<Ds>,
    /// Pages that are not rows.
    pub plain_pages: Vec<PlainPage>,
    /// Rows, in creation order.
    pub rows: Vec<Row>,
    /// Access tokens.
    pub tokens: HashMap<String, TokenInfo>,
    /// Refresh tokens.
    pub refresh: HashMap<String, RefreshInfo>,
    /// Authorization codes.
    pub codes: HashMap<String, CodeInfo>,
    /// Ids handed out so far (ids are derived from the seed and this counter).
    pub counter: u64,
    /// The seed of ids and secrets.
    pub seed: u64,
}

/// A deterministic, UUID-shaped id from a seed and a counter.
pub(crate) fn make_id(seed: u64, n: u64) -> String {
    let a = fnv1a64(format!("{seed}/{n}/a").as_bytes());
    let b = fnv1a64(format!("{seed}/{n}/b").as_bytes());
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// Now, as Notion formats times (millisecond precision, `Z`).
pub(crate) fn now_rfc3339() -> String {
    let now: DateTime<Utc> = SystemTime::now().into();
    now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn prop(name: &str, id: &str, ty: &'static str) -> PropDef {
    PropDef {
        name: name.into(),
        id: id.into(),
        ty,
        options: Vec::new(),
    }
}

fn options(names: &[(&str, &str)]) -> Vec<(String, String, String)> {
    names
        .iter()
        .enumerate()
        .map(|(i, (n, c))| (format!("opt{i}"), n.to_string(), c.to_string()))
        .collect()
}

impl Workspace {
    /// The seeded workspace "Acme".
    pub(crate) fn seeded(seed: u64, redirect_uris: Vec<String>) -> Workspace {
        let mut ws = Workspace {
            id: make_id(seed, 1),
            name: "Acme".into(),
            bot_id: make_id(seed, 2),
            client_id: make_id(seed, 3),
            client_secret: format!("secret_{}", make_id(seed, 4).replace('-', "")),
            redirect_uris,
            spaces: Vec::new(),
            template: false,
            dbs: Vec::new(),
            dss: Vec::new(),
            plain_pages: Vec::new(),
            rows: Vec::new(),
            tokens: HashMap::new(),
            refresh: HashMap::new(),
            codes: HashMap::new(),
            counter: 100,
            seed,
        };
        // The seeded objects were edited at different times, and in another order than they were
        // created, so that search's default order (last edited first) is not creation order.
        let at = |hour: u32| Times::at(&format!("2026-01-05T{hour:02}:00:00.000Z"));
        let twitter = make_id(seed, 10);
        let twitter_ds = make_id(seed, 11);
        let mut kind = prop("Kind", "%3CkNd", "select");
        kind.options = options(&[("reply", "blue"), ("quote", "green"), ("post", "default")]);
        let mut tags = prop("Tags", "tG%7Cs", "multi_select");
        tags.options = options(&[("rust", "orange"), ("notion", "gray")]);
        ws.dbs.push(Db {
            id: twitter.clone(),
            title: "Twitter".into(),
            data_sources: vec![twitter_ds.clone()],
            unshared: false,
            in_trash: false,
            times: at(9),
            space: 0,
            parent_page: None,
        });
        ws.dss.push(Ds {
            id: twitter_ds,
            name: "Twitter".into(),
            database_id: twitter,
            props: vec![
                prop("handle", "title", "title"),
                prop("tweet", "tw%3Dt", "rich_text"),
                prop("Inbox ID", "iN%40d", "rich_text"),
                prop("Link", "l%3Bnk", "url"),
                prop("When", "wH%5Dn", "date"),
                prop("Score", "sC%3Fr", "number"),
                kind,
                tags,
                prop("Done", "d%25ne", "checkbox"),
                prop("Email", "eM%60l", "email"),
                prop("Phone", "pH%7Bn", "phone_number"),
            ],
            times: at(9),
        });
        let projects = make_id(seed, 12);
        let (tasks, bugs) = (make_id(seed, 13), make_id(seed, 14));
        ws.dbs.push(Db {
            id: projects.clone(),
            title: "Projects".into(),
            data_sources: vec![tasks.clone(), bugs.clone()],
            unshared: false,
            in_trash: false,
            times: at(10),
            space: 0,
            parent_page: None,
        });
        for (id, name, hour) in [(tasks, "Tasks", 10), (bugs, "Bugs", 11)] {
            ws.dss.push(Ds {
                id,
                name: name.into(),
                database_id: projects.clone(),
                props: vec![
                    prop("Name", "title", "title"),
                    prop("Notes", "n%3Ats", "rich_text"),
                ],
                times: at(hour),
            });
        }
        let hidden = make_id(seed, 15);
        let hidden_ds = make_id(seed, 16);
        ws.dbs.push(Db {
            id: hidden.clone(),
            title: "Hidden".into(),
            data_sources: vec![hidden_ds.clone()],
            unshared: false,
            in_trash: false,
            times: at(12),
            space: 0,
            parent_page: None,
        });
        ws.dss.push(Ds {
            id: hidden_ds,
            name: "Hidden".into(),
            database_id: hidden,
            props: vec![prop("Name", "title", "title")],
            times: at(12),
        });
        ws.plain_pages.push(PlainPage {
            id: make_id(seed, 17),
            title: "Inbox notes".into(),
            times: at(13),
            space: 0,
        });
        ws.spaces.push(Space {
            id: ws.id.clone(),
            name: ws.name.clone(),
            bot_id: ws.bot_id.clone(),
            owner: (
                make_id(seed, 5),
                "Ada Lovelace".into(),
                "ada@example.com".into(),
            ),
        });
        ws.seed_globex();
        ws
    }

    /// A second workspace, "Globex", owned by Grace Hopper, with two databases that fit the
    /// `handle`/`tweet` mapping: "Tweets" and "Tweets archive".
    fn seed_globex(&mut self) {
        let seed = self.seed;
        self.spaces.push(Space {
            id: make_id(seed, 20),
            name: "Globex".into(),
            bot_id: make_id(seed, 21),
            owner: (
                make_id(seed, 22),
                "Grace Hopper".into(),
                "grace@example.com".into(),
            ),
        });
        let (db, ds) = (make_id(seed, 23), make_id(seed, 24));
        self.add_tweets_database(1, db, ds, "Tweets", None);
        let (db, ds) = (make_id(seed, 25), make_id(seed, 26));
        self.add_tweets_database(1, db, ds, "Tweets archive", None);
    }

    /// Adds a database `title` with one data source of the tweets schema (handle, tweet,
    /// Inbox ID) to workspace `space`, in `parent_page` if given.
    pub(crate) fn add_tweets_database(
        &mut self,
        space: usize,
        db: String,
        ds: String,
        title: &str,
        parent_page: Option<String>,
    ) {
        let times = Times::at(&now_rfc3339());
        self.dbs.push(Db {
            id: db.clone(),
            title: title.into(),
            data_sources: vec![ds.clone()],
            unshared: false,
            in_trash: false,
            times: times.clone(),
            space,
            parent_page,
        });
        self.dss.push(Ds {
            id: ds,
            name: title.into(),
            database_id: db,
            props: vec![
                prop("handle", "title", "title"),
                prop("tweet", "tw%3Dt", "rich_text"),
                prop("Inbox ID", "iN%40d", "rich_text"),
            ],
            times,
        });
    }

    /// The workspace of a token.
    pub(crate) fn space(&self, token: &TokenInfo) -> &Space {
        &self.spaces[token.space.min(self.spaces.len() - 1)]
    }

    /// A fresh id.
    pub(crate) fn next_id(&mut self) -> String {
        self.counter += 1;
        make_id(self.seed, self.counter)
    }

    /// A fresh secret-looking string with `prefix`.
    pub(crate) fn next_secret(&mut self, prefix: &str) -> String {
        let a = self.next_id().replace('-', "");
        let b = self.next_id().replace('-', "");
        format!("{prefix}{a}{}", &b[..11])
    }

    /// The grants of the internal token: everything of "Acme" but "Hidden".
    pub(crate) fn default_grants(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        (
            self.dbs
                .iter()
                .filter(|d| d.title != "Hidden" && d.space == 0)
                .map(|d| d.id.clone())
                .collect(),
            self.plain_pages
                .iter()
                .filter(|p| p.space == 0)
                .map(|p| p.id.clone())
                .collect(),
        )
    }

    /// Mints an internal token.
    pub(crate) fn mint_internal(&mut self) -> String {
        let token = self.next_secret("ntn_");
        let (grants, page_grants) = self.default_grants();
        self.tokens.insert(
            token.clone(),
            TokenInfo {
                kind: TokenKind::Internal,
                space: 0,
                grants,
                page_grants,
                revoked: false,
                expired: false,
                iat: Utc::now().timestamp(),
            },
        );
        token
    }

    /// A database by id (dashed or not), if `token` may see it.
    pub(crate) fn db(&self, token: &TokenInfo, id: &str) -> Option<&Db> {
        let id = normalize(id)?;
        self.dbs
            .iter()
            .find(|d| d.id == id && !d.unshared && token.grants.contains(&d.id))
    }

    /// A data source by id, if `token` may see it.
    pub(crate) fn ds(&self, token: &TokenInfo, id: &str) -> Option<&Ds> {
        let id = normalize(id)?;
        let ds = self.dss.iter().find(|d| d.id == id)?;
        self.db(token, &ds.database_id)?;
        Some(ds)
    }

    /// Rows of a data source that queries may see now: those in the trash when `in_trash`, the
    /// others otherwise.
    pub(crate) fn visible_rows(&self, ds_id: &str, in_trash: bool) -> impl Iterator<Item = &Row> {
        let now = Instant::now();
        let ds_id = ds_id.to_owned();
        self.rows.iter().filter(move |r| {
            r.page.data_source_id == ds_id && r.visible_at <= now && r.in_trash == in_trash
        })
    }

    /// A row by page id (dashed or not), if `token` may see its data source.
    pub(crate) fn row_index(&self, token: &TokenInfo, id: &str) -> Option<usize> {
        let id = normalize(id)?;
        let i = self.rows.iter().position(|r| r.page.id == id)?;
        self.ds(token, &self.rows[i].page.data_source_id)?;
        Some(i)
    }

    /// Codes older than 10 minutes are forgotten.
    pub(crate) fn expire_codes(&mut self) {
        self.codes
            .retain(|_, c| c.issued.elapsed() < Duration::from_secs(600));
    }
}

/// An id as Notion takes it in a path or a body (a UUID: 32 hex digits, dashed 8-4-4-4-12 or not
/// dashed at all; either case), in the dashed lowercase form Notion answers with; `None` if it is
/// not an id.
pub(crate) fn normalize(id: &str) -> Option<String> {
    let dashed = id.len() == 36
        && id
            .char_indices()
            .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'));
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if !(dashed || id.len() == 32) || hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit())
    {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// FNV-1a, 64-bit: the emulator's ids are derived from its seed with it, so that a seed always
/// gives the same workspace.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A rich-text array of one plain text item, as Notion returns it.
pub(crate) fn rich_text(text: &str) -> Value {
    if text.is_empty() {
        return json!([]);
    }
    json!([text_item(text, None)])
}

/// One rich-text item, as Notion returns it.
pub(crate) fn text_item(content: &str, link: Option<&Value>) -> Value {
    json!({
        "type": "text",
        "text": {"content": content, "link": link.cloned().unwrap_or(Value::Null)},
        "annotations": {"bold": false, "italic": false, "strikethrough": false,
            "underline": false, "code": false, "color": "default"},
        "plain_text": content,
        "href": link.and_then(|l| l.get("url")).cloned().unwrap_or(Value::Null),
    })
}
