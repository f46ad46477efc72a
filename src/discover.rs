//! Discovery: which of the databases a user shared receives a target's rows, for a target
//! configured without `database_id` or `data_source_id`.
//!
//! After consent, everything shared with the integration is searched (all pages of results), each
//! data source's schema is checked against the target's mapping, and [`choose`] picks: the one
//! that fits; among several, the one named by `--database` or by the target's `database_title`.
//! The choice is saved in the token file ([`Chosen`]), so that sharing another database later
//! does not change where rows go.
//!
//! It sits above `notion` and `record`: whether a mapping fits a schema is the record's rule,
//! applied to what the client found. [`NotionClient::resolve`] lives here for the same reason: a
//! target without a destination is resolved by discovery.

use serde_json::Value;

use crate::config::{Destination, Target, normalize_notion_id};
use crate::notion::schema::{Property, parse_properties, plain_text};
pub use crate::notion::token::Chosen;
use crate::notion::{NotionClient, NotionError, ResolveError, Resolved, TokenHandle};
use crate::record::Mapper;

/// One data source (or, under 2022-06-28, database) the token sees, and whether the target's
/// mapping fits it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The database.
    pub database_id: String,
    /// The database's title.
    pub database_title: String,
    /// The data source (none under 2022-06-28).
    pub data_source_id: Option<String>,
    /// The data source's name (the database's title under 2022-06-28).
    pub name: String,
    /// Its schema.
    pub properties: Vec<Property>,
    /// Why the mapping does not fit, if it does not.
    pub why_not: Option<String>,
    /// The page the database is in (known once [`NotionClient::fill_database_titles`] ran).
    pub parent_page: Option<String>,
}

impl Candidate {
    /// How people know it: `"Twitter"`, or `"Projects" / "Tasks"` for one of several data sources.
    pub fn label(&self) -> String {
        if self.name == self.database_title || self.name.is_empty() {
            format!("\"{}\"", self.database_title)
        } else {
            format!("\"{}\" / \"{}\"", self.database_title, self.name)
        }
    }

    /// What the token file keeps of it.
    pub fn chosen(&self) -> Chosen {
        Chosen {
            database_id: Some(self.database_id.clone()),
            data_source_id: self.data_source_id.clone(),
            title: self.label(),
        }
    }

    /// Whether `wanted` (an id with or without dashes, a URL, or a title) names it.
    fn is(&self, wanted: &str) -> bool {
        match normalize_notion_id(wanted) {
            Some(id) => Some(&id) == self.data_source_id.as_ref() || id == self.database_id,
            None => {
                let w = wanted.trim();
                self.database_title.eq_ignore_ascii_case(w) || self.name.eq_ignore_ascii_case(w)
            }
        }
    }

    /// The resolved destination, without another request.
    pub fn resolved(&self, version: crate::config::NotionVersion) -> Resolved {
        Resolved {
            version,
            database_id: Some(self.database_id.clone()),
            data_source_id: self.data_source_id.clone(),
            title: self.name.clone(),
            properties: self.properties.clone(),
        }
    }
}

/// What [`choose`] decided.
#[derive(Debug)]
pub enum Choice {
    /// This one.
    One(Candidate),
    /// Nothing fits: everything the token sees, each with why it does not fit.
    NoneFits(Vec<Candidate>),
    /// Several fit and nothing tells them apart.
    Several(Vec<Candidate>),
}

/// Picks the destination among `candidates`: those that fit the mapping, narrowed by `wanted`
/// (`--database`: an id, URL or title) if given, else to those in the `template` page the user
/// duplicated at consent, then by `database_title` when several fit.
pub fn choose(
    candidates: Vec<Candidate>,
    database_title: Option<&str>,
    wanted: Option<&str>,
    template: Option<&str>,
) -> Choice {
    let (mut fits, misfits): (Vec<Candidate>, Vec<Candidate>) =
        candidates.into_iter().partition(|c| c.why_not.is_none());
    if wanted.is_none()
        && let Some(page) = template
        && fits.iter().any(|c| c.parent_page.as_deref() == Some(page))
    {
        fits.retain(|c| c.parent_page.as_deref() == Some(page));
    }
    if let Some(w) = wanted {
        fits.retain(|c| c.is(w));
        if fits.is_empty() {
            // What was asked for, if it is there but does not fit, says why.
            let named: Vec<Candidate> = misfits.into_iter().filter(|c| c.is(w)).collect();
            return Choice::NoneFits(named);
        }
    } else if fits.len() > 1
        && let Some(t) = database_title
    {
        let titled: Vec<Candidate> = fits.iter().filter(|c| c.is(t)).cloned().collect();
        if !titled.is_empty() {
            fits = titled;
        }
    }
    match fits.len() {
        0 => Choice::NoneFits(misfits),
        1 => Choice::One(fits.remove(0)),
        _ => Choice::Several(fits),
    }
}

/// What to tell a person when nothing fits `target`'s mapping.
pub fn none_fits_message(target: &Target, seen: &[Candidate]) -> String {
    let wanted: Vec<String> = target
        .properties
        .iter()
        .map(|(field, prop)| {
            if prop == "title" {
                format!("a title column (for {field})")
            } else {
                format!("a column named {prop:?} (for {field})")
            }
        })
        .collect();
    let seen = if seen.is_empty() {
        "the integration sees no database".to_owned()
    } else {
        seen.iter()
            .map(|c| {
                format!(
                    "{} does not fit: {}",
                    c.label(),
                    c.why_not.as_deref().unwrap_or("it was not asked for")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    format!(
        "no shared database fits target {}: {seen}. Share a database with {} with the integration (in Notion: the database's ••• menu, Connections), or set database_id for the target",
        target.name,
        wanted.join(" and ")
    )
}

/// What to tell a person when several fit.
pub fn several_message(target: &Target, fits: &[Candidate]) -> String {
    let list: Vec<String> = fits
        .iter()
        .map(|c| match &c.data_source_id {
            Some(ds) => format!(
                "{} (database {}, data source {ds})",
                c.label(),
                c.database_id
            ),
            None => format!("{} (database {})", c.label(), c.database_id),
        })
        .collect();
    format!(
        "{} shared databases fit target {}: {}; choose one with `notion-inbox authorize --target {} --database <id or title>`, or set database_title (or database_id) for the target",
        fits.len(),
        target.name,
        list.join(", "),
        target.name
    )
}

impl NotionClient {
    /// Resolves the target's destination to where rows go and its schema: the configured or
    /// saved one, else the one shared database that fits its mapping (or its `database_title`).
    pub async fn resolve(
        &self,
        target: &Target,
        token: &TokenHandle,
    ) -> Result<Resolved, ResolveError> {
        if let Some(destination) = Self::destination(target, token)
            && destination != Destination::Discover
        {
            return self.resolve_destination(target, token, &destination).await;
        }
        match self.discover_choice(target, token, None).await? {
            Choice::One(c) => Ok(c.resolved(self.version())),
            Choice::NoneFits(seen) => Err(ResolveError::Unusable(none_fits_message(target, &seen))),
            Choice::Several(fits) => Err(ResolveError::Unusable(several_message(target, &fits))),
        }
    }

    /// Every data source (database, under 2022-06-28) the token sees, with whether `target`'s
    /// mapping fits it: one search, all pages of it. A data source's database title is its own
    /// name until [`NotionClient::fill_database_titles`] asks (a request per database, spent
    /// only where titles matter: a listing, a tie, a choice by name).
    pub async fn candidates(
        &self,
        target: &Target,
        token: &TokenHandle,
    ) -> Result<Vec<Candidate>, NotionError> {
        let version = self.version();
        let mut out: Vec<Candidate> = Vec::new();
        if !version.has_data_sources() {
            for db in self.search_all(token, "database").await? {
                let id = str_at(&db, &["id"]);
                let title = plain_text(db.get("title"));
                out.push(candidate(
                    target,
                    version,
                    &db,
                    id,
                    title.clone(),
                    None,
                    title,
                ));
            }
            return Ok(out);
        }
        for ds in self.search_all(token, "data_source").await? {
            let ds = if ds.get("properties").is_some() {
                ds
            } else {
                self.retrieve_data_source(token, &str_at(&ds, &["id"]))
                    .await?
            };
            let database_id = str_at(&ds, &["parent", "database_id"]);
            let name = plain_text(ds.get("title"));
            let ds_id = Some(str_at(&ds, &["id"]));
            out.push(candidate(
                target,
                version,
                &ds,
                database_id,
                name.clone(),
                ds_id,
                name,
            ));
        }
        Ok(out)
    }

    /// Replaces each candidate's database title (its data source's name, from
    /// [`NotionClient::candidates`]) with the database's own: one request per database.
    pub async fn fill_database_titles(
        &self,
        token: &TokenHandle,
        candidates: &mut [Candidate],
    ) -> Result<(), NotionError> {
        if !self.version().has_data_sources() {
            return Ok(());
        }
        let mut known: Vec<(String, String, Option<String>)> = Vec::new();
        for c in candidates.iter_mut() {
            let (title, parent) = match known.iter().find(|(id, _, _)| *id == c.database_id) {
                Some((_, t, p)) => (t.clone(), p.clone()),
                None => {
                    let db = self.retrieve_database(token, &c.database_id).await?;
                    let t = plain_text(db.get("title"));
                    let p = db
                        .get("parent")
                        .and_then(|p| p.get("page_id"))
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    known.push((c.database_id.clone(), t.clone(), p.clone()));
                    (t, p)
                }
            };
            c.database_title = title;
            c.parent_page = parent;
        }
        Ok(())
    }

    /// Discovers `target`'s destination: [`choose`] over what the token sees, preferring the
    /// database inside the template the user duplicated at consent (the token response's
    /// `duplicated_template_id`). The databases' titles and parents are fetched unless exactly
    /// one data source fits and nothing was asked for by name (the common case costs one search).
    pub async fn discover_choice(
        &self,
        target: &Target,
        token: &TokenHandle,
        wanted: Option<&str>,
    ) -> Result<Choice, NotionError> {
        let template = token.file().and_then(|f| f.duplicated_template_id());
        let mut candidates = self.candidates(target, token).await?;
        let fitting = candidates.iter().filter(|c| c.why_not.is_none()).count();
        if fitting != 1 || wanted.is_some() || template.is_some() {
            self.fill_database_titles(token, &mut candidates).await?;
        }
        let title = target.database_title.as_deref();
        Ok(choose(candidates, title, wanted, template.as_deref()))
    }
}

fn str_at(v: &Value, path: &[&str]) -> String {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn candidate(
    target: &Target,
    version: crate::config::NotionVersion,
    object: &Value,
    database_id: String,
    database_title: String,
    data_source_id: Option<String>,
    name: String,
) -> Candidate {
    let (properties, unreadable) = match parse_properties(object) {
        Ok(p) => (p, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let mut c = Candidate {
        database_id,
        database_title,
        data_source_id,
        name,
        properties,
        why_not: None,
        parent_page: None,
    };
    c.why_not = unreadable.or_else(|| {
        Mapper::new(target, &c.resolved(version))
            .err()
            .map(|e| e.to_string())
    });
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(db: &str, title: &str, ds: &str, name: &str, fits: bool) -> Candidate {
        Candidate {
            database_id: db.into(),
            database_title: title.into(),
            data_source_id: Some(ds.into()),
            name: name.into(),
            properties: Vec::new(),
            why_not: (!fits).then(|| "no column named \"tweet\"".into()),
            parent_page: None,
        }
    }

    const A: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
    const B: &str = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
    const C: &str = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";

    fn names(choice: &Choice) -> (&'static str, Vec<String>) {
        match choice {
            Choice::One(c) => ("one", vec![c.name.clone()]),
            Choice::NoneFits(v) => ("none", v.iter().map(|c| c.name.clone()).collect()),
            Choice::Several(v) => ("several", v.iter().map(|c| c.name.clone()).collect()),
        }
    }

    #[test]
    fn one_fit_is_chosen_whatever_else_is_shared() {
        let all = vec![
            c(A, "Twitter", B, "Twitter", true),
            c(C, "Notes", C, "Notes", false),
        ];
        assert_eq!(
            names(&choose(all, None, None, None)),
            ("one", vec!["Twitter".into()])
        );
    }

    #[test]
    fn the_database_in_the_duplicated_template_wins() {
        let mut in_template = c(B, "Tweets", C, "Tweets", true);
        in_template.parent_page = Some("page".into());
        let all = vec![c(A, "Twitter", A, "Twitter", true), in_template];
        let choice = choose(all.clone(), None, None, Some("page"));
        assert_eq!(names(&choice), ("one", vec!["Tweets".into()]));
        assert_eq!(names(&choose(all, None, None, None)).0, "several");
    }

    #[test]
    fn nothing_fitting_lists_what_was_seen() {
        let all = vec![c(C, "Notes", C, "Notes", false)];
        assert_eq!(
            names(&choose(all, None, None, None)),
            ("none", vec!["Notes".into()])
        );
        assert_eq!(
            names(&choose(Vec::new(), None, None, None)),
            ("none", vec![])
        );
    }

    #[test]
    fn several_fits_are_told_apart_by_title_or_by_what_was_asked_for() {
        let all = || {
            vec![
                c(A, "Projects", A, "Tasks", true),
                c(A, "Projects", B, "Bugs", true),
            ]
        };
        assert_eq!(names(&choose(all(), None, None, None)).0, "several");
        // A database title shared by both does not tell them apart; a data source name does.
        assert_eq!(
            names(&choose(all(), Some("Projects"), None, None)).0,
            "several"
        );
        assert_eq!(
            names(&choose(all(), Some("bugs"), None, None)),
            ("one", vec!["Bugs".into()])
        );
        // --database by data source id (dashes or not), or by name.
        assert_eq!(
            names(&choose(all(), None, Some(&B.replace('-', "")), None)),
            ("one", vec!["Bugs".into()])
        );
        assert_eq!(
            names(&choose(all(), None, Some("Tasks"), None)),
            ("one", vec!["Tasks".into()])
        );
        // --database naming something that does not fit, or nothing: none, with the reason.
        let mixed = vec![
            c(A, "Twitter", A, "Twitter", true),
            c(C, "Notes", C, "Notes", false),
        ];
        assert_eq!(
            names(&choose(mixed, None, Some("Notes"), None)),
            ("none", vec!["Notes".into()])
        );
        assert_eq!(
            names(&choose(all(), None, Some("Nothing"), None)),
            ("none", vec![])
        );
    }
}
