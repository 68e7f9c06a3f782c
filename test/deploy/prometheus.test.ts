import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/daemon/metrics.ts';

/**
 * deploy/: the alerting rules pass `promtool check rules` and their unit tests
 * (`promtool test rules`), and the rules and the Grafana dashboard name only
 * metrics riskwatch exports. promtool comes from Debian's `prometheus`
 * package (.ci/run installs it); without it the promtool tests are skipped,
 * saying so, except in CI, where they fail.
 */

const DEPLOY = path.resolve(import.meta.dirname, '../../deploy');
const RULES = path.join(DEPLOY, 'prometheus/riskwatch.rules.yml');
const RULE_TESTS = path.join(DEPLOY, 'prometheus/riskwatch.rules.test.yml');
const DASHBOARD = path.join(DEPLOY, 'grafana/riskwatch.json');

const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;
if (!promtool && process.env.CI) throw new Error('promtool is not installed (Debian: apt-get install prometheus); CI must check the alerting rules');
if (!promtool) console.warn('promtool not found: the alerting rules are not checked here (Debian: apt-get install prometheus)');

function run(...args: string[]): void {
  const result = spawnSync('promtool', args, { encoding: 'utf8', cwd: path.dirname(RULES) });
  expect(result.status, `promtool ${args.join(' ')}\n${result.stdout}${result.stderr}`).toBe(0);
}

describe.skipIf(!promtool)('the alerting rules', () => {
  it('pass promtool check rules', () => run('check', 'rules', RULES));
  it('pass their unit tests (each alert fires when it should, and not otherwise)', () => run('test', 'rules', RULE_TESTS));
});

describe('deploy/ names only metrics riskwatch exports', () => {
  it('every riskwatch_* name in the rules and the dashboard is registered', async () => {
    const exported = new Set((await new Metrics().registry.getMetricsAsJSON()).map((m) => m.name));
    const used = new Set<string>();
    for (const file of [RULES, RULE_TESTS, DASHBOARD]) for (const [name] of fs.readFileSync(file, 'utf8').matchAll(/riskwatch_[a-z_]+/g)) used.add(name);
    const unknown = [...used].filter((name) => !exported.has(name) && !exported.has(name.replace(/_(bucket|count|sum)$/, '')));
    expect(unknown).toEqual([]);
    expect(used.size).toBeGreaterThan(8);
  });

  it('the dashboard is JSON with the panels an operator looks for', () => {
    const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as { panels: { title: string }[]; templating: { list: { name: string }[] } };
    expect(dashboard.panels.map((p) => p.title)).toEqual(
      expect.arrayContaining(['Users per level (who is at risk, over time)', 'Events by type', 'Deliveries by outcome', 'Pending and dead-lettered deliveries per sink', 'Poll duration']),
    );
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(['datasource', 'account']);
  });
});
