import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { UserIdMap } from '../../src/detect/user-id-map.ts';
import { mulberry32 } from '../support/random.ts';

describe('UserIdMap behaves as a Map of user ids, whatever the ids', () => {
  it('keeps UUIDs and other ids, gives them back exactly, and forgets deleted ones', () => {
    const map = new UserIdMap();
    const uuid = '7f3e9a2c-41b0-4d8e-9c1a-0b2c3d4e5f60';
    const ids = [
      uuid,
      'user-42',
      '7F3E9A2C-41B0-4D8E-9C1A-0B2C3D4E5F60',
      '7f3e9a2c41b04d8e9c1a0b2c3d4e5f60',
      '00000000-0000-0000-0000-000000000000',
      'ffffffff-ffff-ffff-ffff-ffffffffffff',
      '7f3e9a2c-41b0-4d8e-9c1a-0b2c3d4e5f6g',
      '',
    ];
    for (const [i, id] of ids.entries()) map.set(id, i);
    expect(map.size).toBe(ids.length);
    expect(ids.map((id) => map.get(id))).toEqual(ids.map((_, i) => i));
    expect(new Set(map.keys())).toEqual(new Set(ids));
    expect(map.delete(uuid)).toBe(true);
    expect(map.delete(uuid)).toBe(false);
    expect([map.has(uuid), map.get(uuid), map.size]).toEqual([false, undefined, ids.length - 1]);
  });

  it('agrees with a Map over 200,000 random sets, overwrites, deletes and settles (the table grows, shifts entries back and reorders)', () => {
    const random = mulberry32(20261123);
    const map = new UserIdMap();
    const reference = new Map<string, number>();
    const pool = Array.from({ length: 5000 }, (_, i) => (i % 10 === 0 ? `other-${i}` : i % 7 === 0 ? `00000000-0000-4000-8000-${String(i).padStart(12, '0')}` : randomUUID()));
    for (let step = 0; step < 200_000; step++) {
      const id = pool[Math.floor(random() * pool.length)]!;
      const roll = random();
      if (roll < 0.01) {
        map.settle();
      } else if (roll < 0.35) {
        expect(map.delete(id)).toBe(reference.delete(id));
      } else if (roll < 0.8) {
        const value = Math.floor(random() * 2 ** 32 - 1);
        map.set(id, value);
        reference.set(id, value);
      } else {
        expect(map.get(id)).toBe(reference.get(id));
      }
      if (step % 20_000 === 0) expect(new Map(map.entries())).toEqual(reference);
    }
    expect(map.size).toBe(reference.size);
    expect(new Map(map.entries())).toEqual(reference);
  });

  it('holds a million UUIDs, growing from its first guess, and finds each', () => {
    const map = new UserIdMap();
    const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
    for (let n = 0; n < 1_000_000; n++) map.set(id(n), n % 4);
    expect(map.size).toBe(1_000_000);
    for (let n = 0; n < 1_000_000; n += 997) expect(map.get(id(n))).toBe(n % 4);
    expect(map.get(id(1_000_000))).toBeUndefined();
  });

  it('after a read that found entries out of order, lays them out in the order that read found them', () => {
    const map = new UserIdMap();
    const ids = Array.from({ length: 1000 }, () => randomUUID());
    for (const [i, id] of ids.entries()) map.set(id, i);
    const random = mulberry32(7);
    const readOrder = [...ids].sort(() => random() - 0.5);
    map.settle(); // between reads, as StoredLevels.beginRead() does
    for (const id of readOrder) map.get(id);
    map.settle();
    expect([...map.keys()]).toEqual(readOrder);
    expect(readOrder.map((id) => map.get(id))).toEqual(readOrder.map((id) => ids.indexOf(id)));
  });

  it('a read in order until one lookup strays still lays the entries out in the order found', () => {
    const map = new UserIdMap();
    const ids = Array.from({ length: 64 }, (_, n) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`);
    for (const [i, id] of ids.entries()) map.set(id, i);
    map.settle();
    // The first half in order (no record of it is kept until the stray lookup), then the rest backwards.
    const readOrder = [...ids.slice(0, 32), ...ids.slice(32).reverse()];
    for (const id of readOrder) map.get(id);
    map.settle();
    expect([...map.keys()]).toEqual(readOrder);
  });

  it('shrinks back after growing past a 16-bit index and losing most of its entries, and stays exact', () => {
    const map = new UserIdMap();
    const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
    // 70,000 entries need a table of 2^18 slots: past what 16-bit positions address.
    for (let n = 0; n < 70_000; n++) map.set(id(n), n);
    map.settle();
    for (let n = 0; n < 70_000; n += 1009) expect(map.get(id(n))).toBe(n);
    for (let n = 100; n < 70_000; n++) expect(map.delete(id(n))).toBe(true);
    map.settle(); // gives back the room, the index 16-bit again
    expect(map.size).toBe(100);
    expect([...map.keys()]).toEqual(Array.from({ length: 100 }, (_, n) => id(n)));
    for (let n = 0; n < 100; n++) expect(map.get(id(n))).toBe(n);
    expect(map.get(id(100))).toBeUndefined();
    // And grows again.
    for (let n = 100; n < 40_000; n++) map.set(id(n), n);
    map.settle();
    for (let n = 0; n < 40_000; n += 997) expect(map.get(id(n))).toBe(n);
    expect(map.size).toBe(40_000);
  });
});
