// Drives the official Notion SDK against the notion-inbox emulator, records every response, and
// writes `check.ts`, which assigns each recorded response (as an object literal) to the SDK's own
// response type, for `tsc --strict --noEmit` to judge. Inputs come from the environment (see
// tests/sdk_conformance.rs). Exits non-zero on the first unexpected result.

import { Client, APIResponseError } from "@notionhq/client";
import * as fs from "node:fs";
import * as path from "node:path";

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`missing environment variable ${name}`);
  return v;
};

const baseUrl = env("EMU_URL");
const out = env("OUT_DIR");
const clientId = env("CLIENT_ID");
const clientSecret = env("CLIENT_SECRET");
const dataSourceId = env("DATA_SOURCE_ID");
const databaseId = env("DATABASE_ID");
const hiddenDatabaseId = env("HIDDEN_DATABASE_ID");

// Each recorded response: [variable name, SDK type, JSON].
const checks: Array<[string, string, unknown]> = [];
const record = (name: string, type: string, value: unknown) => {
  fs.writeFileSync(path.join(out, `${name}.json`), JSON.stringify(value, null, 2));
  checks.push([name, type, value]);
};

function assert(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}

async function expectError(what: string, code: string, f: () => Promise<unknown>) {
  try {
    await f();
  } catch (e) {
    assert(e instanceof APIResponseError, `${what}: an APIResponseError, got ${e}`);
    assert(e.code === code, `${what}: code ${code}, got ${e.code} (${e.message})`);
    return;
  }
  throw new Error(`${what}: expected an error ${code}`);
}

async function main() {
  const anon = new Client({ baseUrl, notionVersion: "2025-09-03", retry: false });
  const token = await anon.oauth.token({
    grant_type: "authorization_code",
    code: env("CODE"),
    redirect_uri: env("REDIRECT_URI"),
    client_id: clientId,
    client_secret: clientSecret,
  });
  record("oauth_token", "OauthTokenResponse", token);
  assert(token.workspace_name === "Acme", "workspace name");

  const notion = new Client({ auth: token.access_token, baseUrl, notionVersion: "2025-09-03", retry: false });
  const me = await notion.users.me({});
  record("users_me", "UserObjectResponse", me);
  assert(me.type === "bot", "users.me is the bot");

  // Search, one result per page, to the end.
  const found: unknown[] = [];
  let cursor: string | undefined = undefined;
  for (;;) {
    const page: Awaited<ReturnType<typeof notion.search>> = await notion.search({
      filter: { property: "object", value: "data_source" },
      page_size: 1,
      start_cursor: cursor,
    });
    record(`search_${found.length}`, "SearchResponse", page);
    for (const r of page.results) {
      assert(r.object === "data_source", "search returns data sources");
      record(`search_result_${found.length}`, "DataSourceObjectResponse", r);
      found.push(r);
    }
    if (!page.has_more || !page.next_cursor) break;
    cursor = page.next_cursor;
  }
  assert(found.length === 1, `the OAuth token sees the one database picked, got ${found.length}`);

  const db = await notion.databases.retrieve({ database_id: databaseId });
  record("database", "DatabaseObjectResponse", db);
  const ds = await notion.dataSources.retrieve({ data_source_id: dataSourceId });
  record("data_source", "DataSourceObjectResponse", ds);

  const created = await notion.pages.create({
    parent: { type: "data_source_id", data_source_id: dataSourceId },
    properties: {
      handle: { title: [{ type: "text", text: { content: "@sdk" } }] },
      tweet: { rich_text: [{ type: "text", text: { content: "written by @notionhq/client" } }] },
      "Inbox ID": { rich_text: [{ type: "text", text: { content: "sdk-1" } }] },
      Link: { url: "https://example.com/sdk" },
      When: { date: { start: "2026-01-31T12:00:00Z" } },
      Score: { number: 4.5 },
      Kind: { select: { name: "reply" } },
      Tags: { multi_select: [{ name: "rust" }, { name: "sdk" }] },
      Done: { checkbox: true },
      Email: { email: "sdk@example.com" },
      Phone: { phone_number: "+1 555 0100" },
    },
  });
  record("page", "PageObjectResponse", created);

  const query = await notion.dataSources.query({
    data_source_id: dataSourceId,
    filter: { property: "Inbox ID", rich_text: { equals: "sdk-1" } },
    page_size: 1,
  });
  record("query", "QueryDataSourceResponse", query);
  assert(query.results.length === 1 && query.results[0].id === created.id, "the query finds the page");
  record("query_result", "PageObjectResponse", query.results[0]);

  // Rich text beyond plain text: annotations, a mention of each kind the emulator models, an
  // equation; the responses are type-checked below like every other.
  const rich = await notion.pages.create({
    parent: { type: "data_source_id", data_source_id: dataSourceId },
    properties: {
      handle: { title: [{ type: "text", text: { content: "@rich" }, annotations: { bold: true, color: "red" } }] },
      tweet: {
        rich_text: [
          { type: "mention", mention: { type: "date", date: { start: "2026-01-31" } } },
          { type: "mention", mention: { type: "user", user: { id: me.id } } },
          { type: "mention", mention: { type: "database", database: { id: databaseId } } },
          { type: "mention", mention: { type: "template_mention", template_mention: { type: "template_mention_user", template_mention_user: "me" } } },
          { type: "equation", equation: { expression: "x^2" } },
          { type: "text", text: { content: "a link", link: { url: "https://example.com/l" } } },
        ],
      },
    },
  });
  record("page_rich", "PageObjectResponse", rich);

  // Pages: retrieve, update (properties, then the trash), and property items.
  const got = await notion.pages.retrieve({ page_id: created.id });
  assert("properties" in got, "pages.retrieve returns a full page");
  record("page_retrieved", "PageObjectResponse", got);
  const updated = await notion.pages.update({ page_id: created.id, properties: { Score: { number: 5 } } });
  assert("properties" in updated && updated.properties.Score.type === "number" && updated.properties.Score.number === 5, "pages.update");
  record("page_updated", "PageObjectResponse", updated);
  const titleItems = await notion.pages.properties.retrieve({ page_id: created.id, property_id: "title" });
  assert(titleItems.object === "list", "a title comes as a list of property items");
  record("property_title", "PropertyItemListResponse", titleItems);
  const score = await notion.pages.properties.retrieve({ page_id: created.id, property_id: got.properties.Score.id });
  assert(score.object === "property_item" && score.type === "number" && score.number === 5, "a number as one item");
  record("property_number", "NumberPropertyItemObjectResponse", score);
  const sorted = await notion.dataSources.query({
    data_source_id: dataSourceId,
    filter: { and: [{ property: "Score", number: { greater_than_or_equal_to: 0 } }, { property: "Done", checkbox: { equals: true } }] },
    sorts: [{ property: "Score", direction: "descending" }],
  });
  assert(sorted.results.length === 1 && sorted.results[0].id === created.id, "a compound filter finds the page");
  record("query_sorted", "QueryDataSourceResponse", sorted);
  const trashed = await notion.pages.update({ page_id: rich.id, in_trash: true });
  assert("in_trash" in trashed && trashed.in_trash === true, "pages.update moves a page to the trash");
  record("page_trashed", "PageObjectResponse", trashed);

  await expectError("a database not shared", "object_not_found", () =>
    notion.databases.retrieve({ database_id: hiddenDatabaseId }),
  );
  await expectError("an unknown property", "validation_error", () =>
    notion.pages.create({
      parent: { type: "data_source_id", data_source_id: dataSourceId },
      properties: { Nope: { rich_text: [] } },
    }),
  );

  const active = await anon.oauth.introspect({ token: token.access_token, client_id: clientId, client_secret: clientSecret });
  record("introspect", "OauthIntrospectResponse", active);
  assert(active.active === true, "introspect: active");
  const revoked = await anon.oauth.revoke({ token: token.access_token, client_id: clientId, client_secret: clientSecret });
  record("revoke", "OauthRevokeResponse", revoked);
  await expectError("a revoked token", "unauthorized", () => notion.users.me({}));

  // The file tsc judges: every response as a literal of the SDK's type.
  const types = [...new Set(checks.map(([, t]) => t))].sort();
  const lines = [`import type { ${types.join(", ")} } from "@notionhq/client";`, ""];
  for (const [name, type, value] of checks) {
    lines.push(`export const ${name}: ${type} = ${JSON.stringify(value, null, 2)};`, "");
  }
  fs.writeFileSync(path.join(out, "check.ts"), lines.join("\n"));
  console.log(`conformance: ${checks.length} responses recorded`);
}

main().catch((e) => {
  console.error(`conformance failed: ${e instanceof Error ? e.stack : e}`);
  process.exit(1);
});
