import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LEVEL_RANK, RISK_LEVELS, type RiskLevel } from '../../src/model.ts';
import { FakeRiskApi } from '../../src/simulator/fake-api.ts';
import { type Announcement, checkAnnouncements, fromWebhook } from '../support/announcements.ts';
import { ACCOUNT, user } from '../support/cloudflare.ts';
import { FakePagerDuty } from '../support/fakes/pagerduty.ts';
import { spawnRiskwatch } from '../support/process.ts';
import { Receiver } from '../support/receiver.ts';
import { mulberry32 } from '../support/random.ts';

/**
 * SPEC §6 against the real process: `kill -9` at random moments while users
 * rise (and some of those at high leave the summary), then restart. Every
 * rise must come out, none under two event ids, none that did not happen; and
 * PagerDuty gets, per user, triggers then the resolve, under one dedup key.
 */

let api: FakeRiskApi;
let dir: string;
let configFile: string;
let receiver: Receiver;
let pagerduty: FakePagerDuty;
const ROUTING_KEY = 'crashtestroutingkey0000000000042';

beforeAll(async () => {
  api = await FakeRiskApi.start({ maxPerPage: 25 });
  receiver = await Receiver.start();
  pagerduty = await FakePagerDuty.start();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-crash-'));
  configFile = path.join(dir, 'riskwatch.yaml');
  fs.writeFileSync(
    configFile,
    [
      'cloudflare:',
      `  api_base_url: ${api.baseUrl}`,
      '  api_token: test-token',
      'accounts:',
      `  - id: ${ACCOUNT}`,
      '    name: production',
      'poll_interval: 1s',
      'first_run: notify',
      'state:',
      '  sqlite: ./state.db',
      'sinks:',
      '  - name: out',
      '    type: console',
      '  - name: hook',
      '    type: webhook',
      `    url: ${receiver.url('/hook')}`,
      '  - name: oncall',
      '    type: pagerduty',
      `    routing_key: ${ROUTING_KEY}`,
      `    url: ${pagerduty.url}`,
      'http:',
      '  listen: 127.0.0.1:0',
      'log:',
      '  level: warn',
    ].join('\n'),
  );
});

afterAll(async () => {
  await api.close();
  await receiver.close();
  await pagerduty.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A console line of a raised user: `<ts> [production] user.risk_level_raised Name <email> low -> high (event <id>)`. */
const RAISED = /^\S+ \[production\] user\.risk_level_raised .*<(\S+)> (\w+) -> (\w+) \(event ([0-9a-f-]{36})\)$/;

function fromConsole(lines: readonly string[]): Announcement[] {
  return lines.flatMap((line) => {
    const m = RAISED.exec(line);
    return m ? [{ email: m[1]!, from: m[2]!, to: m[3]!, id: m[4]! }] : [];
  });
}

describe('kill -9 at random moments loses nothing and announces nothing twice under two ids', () => {
  it('delivers every rise across many crashes, to the console and to a flapping webhook receiver', { timeout: 150_000 + 4_000 * Number(process.env.RISKWATCH_CRASH_ROUNDS ?? 0) }, async () => {
    const seed = Number(process.env.RISKWATCH_CRASH_SEED ?? Date.now() % 100_000);
    const random = mulberry32(seed);
    const levels = new Map<string, RiskLevel>();
    let nextUser = 1;
    const target = api.account(ACCOUNT);
    const setLevel = (n: number, level: RiskLevel) => {
      const u = { ...user(n), max_risk_level: level };
      target.users.set(u.user_id, u);
      levels.set(u.email, level);
    };
    const keyOf = (n: number) => `riskwatch/${ACCOUNT}/user/${user(n).user_id}`;
    /** Users at high who left the summary (an admin reset them); they never come back. */
    const departed = new Set<number>();
    /**
     * New users appear at low; some existing ones rise one step; some at high leave. Levels
     * only ever rise while a user is listed (console and webhook get rises only, without
     * notify.lowered), and `levels` keeps the highest each reached.
     */
    const rise = () => {
      for (let i = 0; i < 3; i++) setLevel(nextUser++, 'low');
      for (let n = 1; n < nextUser; n++) {
        if (departed.has(n)) continue;
        const level = levels.get(user(n).email)!;
        // Only once both sinks showed they were read at high: a user who rose and left between two
        // polls was never high to riskwatch (and the console and webhook never hear of drops).
        if (level === 'high' && random() < 0.15 && pagerduty.isOpen(keyOf(n), ROUTING_KEY) && fromWebhook(receiver.accepted).some((a) => a.email === user(n).email && a.to === 'high')) {
          target.users.delete(user(n).user_id);
          departed.add(n);
        } else if (level !== 'high' && random() < 0.3) setLevel(n, RISK_LEVELS[LEVEL_RANK[level]]!);
      }
    };
    // While the rounds run, the receivers flap: refusals, resets, accepted-then-slow answers.
    const flap = () => {
      const roll = random();
      return roll < 0.2 ? { status: 503 } : roll < 0.25 ? { reset: true as const } : undefined;
    };
    receiver.answer = () => flap() ?? { status: 200, body: 'ok', delayMs: random() < 0.1 ? 150 : 0 };
    pagerduty.intercept = flap;

    const output: string[] = [];
    // `npm run soak` runs many more rounds.
    const rounds = Number(process.env.RISKWATCH_CRASH_ROUNDS ?? 8);
    for (let round = 0; round < rounds; round++) {
      const proc = spawnRiskwatch(['run', '--config', configFile]);
      rise();
      await delay(200 + random() * 1200);
      rise();
      await delay(random() * 1200);
      proc.child.kill('SIGKILL');
      expect(await proc.exited).toBe('SIGKILL');
      output.push(...proc.stdout);
    }

    // A last, clean run against a healthy receiver, with one more rise so that it always has
    // something to say: wait until every user's current level reached both sinks.
    receiver.answer = () => ({ status: 200, body: 'ok' });
    pagerduty.intercept = undefined;
    rise();
    const final = spawnRiskwatch(['run', '--config', configFile]);
    const reached = (announcements: readonly Announcement[]) => {
      const top = new Map<string, RiskLevel | 'none'>();
      for (const a of announcements) if (LEVEL_RANK[a.to as RiskLevel] > LEVEL_RANK[top.get(a.email) ?? 'none']) top.set(a.email, a.to as RiskLevel);
      return [...levels].every(([email, level]) => top.get(email) === level);
    };
    const deadline = Date.now() + 60_000;
    // PagerDuty: an incident open for each user at high now, none for those who left.
    const everHigh = () => [...levels].flatMap(([email, level]) => (level === 'high' ? [Number(/(\d+)@/.exec(email)?.[1] ?? NaN)] : []));
    const incidentsSettled = () => {
      const open = new Set(pagerduty.openIncidents(ROUTING_KEY).map((i) => i.dedupKey));
      return everHigh().every((n) => open.has(keyOf(n)) !== departed.has(n)) && open.size === everHigh().filter((n) => !departed.has(n)).length;
    };
    while (!(reached(fromConsole([...output, ...final.stdout])) && reached(fromWebhook(receiver.accepted)) && incidentsSettled())) {
      if (Date.now() > deadline) throw new Error(`seed ${seed}: not every rise arrived within 60 s of the last start`);
      await delay(100);
    }
    final.child.kill('SIGTERM');
    expect(await final.exited).toBe(0);
    output.push(...final.stdout);

    const onConsole = checkAnnouncements('console', fromConsole(output), levels, seed);
    // Nothing lost: counted on what the receiver accepted. Never two ids: counted on everything it saw.
    const onWebhook = checkAnnouncements('webhook', fromWebhook(receiver.accepted), levels, seed);
    checkAnnouncements('webhook (all attempts)', fromWebhook(receiver.requests), levels, seed);
    // Per user, PagerDuty saw triggers and then (once they left) the resolve: never a resolve
    // before the first trigger, never a trigger after the resolve.
    let resolved = 0;
    for (const n of everHigh()) {
      const actions = pagerduty.events.filter((e) => e.dedupKey === keyOf(n)).map((e) => e.action);
      expect(actions[0], `seed ${seed}: user ${n}'s first PagerDuty event`).toBe('trigger');
      const firstResolve = actions.indexOf('resolve');
      if (departed.has(n)) {
        expect(firstResolve, `seed ${seed}: user ${n} left but was never resolved`).toBeGreaterThan(0);
        expect(
          actions.slice(firstResolve).every((a) => a === 'resolve'),
          `seed ${seed}: user ${n}: ${actions.join(', ')}`,
        ).toBe(true);
        resolved++;
      } else {
        expect(firstResolve, `seed ${seed}: user ${n} is still high but was resolved`).toBe(-1);
      }
    }
    expect(pagerduty.events.every((e) => e.routingKey === ROUTING_KEY)).toBe(true);
    console.info(`crash test (seed ${seed}): PagerDuty ${everHigh().length} incidents opened, ${resolved} resolved on the drop, in order;`);
    console.info(
      `crash test (seed ${seed}): ${rounds} kill -9 rounds, ${levels.size} users, ${onConsole.transitions} transitions checked on the console and ${onWebhook.transitions} on a flapping webhook; 0 lost, 0 under two ids; re-sent under the same id: ${onConsole.duplicates} console, ${onWebhook.duplicates} webhook`,
    );
  });
});
