//! The connect page's HTML, rendered by askama from `templates/connect/` (escaped by default).
//! No page holds a token, a code or a secret: they carry names, labels and the connection id.

use askama::Template;

/// The landing page: what happens, and the "Add to Notion" button.
#[derive(Template)]
#[template(path = "connect/landing.html")]
pub struct Landing {
    /// The mapped columns people must share, besides the title.
    pub wanted: Vec<String>,
    /// Whether the integration's template may be duplicated instead.
    pub template: bool,
}

/// The workspace is connected and its database chosen.
#[derive(Template)]
#[template(path = "connect/result.html")]
pub struct Connected {
    /// "Connected" or "Connected again".
    pub heading: String,
    /// The workspace's name.
    pub workspace: String,
    /// The database's label.
    pub database: String,
    /// The target's name.
    pub connection: String,
    /// What happens next.
    pub next: String,
}

/// Several databases fit: the form to pick one.
#[derive(Template)]
#[template(path = "connect/choose.html")]
pub struct Choose {
    /// The workspace's name.
    pub workspace: String,
    /// The form's single-use token.
    pub token: String,
    /// (value, label) of each database that fits.
    pub choices: Vec<(String, String)>,
    /// The target's name.
    pub connection: String,
}

/// Anything else: a heading and a text (consent denied, nothing fits, a link used twice...).
#[derive(Template)]
#[template(path = "connect/message.html")]
pub struct Message {
    /// The heading.
    pub heading: String,
    /// The text.
    pub text: String,
    /// The target's name, when there is one.
    pub connection: Option<String>,
}

/// The stylesheet.
pub const STYLESHEET: &str = include_str!("../../static/connect.css");
