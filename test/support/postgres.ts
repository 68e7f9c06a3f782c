/**
 * Throwaway PostgreSQL servers for tests and CI: the one place that knows how
 * to start one.
 *
 * - `startPostgres()` runs initdb into a fresh temporary directory and starts a
 *   server on a free loopback port (trust auth, user `riskwatch`, fsync off).
 * - `freshDatabase()` creates a new, uniquely named database on the shared test
 *   server named by RISKWATCH_TEST_DATABASE_URL (started by .ci/run in CI, by
 *   test/support/global-setup.ts otherwise) and returns its URL.
 * - As a script it starts or stops a shared server from the shell:
 *     npx node test/support/postgres.ts start   # stdout: RISKWATCH_TEST_DATABASE_URL=postgres://…
 *                                               # stderr: RISKWATCH_TEST_DATABASE_DIR=/tmp/riskwatch-pg-…
 *     npx node test/support/postgres.ts stop <dataDir>
 *     npx node test/support/postgres.ts bin     # the binaries' directory; exit 1 when not installed
 *
 * initdb, pg_ctl and postgres refuse to run as root, so as root they run as the
 * `postgres` system user (which the Debian package creates) through runuser.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

/** The variable naming the shared test server; freshDatabase() creates its databases there. */
export const TEST_DATABASE_URL_ENV = 'RISKWATCH_TEST_DATABASE_URL';
/** Set by the globalSetup when it could not start a server: freshDatabase() reports it. */
export const TEST_DATABASE_ERROR_ENV = 'RISKWATCH_TEST_DATABASE_ERROR';
/** The user initdb makes the superuser; trust auth, so no password. */
export const POSTGRES_USER = 'riskwatch';

const TOOLS = ['initdb', 'pg_ctl', 'postgres'] as const;
const DIR_PREFIX = 'riskwatch-pg-';
const LOG_NAME = 'riskwatch-postgres.log';
/** How long pg_ctl may wait for the server to start or stop, in seconds. */
const PG_CTL_WAIT_S = 60;
/** The system user the server runs as when we are root. */
const SYSTEM_USER = 'postgres';

export interface StartPostgresOptions {
  /** Port to listen on (127.0.0.1); a free one is picked when absent. */
  port?: number;
  /**
   * Leave the server running when this process exits (the CLI's `start`).
   * Otherwise a server not yet stopped is stopped, best effort, on process exit.
   */
  detached?: boolean;
}

export interface PostgresServer {
  /** `postgres://riskwatch@127.0.0.1:PORT/postgres` */
  readonly url: string;
  readonly port: number;
  /** The cluster's data directory (also holds the Unix socket and the server log). */
  readonly dataDir: string;
  readonly logFile: string;
  /** Stops the server (fast shutdown) and deletes its data directory. Safe to call twice. */
  stop(): Promise<void>;
  /** `pg_ctl restart -m fast`: connections are dropped, data and port are kept. */
  restart(): Promise<void>;
  /** Stops the server (fast shutdown) but keeps its data: the database is down until resume(). */
  pause(): Promise<void>;
  /** Starts a paused (or killed) server again on the same port with the same data. */
  resume(): Promise<void>;
  /**
   * Crashes the server: SIGKILL to the postmaster and all its children, as if
   * the host died. Down until resume(), which runs crash recovery.
   */
  kill(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Finding the binaries

function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function hasTools(dir: string): boolean {
  return TOOLS.every((tool) => isExecutableFile(path.join(dir, tool)));
}

/** Orders version directory names like `9.6`, `15`, `17` newest first. */
function compareVersionsDesc(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pb[i] ?? 0) - (pa[i] ?? 0);
    if (d !== 0 && !Number.isNaN(d)) return d;
  }
  return b.localeCompare(a);
}

/**
 * The directory holding initdb, pg_ctl and postgres: the first PATH entry that
 * has all three, else the newest /usr/lib/postgresql/<version>/bin (where the
 * Debian package puts them without adding them to PATH). Undefined when absent.
 */
export function findPostgresBin(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir !== '' && hasTools(dir)) return dir;
  }
  let versions: string[];
  try {
    versions = fs.readdirSync('/usr/lib/postgresql');
  } catch {
    return undefined;
  }
  for (const version of versions.sort(compareVersionsDesc)) {
    const dir = path.join('/usr/lib/postgresql', version, 'bin');
    if (hasTools(dir)) return dir;
  }
  return undefined;
}

function requirePostgresBin(): string {
  const bin = findPostgresBin();
  if (bin === undefined) {
    throw new Error('PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in /usr/lib/postgresql/*/bin; ' + 'install them, e.g. `apt-get install postgresql`');
  }
  return bin;
}

// ---------------------------------------------------------------------------
// Running the tools (as the postgres user when we are root)

const isRoot = (): boolean => process.getuid?.() === 0;

let systemIds: { uid: number; gid: number } | undefined;
function systemUserIds(): { uid: number; gid: number } {
  if (systemIds === undefined) {
    try {
      const id = (flag: string) => Number(execFileSync('id', [flag, SYSTEM_USER], { encoding: 'utf8' }).trim());
      systemIds = { uid: id('-u'), gid: id('-g') };
    } catch {
      throw new Error(`running as root, but there is no "${SYSTEM_USER}" system user to run PostgreSQL as (initdb refuses root); the Debian postgresql package creates it`);
    }
  }
  return systemIds;
}

let switchUser: string[] | undefined;
/** The argv prefix that runs a command as the postgres user: runuser, else setpriv. */
function asSystemUser(): string[] {
  if (switchUser === undefined) {
    systemUserIds();
    const onPath = (tool: string) => [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/sbin', '/usr/bin', '/bin'].map((dir) => path.join(dir, tool)).find(isExecutableFile);
    const runuser = onPath('runuser');
    const setpriv = onPath('setpriv');
    if (runuser !== undefined) switchUser = [runuser, '-u', SYSTEM_USER, '--'];
    else if (setpriv !== undefined) switchUser = [setpriv, `--reuid=${SYSTEM_USER}`, `--regid=${SYSTEM_USER}`, '--init-groups', '--'];
    else throw new Error('running as root, but neither runuser nor setpriv is available to drop to the postgres user');
  }
  return switchUser;
}

/** argv for a PostgreSQL tool, wrapped to run as the postgres user when we are root. */
function toolArgv(bin: string, tool: (typeof TOOLS)[number], args: readonly string[]): string[] {
  const argv = [path.join(bin, tool), ...args];
  return isRoot() ? [...asSystemUser(), ...argv] : argv;
}

const toolEnv = (): NodeJS.ProcessEnv => ({ ...process.env, LC_ALL: 'C', PGDATA: undefined });

/** Runs a tool to completion; rejects with its output when it fails. */
function runTool(bin: string, tool: (typeof TOOLS)[number], args: readonly string[], timeoutMs = (PG_CTL_WAIT_S + 30) * 1000): Promise<string> {
  const [cmd, ...rest] = toolArgv(bin, tool, args);
  return new Promise((resolve, reject) => {
    // cwd "/": the postgres user may not be allowed into ours.
    const child = spawn(cmd!, rest, { cwd: '/', env: toolEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (output += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (output += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(output);
      else reject(new Error(`${tool} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${output.trim()}`));
    });
  });
}

/** Synchronous, best-effort variant for process-exit cleanup. */
function runToolSync(bin: string, tool: (typeof TOOLS)[number], args: readonly string[]): void {
  const [cmd, ...rest] = toolArgv(bin, tool, args);
  spawnSync(cmd!, rest, { cwd: '/', env: toolEnv(), stdio: 'ignore', timeout: 30_000 });
}

// ---------------------------------------------------------------------------
// Ports, pids, files

/** A port nobody listens on right now: bind 127.0.0.1:0, note the port, close. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not pick a free port'));
      });
    });
  });
}

function readPostmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** State letter and parent pid from /proc/<pid>/stat; undefined when the process is gone. */
function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', ppid: Number(fields[1]) };
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie (a zombie nobody reaps still answers kill(pid, 0)). */
function isRunning(pid: number): boolean {
  const stat = procStat(pid);
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X';
}

function childPids(ppid: number): number[] {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  return entries.filter((e) => /^\d+$/.test(e) && procStat(Number(e))?.ppid === ppid).map(Number);
}

function tailOf(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no server log)';
  }
}

function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// Starting and stopping servers

/** Servers this process started and has not stopped: stopped on exit unless detached. */
const owned = new Map<string, string>(); // dataDir -> bin
let exitHookInstalled = false;
function own(dataDir: string, bin: string): void {
  owned.set(dataDir, bin);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const [dir, b] of owned) {
        runToolSync(b, 'pg_ctl', ['stop', '-D', dir, '-m', 'immediate', '-w', '-t', '10']);
        try {
          removeDir(dir);
        } catch {
          // best effort
        }
      }
    });
  }
}

function pgCtlStartArgs(dataDir: string, logFile: string, port: number): string[] {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`; // pg_ctl hands -o to /bin/sh
  const serverOptions = ['-c listen_addresses=127.0.0.1', `-p ${port}`, `-k ${quote(dataDir)}`, '-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off', '-c max_connections=200'].join(
    ' ',
  );
  // -l: the server's output goes to the log, so pg_ctl returns and the server outlives us.
  return ['-D', dataDir, '-l', logFile, '-w', '-t', String(PG_CTL_WAIT_S), '-o', serverOptions];
}

/**
 * Creates a cluster in a fresh temporary directory and starts it on 127.0.0.1.
 * Call stop() when done; servers not detached are also stopped on process exit.
 */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const bin = requirePostgresBin();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), DIR_PREFIX));
  const logFile = path.join(dataDir, LOG_NAME);
  let port = options.port ?? 0;
  try {
    if (isRoot()) {
      const { uid, gid } = systemUserIds();
      fs.chownSync(dataDir, uid, gid);
    }
    await runTool(bin, 'initdb', ['-D', dataDir, '-U', POSTGRES_USER, '--auth=trust', '--no-sync', '--encoding=UTF8', '--locale=C']);
    // The port is free when picked but may be taken before the server binds it: pick again then.
    for (let attempt = 1; ; attempt++) {
      if (options.port === undefined) port = await freePort();
      try {
        await runTool(bin, 'pg_ctl', ['start', ...pgCtlStartArgs(dataDir, logFile, port)]);
        break;
      } catch (err) {
        const log = tailOf(logFile);
        if (options.port === undefined && attempt < 3 && /could not bind|already in use/i.test(log)) continue;
        throw new Error(`${(err as Error).message}\nserver log:\n${log}`);
      }
    }
  } catch (err) {
    removeDir(dataDir);
    throw err;
  }
  if (!options.detached) own(dataDir, bin);

  let stopped = false;
  let queue: Promise<unknown> = Promise.resolve();
  // One operation at a time: a stop() racing a restart() would leave a server behind.
  const serial = (op: () => Promise<void>): Promise<void> => {
    const next = queue.then(() => {
      if (stopped) throw new Error(`PostgreSQL server in ${dataDir} was already stopped`);
      return op();
    });
    queue = next.catch(() => undefined);
    return next;
  };
  const withLog = async (op: () => Promise<unknown>): Promise<void> => {
    try {
      await op();
    } catch (err) {
      throw new Error(`${(err as Error).message}\nserver log:\n${tailOf(logFile)}`);
    }
  };
  const startArgs = () => pgCtlStartArgs(dataDir, logFile, port);

  return {
    url: `postgres://${POSTGRES_USER}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    logFile,
    stop: () => {
      if (stopped) return queue.then(() => undefined);
      const done = queue.then(async () => {
        stopped = true;
        await stopCluster(bin, dataDir);
        owned.delete(dataDir);
      });
      queue = done.catch(() => undefined);
      return done;
    },
    restart: () => serial(() => withLog(() => runTool(bin, 'pg_ctl', ['restart', '-m', 'fast', ...startArgs()]))),
    pause: () => serial(() => withLog(() => runTool(bin, 'pg_ctl', ['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', String(PG_CTL_WAIT_S)]))),
    resume: () => serial(() => withLog(() => runTool(bin, 'pg_ctl', ['start', ...startArgs()]))),
    kill: () => serial(() => crash(dataDir)),
  };
}

/** SIGKILL the postmaster and its children; wait until they are gone. */
async function crash(dataDir: string): Promise<void> {
  const pid = readPostmasterPid(dataDir);
  if (pid === undefined || !isRunning(pid)) throw new Error(`PostgreSQL server in ${dataDir} is not running`);
  const children = childPids(pid);
  for (const p of [pid, ...children]) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + 10_000;
  while ([pid, ...children].some(isRunning)) {
    if (Date.now() > deadline) throw new Error(`PostgreSQL processes in ${dataDir} survived SIGKILL`);
    await delay(20);
  }
  // A postmaster left a zombie (where PID 1 does not reap orphans, as in some
  // containers) still answers kill(pid, 0): its lock files would make the next
  // start believe it still runs. It is dead, so they are stale; remove them.
  if (procStat(pid) !== undefined) {
    for (const name of fs.readdirSync(dataDir)) {
      if (name === 'postmaster.pid' || /^\.s\.PGSQL\.\d+(\.lock)?$/.test(name)) fs.rmSync(path.join(dataDir, name), { force: true });
    }
  }
}

/** Stops the server in dataDir if it runs (fast shutdown), then deletes the directory. */
async function stopCluster(bin: string, dataDir: string): Promise<void> {
  const pid = readPostmasterPid(dataDir);
  if (pid !== undefined && isRunning(pid)) {
    await runTool(bin, 'pg_ctl', ['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', String(PG_CTL_WAIT_S)]);
  }
  removeDir(dataDir);
}

/**
 * Stops a server started by `startPostgres` in another process (the CLI's
 * `stop`) and deletes its data directory. Refuses directories it did not make.
 */
export async function stopPostgres(dataDir: string): Promise<void> {
  const dir = path.resolve(dataDir);
  if (!path.basename(dir).startsWith(DIR_PREFIX) || !fs.existsSync(path.join(dir, 'PG_VERSION'))) {
    throw new Error(`${dir} is not a data directory made by startPostgres (${DIR_PREFIX}*, with PG_VERSION)`);
  }
  await stopCluster(requirePostgresBin(), dir);
}

// ---------------------------------------------------------------------------
// Databases for tests

/** The shared test server's URL, or an error saying why there is none. */
export function testServerUrl(): string {
  const url = process.env[TEST_DATABASE_URL_ENV];
  if (url !== undefined && url !== '') return url;
  if (process.env.CI) {
    throw new Error(
      `PostgreSQL is required in CI: ${TEST_DATABASE_URL_ENV} is not set. .ci/run starts a server with \`npx node test/support/postgres.ts start\`; tests that need one fail rather than skip.`,
    );
  }
  const setupError = process.env[TEST_DATABASE_ERROR_ENV];
  if (setupError) throw new Error(`vitest globalSetup could not start a PostgreSQL server for the tests: ${setupError}`);
  if (findPostgresBin() === undefined) {
    throw new Error(
      `no PostgreSQL for the tests: ${TEST_DATABASE_URL_ENV} is not set and no server binaries were found ` +
        '(install them, e.g. `apt-get install postgresql`, or point the variable at a server where we may create databases)',
    );
  }
  throw new Error(
    `${TEST_DATABASE_URL_ENV} is not set: run the tests through vitest (its globalSetup, test/support/global-setup.ts, starts a server), ` +
      'or start one with `npx node test/support/postgres.ts start`',
  );
}

/**
 * Creates a new, empty database `rw_<random hex>` on the shared test server and
 * returns its URL. Each test gets its own; they are dropped with the server.
 */
export async function freshDatabase(): Promise<string> {
  const serverUrl = testServerUrl();
  const name = `rw_${randomBytes(8).toString('hex')}`;
  const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
  } catch (err) {
    throw new Error(`cannot reach the test PostgreSQL at ${serverUrl} (${TEST_DATABASE_URL_ENV}): ${(err as Error).message}`);
  }
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

// ---------------------------------------------------------------------------
// CLI

async function main(args: readonly string[]): Promise<number> {
  const [command, ...rest] = args;
  if (command === 'start' && rest.length === 0) {
    const server = await startPostgres({ detached: true });
    process.stdout.write(`${TEST_DATABASE_URL_ENV}=${server.url}\n`);
    process.stderr.write(`RISKWATCH_TEST_DATABASE_DIR=${server.dataDir}\n`);
    return 0;
  }
  if (command === 'bin' && rest.length === 0) {
    const bin = findPostgresBin();
    if (bin === undefined) return 1;
    process.stdout.write(`${bin}\n`);
    return 0;
  }
  if (command === 'stop' && rest.length === 1) {
    await stopPostgres(rest[0]!);
    return 0;
  }
  process.stderr.write('usage: postgres.ts start | stop <dataDir> | bin\n');
  return 2;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
