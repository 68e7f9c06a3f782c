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
const directives = new Map(text.split('\n').flatMap((line) => (/^[A-Z]\w*=/.test(line) ? [[line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const] : [])));
const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).status === 0;
if (!analyze) console.warn('systemd-analyze not found: the systemd unit is not verified here');

describe('the systemd unit', () => {
  it('runs bin/riskwatch (riskwatch itself), reloads with SIGHUP, gives up on exit 2', () => {
    expect(directives.get('ExecStart')).toBe('/opt/riskwatch/bin/riskwatch run');
    expect(directives.get('ExecReload')).toBe('/bin/kill -HUP $MAINPID');
    expect(directives.get('RestartPreventExitStatus')).toBe('2');
  });

  it('gives the state a directory of its own (StateDirectory=, made for the service user) and names an absolute state file in it', () => {
    expect(directives.get('StateDirectory')).toBe('riskwatch');
    expect(directives.get('WorkingDirectory')).toBe('/var/lib/riskwatch');
    // ProtectSystem=strict leaves /etc/riskwatch read-only: a state file beside the config (the default) could not be written.
    expect(directives.get('ProtectSystem')).toBe('strict');
    expect(text).toMatch(/^# .*`state: \{ sqlite: \/var\/lib\/riskwatch\/riskwatch\.db \}`/m);
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
