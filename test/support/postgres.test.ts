import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { freshDatabase, type PostgresServer, startPostgres } from './postgres.ts';

async function query(url: string, sql: string): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

describe('freshDatabase', () => {
  it('returns the URL of a new, empty database we can use', async () => {
    const url = await freshDatabase();
    expect(new URL(url).pathname).toMatch(/^\/rw_[0-9a-f]+$/);
    expect(await query(url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
    expect(await query(url, "SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'")).toEqual([{ n: 0 }]);
  });

  it('gives every call its own database', async () => {
    const [a, b] = await Promise.all([freshDatabase(), freshDatabase()]);
    expect(a).not.toBe(b);
    await query(a!, 'CREATE TABLE only_in_a (x int)');
    expect(await query(b!, "SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'only_in_a'")).toEqual([{ n: 0 }]);
  });
});

describe('startPostgres', () => {
  let server: PostgresServer | undefined;
  afterAll(async () => {
    await server?.stop();
  });

  it('starts a server that survives restart, pause/resume and a crash, keeping data and port', async () => {
    server = await startPostgres();
    expect(server.url).toBe(`postgres://riskwatch@127.0.0.1:${server.port}/postgres`);
    await query(server.url, 'CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)');

    await server.restart();
    expect(await query(server.url, 'SELECT x FROM kept')).toEqual([{ x: 42 }]);

    await server.pause();
    await expect(query(server.url, 'SELECT 1')).rejects.toThrow();
    await server.resume();
    expect(await query(server.url, 'SELECT x FROM kept')).toEqual([{ x: 42 }]);

    await server.kill();
    await expect(query(server.url, 'SELECT 1')).rejects.toThrow();
    await server.resume();
    expect(await query(server.url, 'SELECT x FROM kept')).toEqual([{ x: 42 }]);

    const { dataDir } = server;
    await server.stop();
    const fs = await import('node:fs');
    expect(fs.existsSync(dataDir)).toBe(false);
    await server.stop(); // twice is fine
  });
});
