//! The connect flow after the callback's `state` was checked: the code exchanged, the workspace
//! connected as a tenant (`crate::tenants::connect`, within the caps), its database discovered;
//! and the choice form's answer. Only the one tenant's record is read: nothing here grows with
//! the number of tenants.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};

use super::{App, S, message, pages, render};
use crate::config::Target;
use crate::config::connected::load_record;
use crate::discover::{Candidate, Choice, none_fits_message};
use crate::notion::oauth::new_state;
use crate::tenants::ConnectError;
use crate::tenants::lifecycle::Caps;

fn failed(why: &str) -> Response {
    tracing::warn!(
        "a workspace could not connect: {}",
        crate::text::message(why)
    );
    message(
        StatusCode::BAD_GATEWAY,
        "Nothing was connected",
        "Notion did not complete the connection. Start again; if it fails again, tell the operator of this service.",
        None,
    )
}

fn not_taking(why: &str) -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Not taking new workspaces right now",
        why,
        None,
    )
}

/// Exchanges the code, connects the workspace and discovers its database.
pub(super) async fn connect_with(app: &App, client: IpAddr, code: SecretString) -> Response {
    let Some(settings) = app.config.connect.clone() else {
        return failed("[connect] is gone");
    };
    let redirect = app.page.redirect_uri();
    let response = match app
        .client
        .exchange_code(code.expose_secret(), &redirect)
        .await
    {
        Ok(r) => r,
        Err(e) => return failed(&e.to_string()),
    };
    let workspace = response
        .workspace_name
        .clone()
        .unwrap_or_else(|| crate::text::label(&response.workspace_id));
    // Counted before the connect, so that concurrent callbacks cannot pass the limit; given
    // back if the connect made nothing new.
    let reservation = app.new_connections.reserve(client);
    let caps = Caps {
        max_targets: Some(settings.caps.max_targets),
        refuse_new: reservation.is_none(),
    };
    let state_dir = app.config.daemon.state_dir.clone();
    let response = std::sync::Arc::new(response);
    let r = response.clone();
    // The reservation is kept or given back by the task that connects, so that a request
    // dropped meanwhile (its client gone) cannot make a workspace that is not counted.
    let done = tokio::task::spawn_blocking(move || {
        let done = crate::tenants::connect(
            &state_dir,
            &settings.inbox_dir,
            &r,
            &settings.template,
            caps,
        );
        if let (Ok(connected), Some(reservation)) = (&done, reservation)
            && !connected.reconnected
        {
            reservation.keep();
        }
        done
    })
    .await;
    let connected = match done {
        Ok(Ok(connected)) => connected,
        Ok(Err(refused @ (ConnectError::Full { .. } | ConnectError::NewRefused))) => {
            tracing::warn!(client = %client, "a new workspace was refused: {refused}");
            publish_usage(app);
            // Nothing was created: the token Notion gave must not stay live either.
            if let Err(e) = app.client.revoke(&response.access_token).await {
                tracing::warn!("the refused workspace's token was not revoked: {e}");
            }
            return not_taking(match refused {
                ConnectError::Full { .. } => {
                    "This service has as many workspaces as it can take. Nothing was connected; ask its operator."
                }
                _ => {
                    "Many workspaces were connected from your network in the last hour. Nothing was connected; try again in an hour."
                }
            });
        }
        Ok(Err(e)) => return failed(&e.to_string()),
        Err(e) => return failed(&e.to_string()),
    };
    if !connected.reconnected {
        publish_usage(app);
    }
    let target = match load_record(&app.config, &connected.record) {
        Ok(Some(t)) => t,
        Ok(None) => return failed("the new target's record says it is disconnected"),
        Err(e) => return failed(&e.to_string()),
    };
    discover(app, &target, &workspace, connected.reconnected, None).await
}

/// Publishes the busiest client's count, for `status` and `check` (off the runtime).
fn publish_usage(app: &App) {
    let usage = crate::tenants::usage::PageUsage {
        busiest_client_last_hour: app.new_connections.busiest().map_or(0, |(_, n)| n),
        updated: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let dir = app.config.daemon.state_dir.clone();
    tokio::task::spawn_blocking(move || crate::tenants::usage::publish(&dir, &usage));
}

/// Discovers (or, from the form, sets) the target's database and says what happened.
async fn discover(
    app: &App,
    target: &Target,
    workspace: &str,
    reconnected: bool,
    wanted: Option<&str>,
) -> Response {
    let name = target.name.as_str();
    let failed = |why: String| {
        tracing::warn!(target_name = %name, "discovery after connecting failed: {}", crate::text::message(&why));
        message(
            StatusCode::OK,
            "Connected; the database is not chosen yet",
            "Your workspace is connected, but its databases could not be listed just now. Records wait in your inbox, and the service looks again by itself.",
            Some(name.to_owned()),
        )
    };
    let token = match crate::notion::TokenHandle::load(target, &app.config) {
        Ok(t) => t,
        Err(e) => return failed(e.to_string()),
    };
    let choice = match app.client.discover_choice(target, &token, wanted).await {
        Ok(c) => c,
        Err(e) => return failed(e.to_string()),
    };
    match choice {
        Choice::One(c) => {
            if let Err(e) = token.save_destination(c.chosen()).await {
                return failed(e.to_string());
            }
            let (dir, n, chosen) = (
                app.config.daemon.state_dir.clone(),
                name.to_owned(),
                c.chosen(),
            );
            let noted = tokio::task::spawn_blocking(move || {
                crate::tenants::record_choice(&dir, &n, &chosen).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            if let Err(e) = noted {
                return failed(e);
            }
            chosen_page(app, target, workspace, reconnected, &c)
        }
        Choice::Several(fits) => choice_form(app, name, workspace, &fits),
        Choice::NoneFits(seen) => message(
            StatusCode::OK,
            "Connected; share a database",
            &none_fits_message(target, &seen),
            Some(name.to_owned()),
        ),
    }
}

fn chosen_page(
    app: &App,
    target: &Target,
    workspace: &str,
    reconnected: bool,
    c: &Candidate,
) -> Response {
    let label = c.label();
    let event = crate::state::events::Event {
        event: "database_chosen",
        target: &target.name,
        workspace_id: None,
        workspace_name: Some(workspace),
        inbox: Some(&target.inbox),
        detail: Some(&label),
    };
    crate::state::events::note(&app.config.daemon.state_dir, &event);
    let page = pages::Connected {
        heading: if reconnected {
            "Connected again"
        } else {
            "Connected"
        }
        .into(),
        workspace: workspace.to_owned(),
        database: label.clone(),
        connection: target.name.clone(),
        next: format!(
            "Records sent to your inbox now become rows of {label}, within a few seconds, at Notion's pace.{}",
            if reconnected {
                " Records that waited while you were away are delivered first."
            } else {
                ""
            }
        ),
    };
    render(StatusCode::OK, page)
}

fn choice_form(app: &App, name: &str, workspace: &str, fits: &[Candidate]) -> Response {
    let token = new_state();
    app.choices.issue(token.clone(), name.to_owned());
    let page = pages::Choose {
        workspace: workspace.to_owned(),
        token,
        choices: fits
            .iter()
            .map(|c| {
                let id = c
                    .data_source_id
                    .clone()
                    .unwrap_or_else(|| c.database_id.clone());
                (id, c.label())
            })
            .collect(),
        connection: name.to_owned(),
    };
    render(StatusCode::OK, page)
}

#[derive(serde::Deserialize)]
pub(super) struct ChooseForm {
    token: String,
    database: String,
}

/// The choice form's answer.
pub(super) async fn choose(
    State(app): S,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<ChooseForm>,
) -> Response {
    if app.admit(peer, &headers).is_none() {
        return super::too_many();
    }
    let Some(name) = app.choices.spend(&form.token) else {
        return message(
            StatusCode::BAD_REQUEST,
            "This form has expired",
            "It was sent already or is older than ten minutes. Connect again to choose.",
            None,
        );
    };
    let state_dir = app.config.daemon.state_dir.clone();
    let n = name.clone();
    let record = tokio::task::spawn_blocking(move || crate::tenants::record(&state_dir, &n))
        .await
        .ok()
        .flatten();
    let target = record
        .as_ref()
        .and_then(|r| load_record(&app.config, &r.path).ok().flatten());
    let (Some(record), Some(target)) = (record, target) else {
        return message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The choice could not be saved. Connect again to choose.",
            Some(name),
        );
    };
    let workspace = record.connection.workspace_name.unwrap_or_default();
    discover(&app, &target, &workspace, false, Some(&form.database)).await
}
