import type { RiskEvent } from '../detect/events.ts';
import { RISK_LEVELS } from '../model.ts';
import { headline } from '../notify/describe.ts';
import type { DeliveryView, EventView, SilenceView, StatusView, timelineView, UserView } from '../operate/views.ts';
import { VERSION } from '../version.ts';
import { type Content, type Html, href, html, query } from './html.ts';

/** An account as the pages name it: its name, else its id. */
export interface AccountRef {
  readonly id: string;
  readonly name: string | null;
}

/** What every page knows of its request: the CSRF token its forms carry, and whether a session can log out. */
export interface PageContext {
  readonly csrf: string;
  readonly loggedIn: boolean;
  /** A line to show above the page: what the last action did, or why it was refused. */
  readonly said?: { readonly text: string; readonly error: boolean } | undefined;
}

const NAV = [
  ['/', 'Overview'],
  ['/users?level=high', 'Users'],
  ['/silences', 'Silences'],
  ['/deliveries?state=dead', 'Dead letters'],
] as const;

/** The frame of every page: one stylesheet of our own, no script at all. */
export function page(title: string, context: PageContext | undefined, body: Html): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · riskwatch</title>
<link rel="stylesheet" href="/console.css">
</head>
<body>
<header>
<span class="brand">riskwatch</span>
${
  context &&
  html`<nav aria-label="Console"><ul>${NAV.map(([path, label]) => html`<li><a href="${path}" ${title.startsWith(label) && html`aria-current="page"`}>${label}</a></li>`)}</ul></nav>
${context.loggedIn && html`<form class="inline" method="post" action="/logout">${csrfField(context)}<button type="submit">Log out</button></form>`}`
}
</header>
<main>
<h1>${title}</h1>
${context?.said && html`<p class="${context.said.error ? 'error' : 'note'}" role="status">${context.said.text}</p>`}
${body}
</main>
<footer class="muted"><p>riskwatch ${VERSION}</p></footer>
</body>
</html>
`;
}

function csrfField(context: PageContext): Html {
  return html`<input type="hidden" name="csrf" value="${context.csrf}">`;
}

function level(value: string | null): Html {
  return value === null ? html`<span class="muted">none</span>` : html`<span class="level-${value}">${value}</span>`;
}

function time(value: string | null): Html {
  return value === null ? html`<span class="muted">never</span>` : html`<time datetime="${value}">${value.replace('T', ' ').replace('Z', ' UTC')}</time>`;
}

/** A table in a box that scrolls sideways on a narrow screen; `empty` when there are no rows. */
function table(caption: string, header: readonly (string | readonly [string, 'n'])[], rows: readonly (readonly Content[])[], empty: string): Html {
  if (rows.length === 0) return html`<p class="muted">${empty}</p>`;
  const numeric = header.map((h) => typeof h !== 'string');
  return html`<div class="scroll"><table>
<caption class="muted">${caption}</caption>
<thead><tr>${header.map((h) => (typeof h === 'string' ? html`<th scope="col">${h}</th>` : html`<th scope="col" class="n">${h[0]}</th>`))}</tr></thead>
<tbody>${rows.map((row) => html`<tr>${row.map((cell, i) => (numeric[i] ? html`<td class="n">${cell}</td>` : html`<td>${cell}</td>`))}</tr>`)}</tbody>
</table></div>`;
}

export function loginPage(next: string, error: string | undefined): Html {
  return page(
    'Log in',
    undefined,
    html`${error && html`<p class="error" role="alert">${error}</p>`}
<form method="post" action="/login">
<input type="hidden" name="next" value="${next}">
<label for="token">Token (<code>http.token</code>)</label>
<input type="password" id="token" name="token" autocomplete="current-password" required>
<p><button type="submit">Log in</button></p>
</form>`,
  );
}

export function overviewPage(context: PageContext, status: StatusView, flapping: readonly UserView[]): Html {
  const accounts = status.accounts.map((a) => [
    a.name ?? a.id,
    time(a.last_success_at),
    ...RISK_LEVELS.toReversed().map((l) => html`<a href="${`/users${query({ level: l, account: a.id })}`}">${a.users[l]}</a>`),
    a.flapping,
    a.leader,
    a.last_error && html`${time(a.last_error_at)}: ${a.last_error}`,
  ]);
  const sinks = status.sinks.map((s) => [
    s.name,
    s.type ?? html`<span class="error">not configured</span>`,
    s.pending,
    s.dead === 0 ? 0 : html`<a href="${`/deliveries${query({ state: 'dead', sink: s.name })}`}">${s.dead}</a>`,
    s.held_until && time(s.held_until),
  ]);
  return page(
    'Overview',
    context,
    html`<h2>Accounts</h2>
${table('Each account, its last poll and its users per level', ['Account', 'Last success', ['High', 'n'], ['Medium', 'n'], ['Low', 'n'], ['Flapping', 'n'], 'Leader', 'Last error'], accounts, 'No accounts configured.')}
<h2>Sinks</h2>
${table('Where alerts go, and what waits for each', ['Sink', 'Type', ['Pending', 'n'], ['Dead', 'n'], 'Held until'], sinks, 'No sinks configured.')}
<h2>Silences</h2>
<p><a href="/silences">${status.silences} active ${status.silences === 1 ? 'silence' : 'silences'}</a></p>
<h2>Flapping</h2>
${usersTable(flapping, 'Nobody is flapping.')}`,
  );
}

function usersTable(users: readonly UserView[], empty: string): Html {
  return table(
    'Users, highest level first',
    ['Account', 'Email', 'Name', 'Level', 'Since', 'Flapping'],
    users.map((u) => [
      u.account.name ?? u.account.id,
      html`<a href="${href('users', u.account.id, u.user_id)}">${u.email || u.user_id}</a>`,
      u.name,
      level(u.level),
      time(u.since),
      u.flapping ? 'yes' : '',
    ]),
    empty,
  );
}

export interface UsersFilter {
  readonly level: string;
  readonly account: string | undefined;
  readonly page: number;
}

export function usersPage(context: PageContext, accounts: readonly AccountRef[], filter: UsersFilter, users: readonly UserView[], more: boolean): Html {
  const at = (page: number) => `/users${query({ level: filter.level, account: filter.account, page: page === 1 ? undefined : page })}`;
  return page(
    `Users at ${filter.level}`,
    context,
    html`<form class="filters" method="get" action="/users">
<div><label for="level">Level</label><select id="level" name="level">${RISK_LEVELS.toReversed().map((l) => html`<option value="${l}" ${l === filter.level && 'selected'}>${l}</option>`)}</select></div>
<div><label for="account">Account</label><select id="account" name="account"><option value="">All accounts</option>${accounts.map((a) => html`<option value="${a.id}" ${a.id === filter.account && 'selected'}>${a.name ?? a.id}</option>`)}</select></div>
<div><button type="submit">Show</button></div>
</form>
${usersTable(users, `Nobody is at ${filter.level}.`)}
<nav class="pages" aria-label="Pages">${filter.page > 1 && html`<a href="${at(filter.page - 1)}" rel="prev">Previous</a>`} <span>Page ${filter.page}</span> ${more && html`<a href="${at(filter.page + 1)}" rel="next">Next</a>`}</nav>`,
  );
}

export function timelinePage(context: PageContext, accountId: string, userId: string, timeline: Awaited<ReturnType<typeof timelineView>>): Html {
  const { user, events, deliveries } = timeline;
  const latest = events.find((e) => e.type.startsWith('user.'))?.data as { user?: { email?: string; name?: string } } | undefined;
  const email = user?.email ?? latest?.user?.email ?? '';
  const byEvent = new Map<string, DeliveryView[]>();
  for (const d of deliveries) for (const id of d.event_ids) byEvent.set(id, [...(byEvent.get(id) ?? []), d]);
  const levels = events.flatMap((e) => {
    const data = e.data as { previous_level?: string | null; current_level?: string | null };
    return e.type.startsWith('user.') && e.type !== 'user.settled'
      ? [[time(e.timestamp.replace(/\.\d{3}Z$/, 'Z')), level(data.previous_level ?? null), level(data.current_level ?? null), e.flapping ? 'yes (not sent)' : '']]
      : [];
  });
  return page(
    user ? `${user.name || user.email || userId}` : `User ${userId}`,
    context,
    html`<p>${
      user
        ? html`${user.email} · account ${user.account.name ?? user.account.id} · now ${level(user.level)} since ${time(user.since)}${user.flapping && ' · flapping'}`
        : html`<span class="muted">Not in the last summary of account ${accountId}.</span>`
    }</p>
<form method="post" action="/silences">
${csrfField(context)}
<input type="hidden" name="user" value="${email || userId}">
<input type="hidden" name="account" value="${accountId}">
<fieldset><legend>Silence this user in this account</legend>
<label for="for">For (a duration: 2h, 7d)</label><input type="text" id="for" name="for" value="24h" required>
<label for="reason">Reason</label><input type="text" id="reason" name="reason" required>
<p><button type="submit">Silence</button></p>
</fieldset>
</form>
<h2>Levels</h2>
${table('Each change of level, newest first', ['When', 'From', 'To', 'Flapping'], levels, 'No change of level recorded.')}
<h2>Events and deliveries</h2>
${events.length === 0 ? html`<p class="muted">No events recorded for this user.</p>` : events.map((e) => eventBlock(e, byEvent.get(e.id) ?? []))}`,
  );
}

function eventBlock(event: EventView, deliveries: readonly DeliveryView[]): Html {
  const risk = (event.data as { risk_events?: readonly { name: string; risk_level: string; timestamp: string }[] }).risk_events ?? [];
  return html`<section aria-label="${event.type} at ${event.timestamp}">
<h3>${time(event.timestamp.replace(/\.\d{3}Z$/, 'Z'))} · ${event.type}</h3>
<p>${headline(event as RiskEvent)}${event.silenced && html` · silenced by <a href="/silences?all=1">${event.silenced}</a>`}${event.flapping && ' · flapping: sent to no sink'}</p>
${risk.length > 0 && html`<ul class="plain">${risk.map((r) => html`<li>${r.name} (${level(r.risk_level)}) at ${r.timestamp}</li>`)}</ul>`}
${table(
  'Deliveries of this event',
  ['Sink', 'State', ['Attempts', 'n'], 'Finished', 'Last error'],
  deliveries.map((d) => [d.sink, d.state, d.attempts, d.finished_at && time(d.finished_at), d.last_error]),
  'Sent to no sink.',
)}
</section>`;
}

export function silencesPage(context: PageContext, accounts: readonly AccountRef[], silences: readonly SilenceView[], all: boolean, form: Readonly<Record<string, string>> = {}): Html {
  const rows = silences.map((s) => [
    s.id,
    s.user ? html`user ${s.user}` : html`behavior ${s.behavior}`,
    accounts.find((a) => a.id === s.account)?.name ?? s.account ?? 'all',
    time(s.ends_at),
    s.by,
    s.reason,
    s.active
      ? html`<form class="inline" method="post" action="${`${href('silences', s.id)}/expire`}">${csrfField(context)}<button type="submit" aria-label="${`Expire ${s.id}`}">Expire</button></form>`
      : 'ended',
  ]);
  return page(
    'Silences',
    context,
    html`${table(all ? 'Every silence kept' : 'Active silences', ['Id', 'Matches', 'Account', 'Ends', 'By', 'Reason', 'Action'], rows, all ? 'No silences.' : 'No active silences.')}
<p>${all ? html`<a href="/silences">Only active silences</a>` : html`<a href="/silences?all=1">Ended silences too</a>`}</p>
<h2>Add a silence</h2>
<form method="post" action="/silences">
${csrfField(context)}
<fieldset><legend>Mute a user or a behavior until it ends</legend>
<label for="user">User (email or id)</label><input type="text" id="user" name="user" value="${form.user ?? ''}">
<label for="behavior">or behavior id</label><input type="text" id="behavior" name="behavior" value="${form.behavior ?? ''}">
<label for="account">Account</label><select id="account" name="account"><option value="">All accounts</option>${accounts.map((a) => html`<option value="${a.id}" ${a.id === form.account && 'selected'}>${a.name ?? a.id}</option>`)}</select>
<label for="for">For (2h, 7d)</label><input type="text" id="for" name="for" value="${form.for ?? ''}">
<label for="until">or until (2026-12-31T18:00:00Z)</label><input type="text" id="until" name="until" value="${form.until ?? ''}">
<label for="reason">Reason</label><input type="text" id="reason" name="reason" value="${form.reason ?? ''}" required>
<label for="by">By</label><input type="text" id="by" name="by" value="${form.by ?? ''}">
<p><button type="submit">Add silence</button></p>
</fieldset>
</form>`,
  );
}

/** Which deliveries a page lists: a state, a sink or all, and the page (those after an id, and the last id shown when there are more). */
export interface DeliveriesFilter {
  readonly state: 'pending' | 'dead';
  readonly sink: string | undefined;
  readonly after: number | undefined;
  readonly more: number | undefined;
}

export function deliveriesPage(context: PageContext, accounts: readonly AccountRef[], filter: DeliveriesFilter, deliveries: readonly DeliveryView[]): Html {
  const { state, sink } = filter;
  const sinks = [...new Set(deliveries.map((d) => d.sink))];
  const rows = deliveries.map((d) => [
    d.id,
    d.sink,
    accounts.find((a) => a.id === d.account)?.name ?? d.account,
    d.types.length === 1 ? d.types[0] : `${d.types.length} events`,
    d.attempts,
    time(d.created_at),
    d.last_error,
    state === 'dead' &&
      html`<form class="inline" method="post" action="/deliveries/retry">${csrfField(context)}<input type="hidden" name="id" value="${d.id}"><button type="submit" aria-label="${`Retry delivery ${d.id}`}">Retry</button></form>`,
  ]);
  return page(
    state === 'dead' ? `Dead letters${sink ? ` of ${sink}` : ''}` : `Pending deliveries${sink ? ` of ${sink}` : ''}`,
    context,
    html`<p>${state === 'dead' ? html`<a href="/deliveries?state=pending">Pending deliveries</a>` : html`<a href="/deliveries?state=dead">Dead letters</a>`}</p>
${table(state === 'dead' ? 'Deliveries that failed for good, oldest first' : 'Deliveries waiting to go, oldest first', ['Id', 'Sink', 'Account', 'Events', ['Attempts', 'n'], 'Created', 'Last error', 'Action'], rows, state === 'dead' ? 'No dead letters.' : 'Nothing pending.')}
<nav class="pages" aria-label="Pages">${filter.after !== undefined && html`<a href="${`/deliveries${query({ state, sink })}`}">First page</a>`} ${filter.more !== undefined && html`<a href="${`/deliveries${query({ state, sink, after: filter.more })}`}" rel="next">Next</a>`}</nav>
${
  state === 'dead' &&
  sinks.map(
    (s) =>
      html`<form method="post" action="/deliveries/retry">${csrfField(context)}<input type="hidden" name="sink" value="${s}"><p><button type="submit">Retry every dead letter of ${s}</button></p></form>`,
  )
}`,
  );
}

/** A request refused or failed: what went wrong, in one line, and the way back. */
export function errorPage(status: number, what: string): Html {
  const title = status === 404 ? 'Not found' : status < 500 ? 'Cannot do that' : 'Something went wrong';
  return page(title, undefined, html`<p class="error" role="alert">${what}</p><p><a href="/">Overview</a></p>`);
}
