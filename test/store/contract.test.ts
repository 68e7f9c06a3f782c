import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';
import { expect } from 'vitest';
import { PostgresStore } from '../../src/store/postgres.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import type { StateStore } from '../../src/store/store.ts';
import { freshDatabase } from '../support/postgres.ts';
import { makeStateDir, STATE_TABLES, type StateDir, sqliteWrites } from '../support/store-fixtures.ts';
import { describeStoreContract, type StoreHarness, type StoreOptions } from './contract.ts';

/** One state file per store opened, in a temp dir removed after each test. */
function sqliteHarness(): StoreHarness {
  let tmp: StateDir | undefined;
  let files = 0;
  const opened: SqliteStore[] = [];

  const sqlite = (store: StateStore): SqliteStore => {
    if (!(store instanceof SqliteStore)) throw new TypeError('not a store of the SQLite harness');
    return store;
  };
  const track = (store: SqliteStore): SqliteStore => {
    opened.push(store);
    return store;
  };

  return {
    async open(options) {
      tmp ??= makeStateDir();
      return track(SqliteStore.open(tmp.path(`riskwatch-${++files}.db`), options));
    },
    async reopen(store, options) {
      const { file } = sqlite(store);
      await store.close();
      return track(SqliteStore.open(file, options));
    },
    async countWrites(store, during) {
      const counts = await sqliteWrites(sqlite(store).file, during);
      return Object.values(counts).reduce((sum, n) => sum + n, 0);
    },
    async refuseUpdatesOf(store, deliveryId) {
      const db = new DatabaseSync(sqlite(store).file, { timeout: 5000 });
      db.exec(`CREATE TRIGGER test_refuse_${deliveryId} BEFORE UPDATE ON deliveries WHEN OLD.id = ${deliveryId} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`);
      return async () => {
        db.exec(`DROP TRIGGER test_refuse_${deliveryId}`);
        db.close();
      };
    },
    named: (store) => sqlite(store).file,
    alone: { replica: undefined, leadershipCheckMs: undefined },
    async closeAll() {
      for (const store of opened.splice(0)) await store.close();
      tmp?.remove();
      tmp = undefined;
    },
  };
}

/**
 * A fresh database per store opened (freshDatabase: dropped with the test server). Writes are
 * counted by AFTER ROW triggers that append to a table of ours, not by pg_stat_user_tables,
 * which counts the rows of rolled-back transactions too, and reports them late.
 */
function postgresHarness(): StoreHarness {
  const urls = new Map<PostgresStore, string>();

  const postgres = (store: StateStore): PostgresStore => {
    if (!(store instanceof PostgresStore) || !urls.has(store)) throw new TypeError('not a store of the PostgreSQL harness');
    return store;
  };
  const openAt = async (url: string, options?: StoreOptions): Promise<PostgresStore> => {
    const store = await PostgresStore.open(url, options);
    urls.set(store, url);
    return store;
  };

  return {
    async open(options) {
      return openAt(await freshDatabase(), options);
    },
    async reopen(store, options) {
      const url = urls.get(postgres(store))!;
      await store.close();
      return openAt(url, options);
    },
    async countWrites(store, during) {
      const client = new pg.Client({ connectionString: urls.get(postgres(store))! });
      await client.connect();
      try {
        await client.query(`
          CREATE TABLE public.test_writes (tbl text NOT NULL);
          CREATE FUNCTION public.test_count_write() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO public.test_writes VALUES (TG_TABLE_NAME); RETURN NULL; END $$;
          ${STATE_TABLES.map((t) => `CREATE TRIGGER test_count_writes AFTER INSERT OR UPDATE OR DELETE ON riskwatch.${t} FOR EACH ROW EXECUTE FUNCTION public.test_count_write();`).join('\n')}`);
        try {
          await during();
          return Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM public.test_writes')).rows[0]!.n);
        } finally {
          await client.query(`
            ${STATE_TABLES.map((t) => `DROP TRIGGER test_count_writes ON riskwatch.${t};`).join('\n')}
            DROP FUNCTION public.test_count_write();
            DROP TABLE public.test_writes;`);
        }
      } finally {
        await client.end();
      }
    },
    async refuseUpdatesOf(store, deliveryId) {
      const client = new pg.Client({ connectionString: urls.get(postgres(store))! });
      await client.connect();
      await client.query(`
        CREATE FUNCTION public.test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
        CREATE TRIGGER test_refuse BEFORE UPDATE ON riskwatch.deliveries FOR EACH ROW WHEN (OLD.id = ${Number(deliveryId)}) EXECUTE FUNCTION public.test_refuse();`);
      return async () => {
        await client.query('DROP TRIGGER test_refuse ON riskwatch.deliveries; DROP FUNCTION public.test_refuse();');
        await client.end();
      };
    },
    named: (store) => postgres(store).where,
    alone: { replica: expect.any(String), leadershipCheckMs: expect.any(Number) },
    async closeAll() {
      for (const store of urls.keys()) await store.close();
      urls.clear();
    },
  };
}

describeStoreContract('sqlite', sqliteHarness());
describeStoreContract('postgres', postgresHarness());
