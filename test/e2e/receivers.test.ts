import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeRiskApi } from '../../src/simulator/fake-api.ts';
import { ACCOUNT, user } from '../support/cloudflare.ts';
import { writeDaemonConfig } from '../support/daemon-config.ts';
import { FakeOpsgenie } from '../support/fakes/opsgenie.ts';
import { FakePagerDuty } from '../support/fakes/pagerduty.ts';
import { FakeSmtp } from '../support/fakes/smtp.ts';
import { FakeTeams } from '../support/fakes/teams.ts';
import { spawnRiskwatch } from '../support/process.ts';
import { until } from '../support/until.ts';

/**
 * Issue 15's "done when", against the real process: a storm of 300 rises
 * reaches PagerDuty as 300 triggers under 300 keys through a run of 429s,
 * Opsgenie as 300 alerts, Teams as one card within 20,000 bytes, email as one
 * message; every incident opened is resolved when its user drops; a 400 from
 * PagerDuty is dead-lettered after one attempt; test-sinks passes against
 * each fake; no credential appears in any output.
 */

const ROUTING_KEY = 'R0UT1NGKEYe2estormpagerduty00042';
const GENIE_KEY = 'genie-e2e-key-5d8a0c';
const SMTP_PASSWORD = 'smtp-e2e-password-71';
const STORM = 300;

let api: FakeRiskApi;
let pagerduty: FakePagerDuty;
let opsgenie: FakeOpsgenie;
let teams: FakeTeams;
let smtp: FakeSmtp;
let dir: string;
let configFile: string;

beforeAll(async () => {
  [api, pagerduty, opsgenie, teams, smtp] = await Promise.all([
    FakeRiskApi.start(),
    FakePagerDuty.start(),
    FakeOpsgenie.start({ apiKey: GENIE_KEY }),
    FakeTeams.start(),
    FakeSmtp.start({ auth: { user: 'mailer', pass: SMTP_PASSWORD } }),
  ]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-receivers-'));
  configFile = writeDaemonConfig(path.join(dir, 'riskwatch.yaml'), {
    apiBaseUrl: api.baseUrl,
    pollInterval: '1s',
    logLevel: 'info',
    sinks: `  - name: oncall
    type: pagerduty
    routing_key: \${PD_ROUTING_KEY}
    url: ${pagerduty.url}
  - name: genie
    type: opsgenie
    api_key: \${GENIE_KEY}
    url: ${opsgenie.url}
  - name: channel
    type: teams
    url: \${TEAMS_URL}
  - name: mail
    type: email
    smtp: \${SMTP_URL}
    from: riskwatch@example.com
    to: [secops@example.com, oncall@example.com]
`,
  });
});

afterAll(async () => {
  await Promise.all([api.close(), pagerduty.close(), opsgenie.close(), teams.close(), smtp.close()]);
  fs.rmSync(dir, { recursive: true, force: true });
});

const env = () => ({
  CF_TOKEN: 'cf-e2e-token',
  PD_ROUTING_KEY: ROUTING_KEY,
  GENIE_KEY,
  TEAMS_URL: teams.webhookUrl,
  SMTP_URL: smtp.url({ user: 'mailer', pass: SMTP_PASSWORD }),
});
/** Every credential: spawnRiskwatch fails the test if any of them is printed. */
const secrets = () => [ROUTING_KEY, GENIE_KEY, teams.sig, SMTP_PASSWORD];

function deliveries(sink: string): { state: string; attempts: number; last_error: string | null }[] {
  const db = new DatabaseSync(path.join(dir, 'state.db'), { readOnly: true });
  try {
    return db.prepare('SELECT state, attempts, last_error FROM deliveries WHERE sink = ? ORDER BY id').all(sink) as never;
  } finally {
    db.close();
  }
}

const userKey = (n: number) => `riskwatch/${ACCOUNT}/user/${user(n).user_id}`;

describe('a storm of 300 rises, then their drops, through the four receivers', () => {
  it('opens 300 incidents under 300 keys through 429s, one card, one mail; resolves every one on the drop', { timeout: 180_000 }, async () => {
    const account = api.account(ACCOUNT);
    account.users.set(user(0).user_id, { ...user(0), max_risk_level: 'low' });
    const baseline = spawnRiskwatch(['once', '--config', configFile], env(), secrets());
    expect(await baseline.exited).toBe(0);
    const proc = spawnRiskwatch(['run', '--config', configFile], env(), secrets());
    try {
      // PagerDuty rate-limits the first 40 events; everything else is open.
      pagerduty.failNext(40, {
        status: 429,
        headers: { 'retry-after': '1', 'content-type': 'application/json' },
        body: '{"status":"throttle event","message":"Requests for this service are arriving too quickly."}',
      });
      for (let n = 1; n <= STORM; n++) account.users.set(user(n).user_id, { ...user(n), max_risk_level: 'high' });

      await until('300 incidents in PagerDuty and Opsgenie', () => pagerduty.openIncidents().length === STORM && opsgenie.openAlerts().length === STORM, 90_000);
      const triggers = pagerduty.events.filter((e) => e.action === 'trigger');
      expect(new Set(triggers.map((e) => e.dedupKey)).size).toBe(STORM);
      expect(new Set(triggers.map((e) => e.dedupKey))).toEqual(new Set(Array.from({ length: STORM }, (_, i) => userKey(i + 1))));
      expect(triggers.every((e) => e.routingKey === ROUTING_KEY && e.payload?.severity === 'critical')).toBe(true);
      expect(pagerduty.requests.length).toBeGreaterThanOrEqual(STORM + 40);
      expect(new Set(opsgenie.openAlerts().map((a) => a.alias))).toEqual(new Set(Array.from({ length: STORM }, (_, i) => userKey(i + 1))));

      await until('the Teams card and the mail', () => teams.delivered.length >= 1 && smtp.messages.length >= 1, 90_000);
      expect(teams.delivered).toHaveLength(1);
      expect(teams.delivered[0]!.bytes).toBeLessThanOrEqual(20_000);
      expect(JSON.stringify(teams.delivered[0]!.payload)).toMatch(/…and \d+ more/);
      expect(smtp.messages).toHaveLength(1);
      expect(smtp.messages[0]!.parsed.subject).toBe('[riskwatch] production: 300 users raised (300 to high)');
      expect([...smtp.messages[0]!.envelope.to].sort()).toEqual(['oncall@example.com', 'secops@example.com']);

      // The drops: half lowered to low, half reset out of the summary. PagerDuty refuses the first
      // request of that burst with a 400, which is dead-lettered after one attempt.
      pagerduty.failNext(1, { status: 400, headers: { 'content-type': 'application/json' }, body: '{"status":"invalid event","message":"Event object is invalid","errors":["forced by the test"]}' });
      for (let n = 1; n <= STORM; n++) {
        if (n % 2 === 0) account.users.delete(user(n).user_id);
        else account.users.set(user(n).user_id, { ...user(n), max_risk_level: 'low' });
      }
      await until('every Opsgenie alert closed', () => opsgenie.openAlerts().length === 0, 90_000);
      await until('every PagerDuty incident but the refused one resolved', () => pagerduty.openIncidents().length === 1, 90_000);

      const dead = deliveries('oncall').filter((d) => d.state === 'dead');
      expect(dead).toHaveLength(1);
      expect(dead[0]).toMatchObject({ attempts: 1 });
      expect(dead[0]!.last_error).toMatch(/HTTP 400 \(permanent\).*forced by the test/);
      // Resolves came after their triggers, under the same key.
      for (const incident of pagerduty.incidents) {
        const actions = pagerduty.events.filter((e) => e.dedupKey === incident.dedupKey).map((e) => e.action);
        expect(actions[0]).toBe('trigger');
        expect(actions.lastIndexOf('trigger')).toBeLessThan(actions.indexOf('resolve') === -1 ? Infinity : actions.indexOf('resolve'));
      }
      // Chat and mail sinks are not told of drops without notify.lowered.
      expect(teams.delivered).toHaveLength(1);
      expect(smtp.messages).toHaveLength(1);
    } finally {
      proc.child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
    }
  });
});

describe('test-sinks against each fake', () => {
  it('passes for all four, pages nobody and leaves nothing open', { timeout: 60_000 }, async () => {
    const openBefore = pagerduty.openIncidents().length;
    const proc = spawnRiskwatch(['test-sinks', '--config', configFile], env(), secrets());
    expect(await proc.exited).toBe(0);
    expect(proc.stdout).toEqual(expect.arrayContaining(['oncall (pagerduty): accepted', 'genie (opsgenie): accepted', 'channel (teams): accepted', 'mail (email): accepted']));
    expect(pagerduty.changes.at(-1)?.payload.summary).toMatch(/riskwatch test notification for sink oncall/);
    expect(pagerduty.openIncidents()).toHaveLength(openBefore);
    expect(opsgenie.openAlerts()).toHaveLength(0);
  });

  it('--sample: a marked sample alert to Teams and email; none to PagerDuty or Opsgenie, where it would page', { timeout: 60_000 }, async () => {
    const before = { pd: pagerduty.events.length, genie: opsgenie.calls.length, teams: teams.delivered.length, mail: smtp.messages.length };
    const proc = spawnRiskwatch(['test-sinks', '--sample', '--config', configFile], env(), secrets());
    expect(await proc.exited).toBe(0);
    expect(proc.stdout).toEqual(
      expect.arrayContaining([
        'oncall (pagerduty): no sample sent: it would page the on-call (test-sinks without --sample proves the key)',
        'genie (opsgenie): no sample sent: it would page the on-call (test-sinks without --sample proves the key)',
        'channel (teams): sample accepted',
        'mail (email): sample accepted',
      ]),
    );
    expect([pagerduty.events.length, opsgenie.calls.length]).toEqual([before.pd, before.genie]);
    expect(JSON.stringify(teams.delivered.slice(before.teams).map((d) => d.card))).toContain('riskwatch sample alert, not a real one');
    expect(smtp.messages.slice(before.mail).map((m) => m.parsed.subject)).toEqual([expect.stringContaining('1 user raised (1 to high), 1 behavior disabled')]);
  });
});
