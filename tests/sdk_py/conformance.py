"""Drives the official Python SDK (notion-client, pinned in requirements.txt) against the
notion-inbox emulator: the OAuth token endpoint, search, databases, data sources, pages (create,
retrieve, update, trash, property items), queries with filters, sorts and pagination, and error
objects, including a 429 that the SDK's own retry waits out. Inputs come from the environment
(see tests/sdk_conformance.rs). Exits non-zero on the first unexpected result."""

import os
import sys
import time

import httpx
from notion_client import APIErrorCode, APIResponseError, Client
from notion_client.errors import HTTPResponseError
from notion_client.helpers import collect_paginated_api

URL = os.environ["EMU_URL"]
CLIENT_ID = os.environ["CLIENT_ID"]
CLIENT_SECRET = os.environ["CLIENT_SECRET"]
DATABASE_ID = os.environ["DATABASE_ID"]
DATA_SOURCE_ID = os.environ["DATA_SOURCE_ID"]
HIDDEN_DATABASE_ID = os.environ["HIDDEN_DATABASE_ID"]

checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(f"assertion failed: {what}")
    checks += 1


def expect_error(what, code, status, f):
    try:
        f()
    except APIResponseError as e:
        check(e.code == code, f"{what}: code {code}, got {e.code} ({e})")
        check(e.status == status, f"{what}: status {status}, got {e.status}")
        check(bool(e.request_id), f"{what}: a request id")
        return e
    raise AssertionError(f"{what}: expected the error {code}")


def plain(rich_text):
    return "".join(item["plain_text"] for item in rich_text)


def title_of(result):
    if result["object"] == "page":
        prop = next(p for p in result["properties"].values() if p["type"] == "title")
        return plain(prop["title"])
    return plain(result["title"])


def text(s):
    return {"rich_text": [{"type": "text", "text": {"content": s}}]}


def oauth():
    """Exchanges the code, refreshes once (rotation), and returns the newest access token."""
    anon = Client(base_url=URL, retry=False)
    token = anon.oauth.token(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        grant_type="authorization_code",
        code=os.environ["CODE"],
        redirect_uri=os.environ["REDIRECT_URI"],
    )
    check(token["token_type"] == "bearer", "token_type bearer")
    check(token["workspace_name"] == "Acme", "workspace name")
    check(token["owner"]["type"] == "user", "owned by the user who consented")
    check("duplicated_template_id" in token, "duplicated_template_id present")
    # `invalid_grant` is not among the SDK's API error codes: it raises the generic HTTP error,
    # with the body for the caller to read.
    try:
        anon.oauth.token(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            grant_type="authorization_code",
            code=os.environ["CODE"],
            redirect_uri=os.environ["REDIRECT_URI"],
        )
        raise AssertionError("the code spent twice: expected invalid_grant")
    except HTTPResponseError as e:
        check(e.status == 400 and "invalid_grant" in e.body, f"the code spent twice: {e.body}")
    fresh = anon.oauth.token(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        grant_type="refresh_token",
        refresh_token=token["refresh_token"],
    )
    check(fresh["access_token"] != token["access_token"], "a refresh issues a new access token")
    check(fresh["refresh_token"] != token["refresh_token"], "and a new refresh token")
    return anon, fresh["access_token"]


def search(notion):
    found = collect_paginated_api(
        notion.search, filter={"property": "object", "value": "data_source"}, page_size=1
    )
    names = [title_of(r) for r in found]
    check(names == ["Bugs", "Tasks", "Twitter"], f"last edited first, got {names}")
    oldest_first = notion.search(
        filter={"property": "object", "value": "data_source"},
        sort={"timestamp": "last_edited_time", "direction": "ascending"},
    )
    names = [title_of(r) for r in oldest_first["results"]]
    check(names == ["Twitter", "Tasks", "Bugs"], f"ascending, got {names}")
    by_database = notion.search(query="Projects")
    names = sorted(title_of(r) for r in by_database["results"])
    check(names == ["Bugs", "Tasks"], f"a database's title finds its data sources, got {names}")


def create_rows(notion):
    rows = [
        ("@ann", 3, "reply", ["rust"], True),
        ("@bob", 10, "quote", ["rust", "notion"], False),
        ("@cat", 7.5, "post", [], False),
    ]
    ids = []
    for handle, score, kind, tags, done in rows:
        page = notion.pages.create(
            parent={"type": "data_source_id", "data_source_id": DATA_SOURCE_ID},
            properties={
                "handle": {"title": [{"text": {"content": handle}}]},
                "tweet": {
                    "rich_text": [
                        {"text": {"content": "hi "}, "annotations": {"bold": True}},
                        {"mention": {"date": {"start": "2026-01-31"}}},
                        {"equation": {"expression": "x^2"}},
                    ]
                },
                "Inbox ID": text(f"py-{handle}"),
                "Score": {"number": score},
                "Kind": {"select": {"name": kind}},
                "Tags": {"multi_select": [{"name": t} for t in tags]},
                "Done": {"checkbox": done},
                "Link": {"url": "https://example.com/py"},
                "When": {"date": {"start": "2026-01-31T12:00:00Z"}},
                "Email": {"email": "py@example.com"},
                "Phone": {"phone_number": "+1 555 0100"},
            },
        )
        check(page["object"] == "page", "pages.create returns a page")
        tweet = page["properties"]["tweet"]["rich_text"]
        check(tweet[0]["annotations"]["bold"] is True, "annotations are kept")
        check([i["type"] for i in tweet] == ["text", "mention", "equation"], "item types kept")
        ids.append(page["id"])
    return ids


def pages(notion, ids):
    page = notion.pages.retrieve(page_id=ids[0])
    check(title_of(page) == "@ann", "pages.retrieve")
    updated = notion.pages.update(page_id=ids[0], properties={"Score": {"number": 4}})
    check(updated["properties"]["Score"]["number"] == 4, "pages.update changes Score")
    check(title_of(updated) == "@ann", "pages.update keeps the rest")
    item = notion.pages.properties.retrieve(page_id=ids[0], property_id="title")
    check(item["object"] == "list" and item["results"][0]["title"]["plain_text"] == "@ann",
          "the title as a list of property items")
    score_id = page["properties"]["Score"]["id"]
    item = notion.pages.properties.retrieve(page_id=ids[0], property_id=score_id)
    check(item == {"object": "property_item", "id": score_id, "type": "number", "number": 4},
          f"the number as one property item, got {item}")


def queries(notion, ids):
    found = notion.data_sources.query(
        data_source_id=DATA_SOURCE_ID,
        filter={"property": "Score", "number": {"greater_than": 5}},
        sorts=[{"property": "Score", "direction": "descending"}],
    )
    names = [title_of(r) for r in found["results"]]
    check(names == ["@bob", "@cat"], f"number filter and sort, got {names}")
    found = notion.data_sources.query(
        data_source_id=DATA_SOURCE_ID,
        filter={"or": [
            {"property": "handle", "title": {"starts_with": "@a"}},
            {"and": [
                {"property": "Done", "checkbox": {"equals": False}},
                {"property": "Tags", "multi_select": {"contains": "notion"}},
            ]},
        ]},
        sorts=[{"timestamp": "created_time", "direction": "ascending"}],
    )
    names = [title_of(r) for r in found["results"]]
    check(names == ["@ann", "@bob"], f"compound filter, got {names}")
    every = collect_paginated_api(notion.data_sources.query, data_source_id=DATA_SOURCE_ID, page_size=1)
    check(len(every) == 3, f"pagination one by one, got {len(every)}")
    key = notion.data_sources.query(
        data_source_id=DATA_SOURCE_ID,
        filter={"property": "Inbox ID", "rich_text": {"equals": "py-@cat"}},
        page_size=1,
    )
    check([r["id"] for r in key["results"]] == [ids[2]], "find by key")
    trashed = notion.pages.update(page_id=ids[1], in_trash=True)
    check(trashed["in_trash"] is True, "pages.update moves a page to the trash")
    live = collect_paginated_api(notion.data_sources.query, data_source_id=DATA_SOURCE_ID)
    check(ids[1] not in [r["id"] for r in live], "a trashed page leaves queries")
    bin_ = notion.data_sources.query(data_source_id=DATA_SOURCE_ID, in_trash=True)
    check([r["id"] for r in bin_["results"]] == [ids[1]], "in_trash: true finds it")
    expect_error("editing a trashed page", APIErrorCode.ValidationError, 400,
                 lambda: notion.pages.update(page_id=ids[1], properties={"Score": {"number": 1}}))


def errors(notion, token):
    bad = Client(auth="ntn_not_a_token", base_url=URL, retry=False)
    expect_error("a bad token", APIErrorCode.Unauthorized, 401, lambda: bad.users.me())
    e = expect_error(
        "an unknown property", APIErrorCode.ValidationError, 400,
        lambda: notion.pages.create(
            parent={"type": "data_source_id", "data_source_id": DATA_SOURCE_ID},
            properties={"Nope": text("x")},
        ),
    )
    check(str(e) == "Nope is not a property that exists.", f"Notion's message, got {e}")
    expect_error("a database not shared", APIErrorCode.ObjectNotFound, 404,
                 lambda: notion.databases.retrieve(database_id=HIDDEN_DATABASE_ID))
    expect_error("a malformed id", APIErrorCode.ValidationError, 400,
                 lambda: notion.databases.retrieve(database_id="not-an-id"))
    expect_error("a filter that does not fit the property", APIErrorCode.ValidationError, 400,
                 lambda: notion.data_sources.query(
                     data_source_id=DATA_SOURCE_ID,
                     filter={"property": "Score", "rich_text": {"equals": "3"}}))
    # A 429: without retries the SDK raises it; with its default retries it waits Retry-After.
    faults = httpx.put(f"{URL}/_emulator/faults", json={"rate_limit_next": 1, "storm_token": token})
    check(faults.status_code == 204, "faults set")
    once = Client(auth=token, base_url=URL, retry=False)
    expect_error("a 429 without retries", APIErrorCode.RateLimited, 429, lambda: once.users.me())
    httpx.put(f"{URL}/_emulator/faults", json={"rate_limit_next": 1, "storm_token": token})
    started = time.monotonic()
    me = notion.users.me()
    waited = time.monotonic() - started
    check(me["type"] == "bot", "the SDK's retry gets through")
    check(waited >= 0.9, f"after waiting Retry-After (1 s), waited {waited:.2f} s")
    stats = httpx.get(f"{URL}/_emulator/stats").json()
    check(stats["faults"]["rate_limit_next"] == 2, f"two 429s answered, got {stats['faults']}")


def main():
    anon, token = oauth()
    notion = Client(auth=token, base_url=URL)
    me = notion.users.me()
    check(me["type"] == "bot", "users.me is the bot")
    search(notion)
    db = notion.databases.retrieve(database_id=DATABASE_ID)
    check(db["data_sources"][0]["id"] == DATA_SOURCE_ID, "databases.retrieve lists the data source")
    ds = notion.data_sources.retrieve(data_source_id=DATA_SOURCE_ID)
    check(ds["properties"]["handle"]["type"] == "title", "data_sources.retrieve: the schema")
    ids = create_rows(notion)
    pages(notion, ids)
    queries(notion, ids)
    errors(notion, token)
    active = anon.oauth.introspect(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token=token)
    check(active["active"] is True, "introspect: active")
    anon.oauth.revoke(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token=token)
    expect_error("a revoked token", APIErrorCode.Unauthorized, 401, lambda: notion.users.me())
    print(f"python conformance: {checks} checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - any failure ends the run with its story
        print(f"python conformance failed: {e!r}", file=sys.stderr)
        raise
