import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

/**
 * Compares `actual` with a golden file; with RISKWATCH_UPDATE_GOLDEN=1 it
 * writes the file instead. A golden file is reviewed like code: a change to a
 * payload shows in the diff.
 */
export function expectGolden(file: URL, actual: string): void {
  const path = fileURLToPath(file);
  if (process.env.RISKWATCH_UPDATE_GOLDEN === '1') {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, actual);
    return;
  }
  if (!existsSync(path)) throw new Error(`no golden file ${path}: run the test with RISKWATCH_UPDATE_GOLDEN=1 to write it, then review it`);
  expect(actual, `differs from ${path} (RISKWATCH_UPDATE_GOLDEN=1 rewrites it)`).toBe(readFileSync(path, 'utf8'));
}
