import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../support/process.ts';

/**
 * The Dockerfile, read (no Docker engine here): every COPY from the build
 * context names something .dockerignore lets in (else `docker build` stops
 * with "not found"), and the entry point is bin/riskwatch under tini.
 */

const dockerfile = fs.readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
const ignore = fs
  .readFileSync(path.join(REPO, '.dockerignore'), 'utf8')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'));

/** Whether .dockerignore sends `source` (a path in the context) to the build: its last matching rule decides. */
function inContext(source: string): boolean {
  let included = true;
  for (const rule of ignore) {
    const negated = rule.startsWith('!');
    const pattern = (negated ? rule.slice(1) : rule).replace(/\/$/, '');
    if (pattern === '*' || pattern === source || source.startsWith(`${pattern}/`)) included = negated;
  }
  return included;
}

describe('the Dockerfile', () => {
  it('copies only what .dockerignore lets into the build context, and each exists', () => {
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/).slice(0, -1));
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) {
      const name = source.replace(/^\.\//, '').replace(/\/$/, '');
      expect(inContext(name), `${source} is left out by .dockerignore`).toBe(true);
      expect(fs.existsSync(path.join(REPO, name)), `${source} does not exist`).toBe(true);
    }
    expect(inContext('test')).toBe(false);
    expect(inContext('node_modules')).toBe(false);
  });

  it('runs bin/riskwatch under tini', () => {
    expect(dockerfile).toMatch(/^ENTRYPOINT \["\/usr\/bin\/tini", "--", "\/app\/bin\/riskwatch"\]$/m);
    expect(dockerfile).toMatch(/^COPY bin \.\/bin$/m);
  });
});
