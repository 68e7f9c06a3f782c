import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION, SqliteStore, type SqliteStoreOptions } from '../../src/store/sqlite.ts';
import { StateError } from '../../src/store/store.ts';
import { REPO } from '../support/process.ts';
import { ACCOUNT, behavior, delta, makeStateDir, planned, pollCommit, riskUser, sqliteWrites, type StateDir, T0, userEvent } from '../support/store-fixtures.ts';

let tmp: StateDir;
let file: string;
const opened: SqliteStore[] = [];
const children: ChildProcess[] = [];

beforeEach(() => {
  tmp = makeStateDir();
  file = tmp.path('riskwatch.db');
});
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
  for (const store of opened.splice(0)) await store.close();
  tmp.remove();
});

/** Opens a store that afterEach closes. */
function open(at: string = file, options?: SqliteStoreOptions): SqliteStore {
  const store = SqliteStore.open(at, options);
  opened.push(store);
  return store;
}

/** The StateError `attempt` fails with, checked to be one line with exit code 2. */
async function stateErrorOf(attempt: () => unknown): Promise<StateError> {
  let error: unknown;
  try {
    await attempt();
  } catch (caught) {
    error = caught;
  }
  if (error === undefined) throw new Error('expected a StateError, but nothing was thrown');
  expect(error).toBeInstanceOf(StateError);
  const stateError = error as StateError;
  expect(stateError.exitCode).toBe(2);
  expect(stateError.message).not.toContain('\n');
  return stateError;
}

const impTravel = behavior('imp_travel', { risk_level: 'high' });

// What every StateStore does (versions, all-or-nothing commits, the outbox, restarts) is the
// contract in contract.ts, run against this store by contract.test.ts. Here: what the file adds.

describe('the state is one SQLite file', () => {
  it('is one SQLite file in WAL mode at the current schema version', async () => {
    open();
    const db = new DatabaseSync(file, { readOnly: true });
    try {
      expect(db.prepare('PRAGMA journal_mode').get()).toEqual(expect.objectContaining({ journal_mode: 'wal' }));
      expect(db.prepare('PRAGMA user_version').get()).toEqual(expect.objectContaining({ user_version: SCHEMA_VERSION }));
    } finally {
      db.close();
    }
  });
});

/**
 * How "writes only what changed" is measured in the file, two ways, both independent of machine speed:
 * - rows: AFTER INSERT/UPDATE/DELETE triggers count every row the store's connection writes, per
 *   table (sqliteWrites; the contract counts them in all, this test per table);
 * - pages: the WAL is checkpointed and truncated to 0 bytes before a commit, so its size
 *   afterwards is 32 + frames × (page_size + 24) for exactly the pages that commit wrote
 *   (a page changed many times in one transaction is one frame).
 */
describe('a steady poll writes only what changed', () => {
  function truncateWal(db: DatabaseSync): void {
    expect(db.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get()).toEqual(expect.objectContaining({ busy: 0 }));
    expect(fs.statSync(`${file}-wal`).size).toBe(0);
  }
  function pagesWritten(db: DatabaseSync): number {
    const pageSize = (db.prepare('PRAGMA page_size').get() as { page_size: number }).page_size;
    const size = fs.statSync(`${file}-wal`).size;
    expect((size - 32) % (pageSize + 24)).toBe(0);
    return (size - 32) / (pageSize + 24);
  }

  it('10 level changes and 2 departures among 100,000 users write 12 user rows and a few pages, not 100,000', async () => {
    const store = open();
    const probe = new DatabaseSync(file);
    try {
      truncateWal(probe);
      const everyone = Array.from({ length: 100_000 }, (_, n) => riskUser(n));
      expect(await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: everyone, upsertBehaviors: [impTravel] }) }))).toBe(1);
      const baselinePages = pagesWritten(probe);

      const raised = Array.from({ length: 10 }, (_, i) => riskUser(i * 9_973 + 17, 'high'));
      const departed = [riskUser(4_242).user_id, riskUser(99_999).user_id];
      const events = raised.map((u, i) => userEvent(`evt-${i}`, u, 'low', 'high', T0 + 60_000));
      let steadyPages = 0;
      const writes = await sqliteWrites(file, async () => {
        truncateWal(probe);
        const version = await store.commitPoll(
          pollCommit({
            expectedVersion: 1,
            polledAt: T0 + 60_000,
            delta: delta({ upsertUsers: raised, removeUserIds: departed }),
            events,
            deliveries: [planned('secops', events)],
          }),
        );
        expect(version).toBe(2);
        steadyPages = pagesWritten(probe);
      });

      expect(writes).toEqual({ accounts: 1, users: 12, behaviors: 0, events: 10, deliveries: 1 });
      expect(baselinePages).toBeGreaterThan(1_000);
      expect(steadyPages).toBeLessThanOrEqual(baselinePages / 100);
      expect((await store.loadSnapshot(ACCOUNT.id)).snapshot?.userLevels.size).toBe(99_998);
    } finally {
      probe.close();
    }
  });
});

describe('a state file that cannot be used is refused with a one-line StateError (exit 2) naming it', () => {
  /** Writes an SQLite file of our own making at `file`. */
  function sqliteFile(sql: string): void {
    const db = new DatabaseSync(file);
    db.exec(sql);
    db.close();
  }

  it('a corrupt file: not an SQLite database at all', async () => {
    fs.writeFileSync(file, 'not a database '.repeat(1000));
    const error = await stateErrorOf(() => open());
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/not an SQLite database|corrupt/);
  });

  it("a file whose users' pages were damaged: found at open or at the first read, never a raw SQLite error", async () => {
    const store = open();
    await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: Array.from({ length: 2_000 }, (_, n) => riskUser(n)) }) }));
    await store.close();
    const db = new DatabaseSync(file, { readOnly: true });
    // The table's leaves and its indexes' (users_level covers a snapshot's read on its own).
    const leaves = (db.prepare("SELECT pageno FROM dbstat WHERE name IN (SELECT name FROM sqlite_schema WHERE tbl_name = 'users') AND pagetype = 'leaf'").all() as { pageno: number }[]).map(
      (r) => r.pageno,
    );
    const pageSize = (db.prepare('PRAGMA page_size').get() as { page_size: number }).page_size;
    db.close();
    expect(leaves.length).toBeGreaterThan(10);
    const fd = fs.openSync(file, 'r+');
    for (const page of leaves) fs.writeSync(fd, Buffer.alloc(pageSize, 0xa5), 0, pageSize, (page - 1) * pageSize);
    fs.closeSync(fd);

    let reopened: SqliteStore;
    try {
      reopened = open();
    } catch (atOpen) {
      const error = await stateErrorOf(() => Promise.reject(atOpen));
      expect(error.message).toContain(file);
      return;
    }
    // Found at the first read: each read of the damaged pages must say so the same way.
    const reads = { loadSnapshot: () => reopened.loadSnapshot(ACCOUNT.id), loadUsers: () => reopened.loadUsers(ACCOUNT.id, [riskUser(1).user_id]) };
    for (const [name, read] of Object.entries(reads)) {
      const error = await stateErrorOf(read);
      expect(error.message, name).toContain(file);
      expect(error.message, name).toMatch(/corrupt/);
    }
  });

  it('a file written by a newer riskwatch (schema version 99)', async () => {
    sqliteFile('CREATE TABLE future (x); PRAGMA user_version = 99;');
    const error = await stateErrorOf(() => open());
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/newer riskwatch/);
    expect(error.message).toContain('99');
  });

  it('an SQLite file of another program (tables, but no riskwatch schema version)', async () => {
    sqliteFile('CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);');
    const error = await stateErrorOf(() => open());
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/not a riskwatch state file/);
  });

  it.each([
    ['a corrupt file', () => fs.writeFileSync(file, 'not a database '.repeat(1000))],
    ['a newer schema', () => sqliteFile('CREATE TABLE future (x); PRAGMA user_version = 99;')],
    ["another program's SQLite file", () => sqliteFile('CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);')],
  ])('leaves a file it refuses byte for byte as it was: %s', async (_kind, make) => {
    make();
    const before = fs.readFileSync(file);
    await stateErrorOf(() => open());
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.existsSync(`${file}-wal`)).toBe(false);
  });

  it('a directory that does not exist', async () => {
    const missing = tmp.path('no/such/dir/riskwatch.db');
    const error = await stateErrorOf(() => open(missing));
    expect(error.message).toContain(missing);
    expect(error.message).toMatch(/does not exist/);
    expect(fs.existsSync(tmp.path('no'))).toBe(false);
  });

  it('a directory this user cannot write to', async () => {
    const readOnlyDir = tmp.path('read-only');
    fs.mkdirSync(readOnlyDir, { mode: 0o555 });
    fs.chmodSync(readOnlyDir, 0o555);
    const inside = path.join(readOnlyDir, 'riskwatch.db');
    if (process.getuid?.() !== 0) {
      const error = await stateErrorOf(() => open(inside));
      expect(error.message).toContain(inside);
      expect(error.message).toMatch(/not writable/);
      return;
    }
    // root writes through 0o555 by its capabilities, so the refusal is only observable without them:
    // open the store in a child that keeps root's uid (so it still reads the repository, wherever it
    // was cloned, however private) but loses CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (util-linux setpriv).
    const script = tmp.path('open-store.mjs');
    fs.writeFileSync(
      script,
      `import { SqliteStore } from ${JSON.stringify(pathToFileURL(path.join(REPO, 'src/store/sqlite.ts')).href)};
try { SqliteStore.open(process.argv[2]); console.log(JSON.stringify({ opened: true })); }
catch (e) { console.log(JSON.stringify({ name: e.name, exitCode: e.exitCode, message: e.message })); }
`,
    );
    const dropped = '-dac_override,-dac_read_search';
    const child = spawnSync('setpriv', [`--bounding-set=${dropped}`, `--inh-caps=${dropped}`, '--', process.execPath, script, inside], { encoding: 'utf8', timeout: 15_000 });
    expect(child.status, child.stderr).toBe(0);
    const outcome = JSON.parse(child.stdout.trim()) as { name?: string; exitCode?: number; message?: string };
    expect(outcome.name).toBe('StateError');
    expect(outcome.exitCode).toBe(2);
    expect(outcome.message).not.toContain('\n');
    expect(outcome.message).toContain(inside);
    expect(outcome.message).toMatch(/not writable/);
    expect(fs.readdirSync(readOnlyDir)).toEqual([]);
  });

  it('a state path that is a directory', async () => {
    const dir = tmp.path('riskwatch.db');
    fs.mkdirSync(dir);
    const error = await stateErrorOf(() => open(dir));
    expect(error.message).toContain(dir);
    expect(error.message).toMatch(/is a directory/);
  });

  it('a state path under a regular file', async () => {
    const notDir = tmp.path('plain-file');
    fs.writeFileSync(notDir, 'x');
    const under = path.join(notDir, 'riskwatch.db');
    const error = await stateErrorOf(() => open(under));
    expect(error.message).toContain(under);
    expect(error.message).toMatch(/not a directory/);
  });
});

describe('one riskwatch process per state file', () => {
  it('needs no leadership: the process holding the file commits any account without asking lead()', async () => {
    const store = open();
    expect(await store.commitPoll(pollCommit())).toBe(1);
    expect(store.replica).toBeUndefined();
    expect(store.leadershipCheckMs).toBeUndefined();
  });

  it('refuses a second open while the first is open, naming this process, leaves the first undisturbed, and allows it once the first has closed', async () => {
    const first = open(file, { leaseMs: 1000 });
    const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
    await first.commitPoll(pollCommit({ events: [e1], deliveries: [planned('secops', [e1])] }));
    const [claimed] = await first.claimDue('secops', T0, 10);

    const error = await stateErrorOf(() => open());
    expect(error.message).toContain(file);
    expect(error.message).toContain(`process ${process.pid}`);

    // The refused open neither took the file nor released the first one's lease.
    expect(await first.claimDue('secops', T0 + 999, 10)).toEqual([]);
    expect(await first.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000 }))).toBe(2);

    await first.close();
    const second = open();
    expect((await second.loadSnapshot(ACCOUNT.id)).version).toBe(2);
    expect((await second.claimDue('secops', T0, 10)).map((d) => d.id)).toEqual([claimed!.id]);
  });

  it("names another process's pid while it holds the file, and frees the file and its leases when that process is killed with -9", async () => {
    const setup = open();
    const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
    const e2 = userEvent('evt-2', riskUser(2, 'high'), 'low', 'high');
    await setup.commitPoll(pollCommit({ events: [e1, e2], deliveries: [planned('secops', [e1, e2])] }));
    await setup.close();

    const script = tmp.path('hold-store.mjs');
    fs.writeFileSync(
      script,
      `import { SqliteStore } from ${JSON.stringify(pathToFileURL(path.join(REPO, 'src/store/sqlite.ts')).href)};
const [file, sink, now] = process.argv.slice(2);
const store = SqliteStore.open(file);
const claimed = await store.claimDue(sink, Number(now), 10);
console.log('ready ' + JSON.stringify(claimed.map((d) => d.id)));
// The timer keeps \`store\` reachable: a collected store closes its lock connection and frees the file.
setInterval(() => store, 60_000);
`,
    );
    const child = spawn(process.execPath, [script, file, 'secops', String(T0)], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const ready = await firstLine(child, 15_000);
    const claimedByChild = JSON.parse(ready.slice('ready '.length)) as number[];
    expect(claimedByChild).toHaveLength(1);

    const error = await stateErrorOf(() => open());
    expect(error.message).toContain(file);
    expect(error.message).toContain(`process ${child.pid}`);

    child.kill('SIGKILL');
    const [, signal] = (await once(child, 'exit')) as [number | null, string | null];
    expect(signal).toBe('SIGKILL');

    const after = open();
    const again = await after.claimDue('secops', T0, 10);
    expect(again.map((d) => d.id)).toEqual(claimedByChild);
    expect(again[0]!.events.map((e) => e.id)).toEqual(['evt-1', 'evt-2']);
  });
});

/** The child's first stdout line; rejects with its stderr if it exits or stays silent. */
function firstLine(child: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const stderr: string[] = [];
    createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error(`no line from the child within ${timeoutMs} ms; stderr:\n${stderr.join('\n')}`)), timeoutMs);
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the child exited (${code ?? signal}) before its first line; stderr:\n${stderr.join('\n')}`));
    });
  });
}

describe('operator commands share the file with a running riskwatch (SPEC §3)', () => {
  it('processes opening a new state file at the same moment (a daemon starting, status beside it) each migrate it once, never twice', async () => {
    fs.rmSync(file, { force: true });
    const script = `import { SqliteStore } from ${JSON.stringify(pathToFileURL(path.join(REPO, 'src/store/sqlite.ts')).href)};
      try { const store = SqliteStore.open(${JSON.stringify(file)}, { shared: 'write' }); await store.close(); console.log('ok'); }
      catch (error) { console.log(error.message); }`;
    const children = Array.from({ length: 8 }, () => spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] }));
    const said = await Promise.all(
      children.map(async (child) => {
        let out = '';
        child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
        await once(child, 'close');
        return out.trim();
      }),
    );
    expect(said).toEqual(Array(8).fill('ok'));
    const db = new DatabaseSync(file, { readOnly: true });
    expect(db.prepare('PRAGMA user_version').get()).toEqual({ user_version: SCHEMA_VERSION });
    db.close();
  });

  it('a shared store is not refused by the process lock, and its writes are what the daemon’s next commit sees', async () => {
    const daemon = open();
    await daemon.commitPoll(pollCommit({ delta: delta({ upsertUsers: [riskUser(1, 'low')] }) }));
    const operator = open(file, { shared: 'read' });
    await operator.addSilence({ id: 'sil_1', user: riskUser(1).email, behavior: null, accountId: null, startsAt: T0, endsAt: T0 + 3_600_000, reason: 'looking', by: 'ana@host' });
    const rise = userEvent('evt-1', riskUser(1, 'high'), 'low', 'high', T0 + 60_000);
    await daemon.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000, events: [rise], deliveries: [planned('incidents', [rise])] }));
    expect(await daemon.deliveryCounts()).toEqual(new Map());
    expect(await operator.listEvents({ since: 0, limit: 10 })).toEqual([{ event: rise, silenced: 'sil_1' }]);
    // Closing the operator's store leaves the daemon's lock and holder as they were.
    await operator.close();
    expect((await stateErrorOf(() => SqliteStore.open(file))).message).toMatch(/is in use by riskwatch process \d+/);
  });

  it('a store shared for reading never creates the file: a wrong path is said, not shown as an empty state', async () => {
    const wrong = path.join(path.dirname(file), 'typo.db');
    expect((await stateErrorOf(() => SqliteStore.open(wrong, { shared: 'read' }))).message).toBe(`state file ${wrong} does not exist: riskwatch run creates it (is this the daemon's config?)`);
    expect(fs.existsSync(wrong)).toBe(false);
    // A silence may be set before the daemon first starts.
    await SqliteStore.open(wrong, { shared: 'write' }).close();
    expect(fs.existsSync(wrong)).toBe(true);
  });
});
