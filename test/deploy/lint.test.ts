import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, type TempDir } from '../support/config-files.ts';
import { REPO } from '../support/process.ts';

/**
 * `npm test` runs `biome ci` over the tree (issue 29): these check that the
 * project's biome.json refuses what it is there to refuse. Each probe is a
 * file of its own in a temp dir, checked with a copy of the project's config.
 */

const BIOME = path.join(REPO, 'node_modules', '.bin', 'biome');
let tmp: TempDir;

beforeAll(() => {
  tmp = makeTempDir();
  // The project's config as it is, but for what ties it to the clone: its git ignore file and schema path.
  const config = JSON.parse(fs.readFileSync(path.join(REPO, 'biome.json'), 'utf8')) as Record<string, unknown>;
  tmp.write('biome.json', JSON.stringify({ ...config, $schema: undefined, vcs: { enabled: false } }));
});
afterAll(() => tmp.remove());

function ci(name: string, source: string): { code: number | null; output: string } {
  tmp.write(name, source);
  const result = spawnSync(BIOME, ['ci', '--colors=off', name], { cwd: tmp.dir, encoding: 'utf8' });
  return { code: result.status, output: `${result.stdout}${result.stderr}` };
}

describe('biome ci (part of npm test) refuses', () => {
  it.each([
    ['a floating promise', 'async function send(): Promise<void> {}\nexport function poll(): void {\n  send();\n}\n', 'lint/nursery/noFloatingPromises'],
    [
      'a promise where a condition belongs',
      'async function ready(): Promise<boolean> {\n  return true;\n}\nexport function poll(): number {\n  if (ready()) return 1;\n  return 0;\n}\n',
      'lint/nursery/noMisusedPromises',
    ],
    [
      'a switch over event types that misses one',
      "type EventType = 'user.risk_level_raised' | 'behavior.disabled';\nexport function title(type: EventType): string {\n  switch (type) {\n    case 'user.risk_level_raised':\n      return 'up';\n  }\n  return '';\n}\n",
      'lint/nursery/useExhaustiveSwitchCases',
    ],
    ['an unformatted file', 'export const name = "riskwatch"\n', 'format'],
  ])('%s', (_what, source, named) => {
    const result = ci(`probe-${named.replace(/\W/g, '-')}.ts`, source);
    expect(result.code, result.output).toBe(1);
    expect(result.output).toContain(named);
  });

  it('and passes a file that does none of that', () => {
    const result = ci('fine.ts', 'async function send(): Promise<void> {}\nexport async function poll(): Promise<void> {\n  await send();\n}\n');
    expect(result.code, result.output).toBe(0);
  });
});
