//! The man pages, generated from the clap definitions and from `config/example.toml`, so that
//! they cannot drift from what the program accepts: notion-inbox(1) with EXIT STATUS,
//! ENVIRONMENT and FILES, one notion-inbox-<command>(1) per command (which notion-inbox(1)
//! refers to), and notion-inbox.toml(5).

use std::io::Write;

use clap_mangen::Man;

/// The example configuration, the source of notion-inbox.toml(5).
const EXAMPLE: &str = include_str!("../../config/example.toml");

/// Every page: (file name, roff).
pub fn pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let cmd = super::complete::visible_command();
    let mut pages = vec![("notion-inbox.1".to_owned(), main_page(&cmd)?)];
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("notion-inbox-{}", sub.get_name());
        let page = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("notion-inbox {}", sub.get_name()));
        let mut out = Vec::new();
        Man::new(page).render(&mut out)?;
        out.extend_from_slice(
            b".SH \"SEE ALSO\"\n\\fBnotion-inbox\\fR(1) for the options every command takes, the exit statuses and the files\n",
        );
        pages.push((format!("{name}.1"), out));
    }
    pages.push(("notion-inbox.toml.5".to_owned(), config_page().into_bytes()));
    Ok(pages)
}

/// notion-inbox(1).
fn main_page(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let man = Man::new(cmd.clone().disable_help_subcommand(true));
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    out.write_all(SECTIONS.as_bytes())?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// EXIT STATUS, ENVIRONMENT, FILES and SEE ALSO of notion-inbox(1) (the codes are
/// [`super::exit`]'s).
const SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success. For \fBstatus\fR: the daemon runs and every target is healthy (delivering, idle or starting).
.TP
\fB1\fR
Failure; the message says what and how to fix it. For \fBcheck\fR: a problem was found. For \fBstatus\fR: the daemon runs, but a target needs attention.
.TP
\fB2\fR
The command line is wrong: an unknown option, or a target the configuration does not have.
.TP
\fB3\fR
\fBstatus\fR: the daemon is not running (as \fBsystemctl status\fR says).
.TP
\fB78\fR
The configuration is unusable (EX_CONFIG). The unit does not restart on it (\fBRestartPreventExitStatus=78\fR).
.PP
With \fB\-\-json\fR, a failure also prints one JSON object on standard output: {"error": {"kind", "message", "exit_code"}}.
.SH ENVIRONMENT
.TP
\fBNOTION_INBOX_CONFIG\fR
The configuration file, when \fB\-\-config\fR is not given.
.TP
\fBRUST_LOG\fR
Which log lines are written (a tracing filter such as \fBnotion_inbox=debug,info\fR); overrides \fBlog_level\fR.
.TP
\fBJOURNAL_STREAM\fR
Set by systemd. When it names standard error, log lines carry their syslog priority (\fB<3>\fR error to \fB<7>\fR debug) and no timestamps.
.TP
\fBNO_COLOR\fR
No colours, even on a terminal.
.TP
\fBSTATE_DIRECTORY\fR
Set by systemd (\fBStateDirectory=\fR): the state directory when the configuration names none.
.TP
\fBCREDENTIALS_DIRECTORY\fR
Set by systemd (\fBLoadCredential=\fR): its \fBclient_secret\fR is the OAuth client secret, before the configured one.
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR
Set by systemd: readiness, status and watchdog notifications.
.SH FILES
.TP
\fI/etc/notion\-inbox/config.toml\fR
The configuration; see \fBnotion\-inbox.toml\fR(5).
.TP
\fI/var/lib/notion\-inbox/\fR
The state directory (mode 700): \fBcheckpoints/\fR, \fBtokens/\fR (mode 600), \fBdead\-letter/\fR, \fBtargets/\fR (connected workspaces), \fBresolved/\fR, \fBstatus.json\fR, \fBevents.jsonl\fR.
.TP
\fI/usr/share/doc/notion\-inbox/example.toml\fR
An example configuration with every key.
.SH "SEE ALSO"
\fBnotion\-inbox\-run\fR(1), \fBnotion\-inbox\-check\fR(1), \fBnotion\-inbox\-status\fR(1), \fBnotion\-inbox\-push\fR(1), \fBnotion\-inbox.toml\fR(5), \fBsystemctl\fR(1), \fBjournalctl\fR(1)
"#;

/// notion-inbox.toml(5): the example configuration, each key with its comment, then the whole
/// example as it is.
fn config_page() -> String {
    let mut page = String::from(
        ".TH notion-inbox.toml 5 \"\" \"notion-inbox\" \"File Formats\"\n\
         .SH NAME\nnotion-inbox.toml \\- configuration of notion-inbox\n\
         .SH DESCRIPTION\nTOML. Relative paths are relative to the file's directory. A key left out takes the value shown commented out. \
         An unknown key, a value of the wrong type or an unusable value is reported with its line and column, and \\fBnotion\\-inbox\\fR exits 78.\n",
    );
    for line in EXAMPLE.lines() {
        let line = line.trim();
        if let Some(table) = line
            .strip_prefix('[')
            .or_else(|| line.strip_prefix("# ["))
            .filter(|_| line.ends_with(']'))
        {
            let table = table.trim_start_matches('[');
            page.push_str(&format!(".SH \"[{}\"\n", roff(table)));
        } else if let Some((key, rest)) = key_line(line) {
            let (value, comment) = match rest.split_once(" # ") {
                Some((v, c)) => (v.trim(), c.trim()),
                None => (rest.trim(), ""),
            };
            page.push_str(&format!(".TP\n\\fB{}\\fR = {}\n", roff(key), roff(value)));
            if !comment.is_empty() {
                page.push_str(&format!("{}\n", roff(comment)));
            }
        } else if let Some(text) = line.strip_prefix('#') {
            let text = text.trim();
            if !text.is_empty() {
                page.push_str(&format!("{}\n", roff(text)));
            }
        }
    }
    page.push_str(".SH EXAMPLE\n.nf\n");
    for line in EXAMPLE.lines() {
        page.push_str(&roff(line));
        page.push('\n');
    }
    page.push_str(".fi\n.SH \"SEE ALSO\"\n\\fBnotion\\-inbox\\fR(1)\n");
    page
}

/// `key = value…` or `# key = value…` (a commented default): the key and the rest.
fn key_line(line: &str) -> Option<(&str, &str)> {
    let line = line.strip_prefix("# ").unwrap_or(line);
    let (key, rest) = line.split_once(" = ")?;
    let key = key.trim();
    key.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some((key, rest))
}

/// Text made safe for roff: backslashes and hyphens escaped, and a leading dot or quote
/// protected.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
