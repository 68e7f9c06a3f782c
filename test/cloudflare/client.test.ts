import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RequestBudget } from '../../src/cloudflare/budget.ts';
import { CloudflareError } from '../../src/cloudflare/errors.ts';
import { StoredLevels } from '../../src/detect/stored-levels.ts';
import { Secret } from '../../src/config/secret.ts';
import { FakeRiskApi, failure, success } from '../../src/simulator/fake-api.ts';
import { ACCOUNT, behavior, clientFor, OTHER_ACCOUNT, seedUsers, TOKEN, user } from '../support/cloudflare.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { captureLogs } from '../support/logs.ts';

let api: FakeRiskApi;
beforeEach(async () => {
  api = await FakeRiskApi.start();
});
afterEach(async () => {
  await api.close();
});

const summaryRequests = () => api.requests.filter((r) => r.call === 'summary');
const pagesAsked = () => summaryRequests().map((r) => Number(r.query.get('page')));

describe('summary pagination: all pages or an error', () => {
  it('reads every page of a 3-page summary, asking page and per_page', async () => {
    const users = seedUsers(api, 2500);
    const { client } = clientFor(api, { pageSize: 1000 });
    const summary = await client.fetchSummary(ACCOUNT);
    expect(summary.users.size).toBe(2500);
    expect(summary.pages).toBe(3);
    expect([...summary.users.keys()].sort()).toEqual(users.map((u) => u.user_id).sort());
    expect(pagesAsked().sort()).toEqual([1, 2, 3]);
    expect(summaryRequests().every((r) => r.query.get('per_page') === '1000')).toBe(true);
  });

  it('follows the server when it caps per_page below what was asked', async () => {
    seedUsers(api, 450);
    await api.close();
    api = await FakeRiskApi.start({ maxPerPage: 100 });
    seedUsers(api, 450);
    const { client } = clientFor(api, { pageSize: 1000 });
    const summary = await client.fetchSummary(ACCOUNT);
    expect(summary.users.size).toBe(450);
    expect(pagesAsked().sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5]);
  });

  it('reads until an empty page when total_pages is absent (total_count / per_page is only a guess)', async () => {
    await api.close();
    api = await FakeRiskApi.start({ maxPerPage: 10, omitTotalPages: true });
    seedUsers(api, 35);
    const { client } = clientFor(api, { pageConcurrency: 1 });
    expect((await client.fetchSummary(ACCOUNT)).users.size).toBe(35);
    expect(pagesAsked()).toEqual([1, 2, 3, 4, 5]);
  });

  it('takes a response without result_info as one complete page', async () => {
    api.fault = (r) => (r.call === 'summary' ? { status: 200, body: success({ users: [user(1), user(2)] }) } : undefined);
    const { client } = clientFor(api);
    const summary = await client.fetchSummary(ACCOUNT);
    expect(summary.users.size).toBe(2);
    expect(summaryRequests()).toHaveLength(1);
  });

  it('stops on an empty page when result_info has no totals', async () => {
    const pages = [[user(1), user(2)], [user(3)], []];
    api.fault = (r) => {
      const rows = pages[Number(r.query.get('page')) - 1] ?? [user(99)];
      return { status: 200, body: { ...success({ users: rows }), result_info: { page: Number(r.query.get('page')), per_page: 2, count: rows.length } } };
    };
    const { client } = clientFor(api, { pageConcurrency: 1 });
    const summary = await client.fetchSummary(ACCOUNT);
    expect([...summary.users.keys()]).toEqual([user(1), user(2), user(3)].map((u) => u.user_id));
    expect(pagesAsked()).toEqual([1, 2, 3]);
  });

  it('detects a server that ignores `page` instead of looping or double-counting', async () => {
    await api.close();
    api = await FakeRiskApi.start({ maxPerPage: 10, omitTotalPages: true });
    seedUsers(api, 30);
    api.ignorePage = true;
    const { client } = clientFor(api);
    await expect(client.fetchSummary(ACCOUNT)).rejects.toThrow(/ignores paging/);
    expect(summaryRequests().length).toBeLessThanOrEqual(2);
  });

  it('detects a server that ignores `page` and even when it answers without a page number', async () => {
    const rows = [user(1), user(2)];
    api.fault = () => ({ status: 200, body: { ...success({ users: rows }), result_info: { per_page: 2, count: 2 } } });
    const { client } = clientFor(api);
    await expect(client.fetchSummary(ACCOUNT)).rejects.toThrow(/page 2 repeated only users of earlier pages/);
    expect(summaryRequests()).toHaveLength(2);
  });

  it('fails the whole fetch when one page keeps failing, returning nothing partial', async () => {
    seedUsers(api, 30);
    await api.close();
    api = await FakeRiskApi.start({ maxPerPage: 10 });
    seedUsers(api, 30);
    api.fault = (r) => (r.call === 'summary' && r.query.get('page') === '2' ? { status: 500 } : undefined);
    const { client } = clientFor(api);
    const error = await client.fetchSummary(ACCOUNT).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CloudflareError);
    expect((error as CloudflareError).message).toMatch(/page=2.*HTTP 500/);
  });

  it('counts a user listed on two pages once', async () => {
    const pages = [[user(1), user(2)], [user(2), user(3)], [user(4)]];
    api.fault = (r) => {
      const page = Number(r.query.get('page'));
      return { status: 200, body: { ...success({ users: pages[page - 1] }), result_info: { page, per_page: 2, count: pages[page - 1]!.length, total_count: 4, total_pages: 3 } } };
    };
    const { client } = clientFor(api);
    const summary = await client.fetchSummary(ACCOUNT);
    expect([...summary.users.keys()].sort()).toEqual([1, 2, 3, 4].map((n) => user(n).user_id).sort());
  });

  it('reads the summary again when it changed while paging, and fails if it keeps changing', async () => {
    await api.close();
    api = await FakeRiskApi.start({ maxPerPage: 10 });
    seedUsers(api, 25);
    let grow = 2;
    let next = 1000;
    api.fault = (r) => {
      // Each time page 2 is read, a user joins: total_pages/total_count move under the reader.
      if (r.call === 'summary' && r.query.get('page') === '2' && grow-- > 0) {
        const joined = user(next++);
        api.account(ACCOUNT).users.set(joined.user_id, joined);
      }
      return undefined;
    };
    const { client } = clientFor(api, { pageConcurrency: 1 });
    await expect(client.fetchSummary(ACCOUNT)).rejects.toThrow(/total_count went from 25 to 26|total_count went from 26 to 27/);

    const settled = clientFor(api, { pageConcurrency: 1 });
    grow = 1;
    const summary = await settled.client.fetchSummary(ACCOUNT);
    expect(summary.users.size).toBe(28);
  });

  it('reports a summary that comes back with fewer users than it announced', async () => {
    api.fault = () => ({ status: 200, body: { ...success({ users: [user(1)] }), result_info: { page: 1, per_page: 10, count: 1, total_count: 3, total_pages: 1 } } });
    const { client } = clientFor(api);
    await expect(client.fetchSummary(ACCOUNT)).rejects.toThrow(/read 1 distinct users of the 3 reported/);
  });
});

describe('users the caller already has at their level are only marked, not kept', () => {
  it('keeps changed and new users, counts the rest, and starts afresh on the next read', async () => {
    const at = (n: number, level: 'low' | 'medium' | 'high') => ({ ...user(n), max_risk_level: level });
    const pages = [
      [at(1, 'low'), at(2, 'high')],
      [at(2, 'high'), at(3, 'medium')],
      [at(1, 'low'), at(4, 'low')],
    ];
    api.fault = (r) => {
      const page = Number(r.query.get('page'));
      return { status: 200, body: { ...success({ users: pages[page - 1] }), result_info: { page, per_page: 2, count: 2, total_count: 4, total_pages: 3 } } };
    };
    const known = new StoredLevels([
      [user(1).user_id, 'low'],
      [user(2).user_id, 'low'],
    ]);
    const { client } = clientFor(api, { pageConcurrency: 1 });
    const summary = await client.fetchSummary(ACCOUNT, undefined, { known });
    // User 2 twice at the same level is one user, at that level.
    expect([...summary.users.values()].map((u) => `${u.email} ${u.max_risk_level}`).sort()).toEqual([`${user(2).email} high`, `${user(3).email} medium`, `${user(4).email} low`]);
    expect(summary.unchanged?.count).toBe(1);
    expect(summary.unchanged?.has(user(1).user_id)).toBe(true);
    expect(summary.unchanged?.has(user(2).user_id)).toBe(false);
    const again = await client.fetchSummary(ACCOUNT, undefined, { known });
    expect(again.unchanged?.count).toBe(1);
  });
});

describe('a user listed twice in one read with two levels keeps their previous state (SPEC §1)', () => {
  const at = (n: number, level: 'low' | 'medium' | 'high') => ({ ...user(n), max_risk_level: level });
  /** Serves `pages` as a summary of `total` users, two to a page. */
  const serve = (pages: ReturnType<typeof at>[][], total: number) => {
    api.fault = (r) => {
      const page = Number(r.query.get('page'));
      const rows = pages[page - 1] ?? [];
      return { status: 200, body: { ...success({ users: rows }), result_info: { page, per_page: 2, count: rows.length, total_count: total, total_pages: pages.length } } };
    };
  };

  it('in whichever order the stored level and the other one come, across pages or on one', async () => {
    serve(
      [
        [at(1, 'low'), at(2, 'high')],
        [at(2, 'low'), at(3, 'medium')],
        [at(1, 'high'), at(4, 'low'), at(4, 'medium'), at(5, 'medium'), at(5, 'high'), at(5, 'medium')],
      ],
      5,
    );
    // 1 and 2 are stored at low: 1 is read low then high, 2 high then low. 4 and 5 are new, each read at two levels.
    const known = new StoredLevels([
      [user(1).user_id, 'low'],
      [user(2).user_id, 'low'],
    ]);
    const logs = captureLogs();
    const skipped: [string, string, number][] = [];
    const { client } = clientFor(api, { pageConcurrency: 1, log: logs.log, onSkipped: (account, kind, n) => skipped.push([account, kind, n]) });
    const summary = await client.fetchSummary(ACCOUNT, undefined, { known });
    expect([...summary.users.keys()]).toEqual([user(3).user_id]);
    expect(summary.unchanged?.count).toBe(0);
    expect([...summary.skippedUserIds].sort()).toEqual([1, 2, 4, 5].map((n) => user(n).user_id).sort());
    expect(summary.ambiguousUsers).toBe(4);
    expect(skipped).toEqual([[ACCOUNT, 'ambiguous_user', 4]]);
    const warning = logs.lines().find((l) => l.skipped === 4);
    expect(warning?.msg).toMatch(/4 user\(s\) listed at two levels in one read; their previous state is kept/);
    expect(String(warning?.examples)).toContain(`${user(1).user_id} listed at low and at high`);
  });

  it("without stored levels too (on an account's first read)", async () => {
    serve([[at(1, 'low'), at(1, 'high')]], 1);
    const { client } = clientFor(api);
    const summary = await client.fetchSummary(ACCOUNT);
    expect(summary.users.size).toBe(0);
    expect([...summary.skippedUserIds]).toEqual([user(1).user_id]);
  });

  it('the same UUID in capitals is the same user', async () => {
    serve([[at(1, 'low'), { ...at(1, 'high'), user_id: user(1).user_id.toUpperCase() }]], 1);
    const { client } = clientFor(api);
    const summary = await client.fetchSummary(ACCOUNT);
    expect(summary.users.size).toBe(0);
    expect([...summary.skippedUserIds]).toEqual([user(1).user_id]);
  });

  it('counts the ambiguous user once against total_count', async () => {
    serve(
      [
        [at(1, 'low'), at(2, 'low')],
        [at(2, 'high'), at(3, 'low')],
      ],
      3,
    );
    const { client } = clientFor(api, { pageConcurrency: 1 });
    const summary = await client.fetchSummary(ACCOUNT);
    expect([...summary.users.keys()].sort()).toEqual([user(1).user_id, user(3).user_id].sort());
    expect([...summary.skippedUserIds]).toEqual([user(2).user_id]);
  });
});

describe('summary_paging (SPEC §1)', () => {
  /** The answer of Prism serving Cloudflare's schema: its example claims 100 pages of 20, lists one user, and answers every page with page 1. */
  const prismExample = () => {
    api.fault = (r) =>
      r.call === 'summary' ? { status: 200, body: { ...success({ users: [user(1)] }), result_info: { count: 1, page: 1, per_page: 20, total_count: 2000, total_pages: 100 } } } : undefined;
  };

  it('auto: a read holding total_count users ends at the first page that adds nobody, whatever total_pages says', async () => {
    api.fault = (r) => {
      const asked = Number(r.query.get('page'));
      // Pages past 2 are answered with page 1, as by an API that ignores paging.
      const page = asked <= 2 ? asked : 1;
      const rows = page === 1 ? [user(1), user(2)] : [user(3)];
      return { status: 200, body: { ...success({ users: rows }), result_info: { page, per_page: 2, count: rows.length, total_count: 3, total_pages: 100 } } };
    };
    const { client } = clientFor(api, { pageConcurrency: 1 });
    const summary = await client.fetchSummary(ACCOUNT);
    expect(summary.users.size).toBe(3);
    expect(pagesAsked()).toEqual([1, 2, 3]);
    // Read over three requests: not one moment's snapshot.
    expect(summary.pages).toBe(3);
  });

  it('auto: page 1 holding total_count users is the whole summary, as of one moment; one more page is asked for and ends it', async () => {
    api.fault = () => ({ status: 200, body: { ...success({ users: [user(1)] }), result_info: { count: 1, page: 1, per_page: 20, total_count: 1, total_pages: 100 } } });
    const { client } = clientFor(api);
    const summary = await client.fetchSummary(ACCOUNT);
    expect(summary.users.size).toBe(1);
    expect(summary.pages).toBe(1);
    expect(pagesAsked()).toEqual([1, 2]);
  });

  it('auto: page 1 holding total_count users, no total_pages: exactly one more request proves the read over, not one per page worker', async () => {
    await api.close();
    api = await FakeRiskApi.start({ omitTotalPages: true });
    seedUsers(api, 3);
    const { client } = clientFor(api, { pageConcurrency: 4 });
    const summary = await client.fetchSummary(ACCOUNT);
    expect(summary.users.size).toBe(3);
    expect(pagesAsked()).toEqual([1, 2]);
    expect(summary.pages).toBe(1);
  });

  it('auto: without total_pages, the pages total_count needs are read at once, and only the page past them alone', async () => {
    await api.close();
    api = await FakeRiskApi.start({ maxPerPage: 10, omitTotalPages: true });
    seedUsers(api, 35);
    const { client } = clientFor(api, { pageConcurrency: 4 });
    expect((await client.fetchSummary(ACCOUNT)).users.size).toBe(35);
    expect(pagesAsked().sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5]);
  });

  it('auto: a total_count that lies low does not make page 1 a snapshot when later pages add users', async () => {
    // Every page says total_count 1, yet page 2 names a second user: page 1 was not the whole summary,
    // so the read is not one moment's snapshot (a missing user gets a second look, not an all-clear at once).
    const pages = [[user(1)], [user(2)], []];
    api.fault = (r) => {
      const page = Number(r.query.get('page'));
      const rows = pages[page - 1] ?? [];
      return { status: 200, body: { ...success({ users: rows }), result_info: { page, per_page: 1, count: rows.length, total_count: 1 } } };
    };
    const { client } = clientFor(api, { pageConcurrency: 1 });
    const summary = await client.fetchSummary(ACCOUNT);
    expect(summary.users.size).toBe(2);
    expect(summary.pages).toBe(3);
  });

  it('auto: a page whose result_info names another page is still read: its records decide, not its label', async () => {
    // A forged duplicate at high on page 1; the genuine record on page 3, whose answer claims to be page 4.
    const pages = [[{ ...user(1), max_risk_level: 'high' }, user(2)], [user(3)], [user(1)]];
    api.fault = (r) => {
      const page = Number(r.query.get('page'));
      const rows = pages[page - 1] ?? [];
      return { status: 200, body: { ...success({ users: rows }), result_info: { page: page === 3 ? 4 : page, per_page: 2, count: rows.length, total_count: 3, total_pages: 3 } } };
    };
    const { client } = clientFor(api, { pageConcurrency: 1 });
    const summary = await client.fetchSummary(ACCOUNT);
    expect([...summary.users.keys()].sort()).toEqual([user(2).user_id, user(3).user_id].sort());
    expect([...summary.skippedUserIds]).toEqual([user(1).user_id]);
  });

  it('auto: a user listed at another level on a later page is caught even after the count was reached', async () => {
    // A fabricated duplicate at low comes first; the real record, at high, on page 2.
    const pages = [[{ ...user(1), max_risk_level: 'low' }], [user(1, 'high')]];
    api.fault = (r) => {
      const page = Number(r.query.get('page'));
      return { status: 200, body: { ...success({ users: pages[page - 1] ?? [] }), result_info: { page, per_page: 1, count: 1, total_count: 1, total_pages: 2 } } };
    };
    const { client } = clientFor(api, { pageConcurrency: 1 });
    const summary = await client.fetchSummary(ACCOUNT);
    expect(summary.users.size).toBe(0);
    expect([...summary.skippedUserIds]).toEqual([user(1).user_id]);
  });

  it('auto: a duplicate that pushes a real record past total_count / per_page does not hide it (no total_pages)', async () => {
    const pages = [[{ ...user(1), max_risk_level: 'low' }], [user(2)], [user(1, 'high')], []];
    api.fault = (r) => {
      const page = Number(r.query.get('page'));
      return { status: 200, body: { ...success({ users: pages[page - 1] ?? [] }), result_info: { page, per_page: 1, count: 1, total_count: 2 } } };
    };
    const { client } = clientFor(api, { pageConcurrency: 1 });
    const summary = await client.fetchSummary(ACCOUNT);
    expect([...summary.users.keys()]).toEqual([user(2).user_id]);
    expect([...summary.skippedUserIds]).toEqual([user(1).user_id]);
  });

  it('auto: a read that needed an empty page to end counts its pages, so that it is not taken for a snapshot', async () => {
    const pages = [[user(1), user(2)], []];
    api.fault = (r) => {
      const page = Number(r.query.get('page'));
      const rows = pages[page - 1] ?? [];
      return { status: 200, body: { ...success({ users: rows }), result_info: { page, per_page: 2, count: rows.length } } };
    };
    const { client } = clientFor(api, { pageConcurrency: 1 });
    const summary = await client.fetchSummary(ACCOUNT);
    expect(summary.users.size).toBe(2);
    expect(summary.pages).toBe(2);
  });

  it('auto: records naming nobody do not make a repeated page look new', async () => {
    // An API that ignores page, without totals, whose page holds a record with a broken id.
    api.fault = (r) => ({
      status: 200,
      body: { ...success({ users: [user(1), { ...user(2), user_id: 'not-a-uuid' }] }), result_info: { page: Number(r.query.get('page')), per_page: 2, count: 2 } },
    });
    const { client } = clientFor(api, { pageConcurrency: 1 });
    await expect(client.fetchSummary(ACCOUNT)).rejects.toThrow(/page 2 repeated only users of earlier pages: the API ignores paging/);
    expect(summaryRequests()).toHaveLength(2);
  });

  it('auto: an API answering page 2 with page 1 fails the read in one line naming cloudflare.summary_paging', async () => {
    prismExample();
    const { client } = clientFor(api);
    const error = (await client.fetchSummary(ACCOUNT).catch((e: unknown) => e)) as CloudflareError;
    expect(error).toBeInstanceOf(CloudflareError);
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/asked for page \d+ and got page 1: the API ignores paging.*set cloudflare\.summary_paging: off/);
    expect(error.message).not.toContain('\n');
    expect(summaryRequests().length).toBeLessThanOrEqual(5);
  });

  it('off: one request without paging parameters, its answer taken as the whole summary, the disagreeing claim logged once', async () => {
    prismExample();
    const logs = captureLogs();
    const { client } = clientFor(api, { summaryPaging: 'off', log: logs.log });
    for (let i = 0; i < 2; i++) {
      const summary = await client.fetchSummary(ACCOUNT);
      expect([...summary.users.keys()]).toEqual([user(1).user_id]);
      expect(summary.pages).toBe(1);
    }
    expect(summaryRequests()).toHaveLength(2);
    expect(summaryRequests().every((r) => r.query.size === 0)).toBe(true);
    const claims = logs.lines().filter((l) => /summary_paging is off/.test(String(l.msg)));
    expect(claims).toHaveLength(1);
    expect(claims[0]).toMatchObject({ level: 40, users: 1, total_count: 2000, total_pages: 100 });
  });

  it('off: an answer that agrees with its result_info logs nothing', async () => {
    seedUsers(api, 3);
    const logs = captureLogs();
    const { client } = clientFor(api, { summaryPaging: 'off', log: logs.log });
    expect((await client.fetchSummary(ACCOUNT)).users.size).toBe(3);
    expect(logs.lines().filter((l) => (l.level as number) >= 40)).toEqual([]);
  });
});

describe('malformed records are skipped, the rest is used', () => {
  it('skips a record with an unknown level or a missing field, logs and counts it, keeps its id', async () => {
    seedUsers(api, 3);
    const target = api.account(ACCOUNT);
    const badLevel = user(50).user_id;
    const noEmail = user(51).user_id;
    target.users.set(badLevel, { ...user(50), max_risk_level: 'critical' });
    target.users.set(noEmail, { user_id: noEmail, max_risk_level: 'high' });
    target.users.set('no-id', { email: 'x@example.com', max_risk_level: 'high' });
    const logs = captureLogs();
    const skipped: [string, string, number][] = [];
    const { client } = clientFor(api, { log: logs.log, onSkipped: (account, kind, n) => skipped.push([account, kind, n]) });
    const summary = await client.fetchSummary(ACCOUNT);
    expect(summary.users.size).toBe(3);
    expect([...summary.skippedUserIds].sort()).toEqual([badLevel, noEmail].sort());
    expect(summary.unidentifiedSkips).toBe(1);
    expect(skipped).toEqual([[ACCOUNT, 'malformed_user', 3]]);
    const warning = logs.lines().find((l) => l.skipped === 3);
    expect(warning?.msg).toMatch(/skipped 3 malformed user record/);
    expect(String(warning?.examples)).toMatch(/max_risk_level is "critical"/);
  });

  it('takes a user_id that is not a UUID (8-4-4-4-12 hex) as naming nobody, not as a user', async () => {
    const target = api.account(ACCOUNT);
    for (const id of ['not-a-uuid', '../../etc/passwd', '00000000-0000-4000-8000-00000000000g', ` ${user(1).user_id}`]) {
      target.users.set(id, { ...user(1), user_id: id });
    }
    // The schema says format: uuid, not a version: ids without RFC 4122 version bits, in either case, are users.
    const plain = { ...user(2), user_id: 'a169451c-8525-0352-c8ca-070dd449a1a5' };
    const upper = { ...user(3), user_id: 'A169451C-8525-4352-B8CA-070DD449A1A6' };
    target.users.set(plain.user_id, plain);
    target.users.set(upper.user_id, upper);
    const { client } = clientFor(api);
    const summary = await client.fetchSummary(ACCOUNT);
    // A UUID in capitals is the same user as in small letters, and kept so.
    expect([...summary.users.keys()].sort()).toEqual([upper.user_id.toLowerCase(), plain.user_id].sort());
    expect(summary.skippedUserIds.size).toBe(0);
    expect(summary.unidentifiedSkips).toBe(4);
  });

  it('fills optional fields and rejects wrong types', async () => {
    const [a, b, c] = [user(1), user(2), user(3)].map((u) => u.user_id) as [string, string, string];
    api.account(ACCOUNT).users.set(a, { user_id: a, email: 'a@example.com', max_risk_level: 'low' });
    api.account(ACCOUNT).users.set(b, { user_id: b, email: 'b@example.com', max_risk_level: 'low', event_count: -1 });
    api.account(ACCOUNT).users.set(c, { user_id: c, email: 'c@example.com', max_risk_level: 'low', event_count: 1e20 });
    const { client } = clientFor(api);
    const summary = await client.fetchSummary(ACCOUNT);
    expect(summary.users.get(a)).toEqual({ user_id: a, email: 'a@example.com', name: '', event_count: 0, last_event: null, max_risk_level: 'low' });
    expect([...summary.skippedUserIds]).toEqual([b, c]);
  });

  it('keeps only the six fields of a record that carries more, so nothing unknown is stored or announced', async () => {
    const id = user(4).user_id;
    const full = { user_id: id, email: 'd@example.com', name: 'D', event_count: 2, last_event: '2026-11-22T17:00:00Z', max_risk_level: 'high' as const };
    api.account(ACCOUNT).users.set(id, { ...full, internal_note: 'not for Slack' });
    const { client } = clientFor(api);
    const summary = await client.fetchSummary(ACCOUNT);
    expect(summary.users.get(id)).toStrictEqual(full);
  });

  it('makes text every store can hold: a NUL or a lone surrogate becomes U+FFFD; a count past 2^31 stays as it is', async () => {
    const id = user(5).user_id;
    api.account(ACCOUNT).users.set(id, { ...user(5), name: 'Eve\u0000', email: 'e\ud800@example.com', last_event: '2026\u0000', event_count: 3_000_000_000 });
    api.account(ACCOUNT).behaviors.set('imp_travel', { ...behavior('imp_travel'), name: 'Imp\u0000', description: 'x\udc00y' });
    api.account(ACCOUNT).behaviors.set('nul\u0000id', behavior('nul'));
    const { client } = clientFor(api);
    const read = (await client.fetchSummary(ACCOUNT)).users.get(id);
    expect(read).toMatchObject({ name: 'Eve\uFFFD', email: 'e\uFFFD@example.com', last_event: '2026\uFFFD', event_count: 3_000_000_000 });
    const list = await client.fetchBehaviors(ACCOUNT);
    expect(list.behaviors.get('imp_travel')).toMatchObject({ name: 'Imp\uFFFD', description: 'x\uFFFDy' });
    // An id is a key: made storable, two ids could become one, so it is refused.
    expect([...list.skippedIds]).toEqual(['nul\u0000id']);
  });

  it('reads behaviors, skipping a malformed one by id', async () => {
    const target = api.account(ACCOUNT);
    target.behaviors.set('imp_travel', behavior('imp_travel', true, 'high'));
    target.behaviors.set('high_dlp', behavior('high_dlp', false, 'medium'));
    target.behaviors.set('sentinel_one', { name: 'S1', enabled: 'yes', risk_level: 'low' });
    const { client } = clientFor(api);
    const list = await client.fetchBehaviors(ACCOUNT);
    expect([...list.behaviors.keys()]).toEqual(['imp_travel', 'high_dlp']);
    expect(list.behaviors.get('imp_travel')).toEqual(behavior('imp_travel', true, 'high'));
    expect([...list.skippedIds]).toEqual(['sentinel_one']);
  });

  it('reads a user detail with its risk events', async () => {
    const u = user(7, 'high');
    api.account(ACCOUNT).users.set(u.user_id, u);
    api
      .account(ACCOUNT)
      .events.set(u.user_id, [
        { id: 'e1', name: 'Impossible travel', risk_level: 'high', timestamp: '2026-11-22T17:58:00Z' },
        { id: 'e2', name: 'broken', risk_level: 'severe', timestamp: '2026-11-22T17:58:00Z' } as never,
      ]);
    const { client } = clientFor(api);
    const detail = await client.fetchUserDetail(ACCOUNT, u.user_id);
    expect(detail.email).toBe(u.email);
    expect(detail.risk_level).toBe('high');
    expect(detail.events.map((e) => e.id)).toEqual(['e1']);
    expect(api.requests.at(-1)?.path).toBe(`/client/v4/accounts/${ACCOUNT}/zt_risk_scoring/${u.user_id}`);
  });

  it('refuses a result of the wrong shape with a clear error', async () => {
    api.fault = () => ({ status: 200, body: success({ people: [] }) });
    const { client } = clientFor(api);
    await expect(client.fetchSummary(ACCOUNT)).rejects.toThrow(/malformed summary response: result.users is not a list/);
    await expect(client.fetchBehaviors(ACCOUNT)).rejects.toThrow(/malformed behaviors response: result.behaviors is not an object/);
  });
});

describe('the v4 envelope and HTTP errors', () => {
  it('turns success: false under HTTP 200 into an error carrying the codes, not retried', async () => {
    api.fault = () => ({ status: 200, body: failure(1001, 'Risk scoring is not enabled') });
    const { client } = clientFor(api);
    const error = (await client.fetchBehaviors(ACCOUNT).catch((e: unknown) => e)) as CloudflareError;
    expect(error.message).toBe(`GET /accounts/${ACCOUNT}/zt_risk_scoring/behaviors: HTTP 200 with success: false: Risk scoring is not enabled (code 1001)`);
    expect(error.errors).toEqual([{ code: 1001, message: 'Risk scoring is not enabled' }]);
    expect(api.requests).toHaveLength(1);
  });

  it('reports a proxy HTML page with the status and a short excerpt', async () => {
    const html = `<html><head><title>502 Bad Gateway</title></head><body>${'<p>nginx</p>'.repeat(200)}</body></html>`;
    api.fault = () => ({ status: 502, body: html, headers: { 'content-type': 'text/html' } });
    const { client } = clientFor(api);
    const error = (await client.fetchBehaviors(ACCOUNT).catch((e: unknown) => e)) as CloudflareError;
    expect(error.message).toMatch(/HTTP 502, body is not JSON \(text\/html\): "<html><head><title>502 Bad Gateway/);
    expect(error.message.length).toBeLessThan(300);
    expect(error.message).not.toContain('\n');
    expect(error.status).toBe(502);
  });

  it('does not retry a 403, and names the permission the token needs', async () => {
    api.fault = () => ({ status: 403, body: failure(10000, 'Authentication error') });
    const { client } = clientFor(api);
    await expect(client.fetchSummary(ACCOUNT)).rejects.toThrow(/HTTP 403: Authentication error \(code 10000\); the credential needs the "Zero Trust: PII Read" permission/);
    await expect(client.fetchBehaviors(ACCOUNT)).rejects.toThrow(/"Zero Trust Read" permission/);
    expect(api.requests).toHaveLength(2);
  });

  it('retries 5xx with growing, jittered backoff, then surfaces the error', async () => {
    api.fault = () => ({ status: 503 });
    const { client, clock } = clientFor(api, { retry: { attempts: 4, baseDelayMs: 1000, maxDelayMs: 30_000, maxWaitMs: 60_000 } });
    await expect(client.fetchBehaviors(ACCOUNT)).rejects.toThrow(/HTTP 503/);
    expect(api.requests).toHaveLength(4);
    // random() is 0.5: each wait is three quarters of 1 s, 2 s, 4 s.
    expect(clock.sleeps).toEqual([750, 1500, 3000]);
  });

  it('honours Retry-After on a 429 and holds the whole credential back', async () => {
    let refused = false;
    api.account(ACCOUNT).behaviors.set('imp_travel', behavior('imp_travel'));
    api.fault = () => {
      if (refused) return undefined;
      refused = true;
      return { status: 429, body: failure(971, 'Please wait and consider throttling your request speed'), headers: { 'retry-after': '7' } };
    };
    const { client, clock, budget } = clientFor(api);
    const start = clock.now();
    const list = await client.fetchBehaviors(ACCOUNT);
    expect(list.behaviors.size).toBe(1);
    expect(clock.sleeps[0]).toBe(7000);
    expect(budget.blockedUntil).toBe(start + 7000);
    expect(clock.now() - start).toBeGreaterThanOrEqual(7000);
  });

  it('gives up at once when Retry-After is longer than it may wait, leaving the credential blocked', async () => {
    api.fault = () => ({ status: 429, headers: { 'retry-after': '300' } });
    const { client, clock, budget } = clientFor(api, { retry: { attempts: 4, baseDelayMs: 1000, maxDelayMs: 30_000, maxWaitMs: 60_000 } });
    await expect(client.fetchBehaviors(ACCOUNT)).rejects.toThrow(/HTTP 429/);
    expect(api.requests).toHaveLength(1);
    expect(budget.blockedUntil).toBe(clock.now() + 300_000);
  });

  it('slows down when x-ratelimit-remaining runs low', async () => {
    api.fault = () => ({ status: 200, body: success({ behaviors: {} }), headers: { 'x-ratelimit-limit': '1200', 'x-ratelimit-remaining': '12' } });
    const { client, clock } = clientFor(api);
    await client.fetchBehaviors(ACCOUNT);
    await client.fetchBehaviors(ACCOUNT);
    // 12 left of 1200: ten times the even spacing of 250 ms.
    expect(clock.sleeps).toEqual([2500]);
  });
});

describe('authentication', () => {
  it('sends Authorization: Bearer for an API token, and nothing else', async () => {
    const { client } = clientFor(api);
    await client.fetchBehaviors(ACCOUNT).catch(() => {});
    const headers = api.requests[0]!.headers;
    expect(headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(headers['x-auth-email']).toBeUndefined();
    expect(headers['x-auth-key']).toBeUndefined();
    expect(headers['user-agent']).toMatch(/^riskwatch\/\d+\.\d+\.\d+$/);
  });

  it('sends X-Auth-Email and X-Auth-Key for a global key, and no Authorization', async () => {
    await api.close();
    api = await FakeRiskApi.start({ auth: { email: 'admin@example.com', key: 'global-key-123' } });
    api.account(ACCOUNT);
    const { client } = clientFor(api, { credential: { scheme: 'key', id: 'cred-key', email: 'admin@example.com', key: new Secret('global-key-123') } });
    await client.fetchBehaviors(ACCOUNT);
    const headers = api.requests[0]!.headers;
    expect(headers['x-auth-email']).toBe('admin@example.com');
    expect(headers['x-auth-key']).toBe('global-key-123');
    expect(headers.authorization).toBeUndefined();
  });

  it('never puts the credential in an error message', async () => {
    api.fault = () => ({ status: 401, body: failure(10001, 'Unable to authenticate request') });
    const { client } = clientFor(api);
    const error = (await client.fetchSummary(ACCOUNT).catch((e: unknown) => e)) as Error;
    expect(error.message).not.toContain(TOKEN);
  });
});

describe('the transport: timeouts and resets are retried, then surfaced', () => {
  it('times out a response that never comes', async () => {
    api.fault = () => ({ hang: true });
    const { client } = clientFor(api, { timeoutMs: 150, retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 10, maxWaitMs: 1000 } });
    await expect(client.fetchBehaviors(ACCOUNT)).rejects.toThrow(/timed out after 150 ms/);
    expect(api.requests).toHaveLength(2);
  });

  it('retries a connection reset and succeeds when the server recovers', async () => {
    api.account(ACCOUNT).behaviors.set('imp_travel', behavior('imp_travel'));
    let resets = 2;
    api.fault = () => (resets-- > 0 ? { reset: true } : undefined);
    const { client } = clientFor(api);
    const list = await client.fetchBehaviors(ACCOUNT);
    expect(list.behaviors.size).toBe(1);
    expect(api.requests).toHaveLength(3);
  });

  it('surfaces a reset that persists as one line naming the call', async () => {
    api.fault = () => ({ reset: true });
    const { client } = clientFor(api, { retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 10, maxWaitMs: 1000 } });
    const error = (await client.fetchBehaviors(ACCOUNT).catch((e: unknown) => e)) as CloudflareError;
    expect(error).toBeInstanceOf(CloudflareError);
    expect(error.message).toMatch(/^GET \/accounts\/.*\/behaviors: /);
    expect(error.message).not.toContain('\n');
  });

  it('stops at once when the caller aborts', async () => {
    api.fault = () => ({ hang: true });
    const { client } = clientFor(api);
    const stop = new AbortController();
    const pending = client.fetchBehaviors(ACCOUNT, stop.signal);
    setTimeout(() => stop.abort(new Error('shutting down')), 20);
    await expect(pending).rejects.toThrow('shutting down');
  });
});

describe('the request budget is shared by the accounts of a credential', () => {
  it('never exceeds the budget in a window and lets both accounts take turns', async () => {
    seedUsers(api, 30, ACCOUNT);
    seedUsers(api, 30, OTHER_ACCOUNT);
    await api.close();
    api = await FakeRiskApi.start({ maxPerPage: 10 });
    seedUsers(api, 30, ACCOUNT);
    seedUsers(api, 30, OTHER_ACCOUNT);
    const clock = new FakeClock();
    const budget = new RequestBudget(4, clock);
    const start = clock.now();
    const grantTimes: number[] = [];
    const acquire = budget.acquire.bind(budget);
    budget.acquire = async (signal) => {
      await acquire(signal);
      grantTimes.push(clock.now() - start);
    };
    const a = clientFor(api, { clock, budget, pageConcurrency: 1 });
    const b = clientFor(api, { clock, budget, pageConcurrency: 1 });
    const [sa, sb] = await Promise.all([a.client.fetchSummary(ACCOUNT), b.client.fetchSummary(OTHER_ACCOUNT)]);
    expect(sa.users.size).toBe(30);
    expect(sb.users.size).toBe(30);
    // 6 requests, 4 per 5 minutes: the first four at once, the last two a window later.
    expect(grantTimes.slice(0, 4).every((t) => t === 0)).toBe(true);
    expect(grantTimes.slice(4).every((t) => t >= 300_000)).toBe(true);
    // The accounts share the window instead of one draining it.
    expect(api.requests.slice(0, 4).filter((r) => r.accountId === ACCOUNT)).toHaveLength(2);
  });
});
