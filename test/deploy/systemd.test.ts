import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../support/process.ts';

/**
 * deploy/systemd/riskwatch.service: `systemd-analyze verify` accepts it (with
 * its /opt/riskwatch pointed at this checkout, so that ExecStart exists), and
 * it starts the one entry point, reloads with SIGHUP and does not restart on
 * exit 2. Skipped, saying so, where systemd-analyze is not installed.
 */

const UNIT = path.join(REPO, 'deploy/systemd/riskwatch.service');
const text = fs.readFileSync(UNIT, 'utf8');
const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).status === 0;
if (!analyze) console.warn('systemd-analyze not found: the systemd unit is not verified here');

describe('the systemd unit', () => {
  it('runs bin/riskwatch (riskwatch itself), reloads with SIGHUP, gives up on exit 2', () => {
    const directives = new Map(text.split('\n').flatMap((line) => (/^[A-Z]\w*=/.test(line) ? [[line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const] : [])));
    expect(directives.get('ExecStart')).toBe('/opt/riskwatch/bin/riskwatch run');
    expect(directives.get('ExecReload')).toBe('/bin/kill -HUP $MAINPID');
    expect(directives.get('RestartPreventExitStatus')).toBe('2');
  });

  it.skipIf(!analyze)('passes systemd-analyze verify', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-systemd-'));
    try {
      const unit = path.join(dir, 'riskwatch.service');
      fs.writeFileSync(unit, text.replaceAll('/opt/riskwatch', REPO));
      const result = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', env: { ...process.env, SYSTEMD_LOG_LEVEL: 'warning' } });
      const complaints = `${result.stdout}${result.stderr}`.split('\n').filter((line) => line.includes('riskwatch.service'));
      expect({ status: result.status, complaints }).toEqual({ status: 0, complaints: [] });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
