import { describe, expect, it } from 'vitest';
import { clip, clipBytes, type Cuts, fitCount, jsonBytes } from '../../src/notify/limits.ts';

describe('clip: at most max characters, whole code points, an ellipsis when cut', () => {
  it('leaves short text alone and says nothing', () => {
    const cuts: Cuts = [];
    expect(clip('hello', 5, cuts)).toBe('hello');
    expect(cuts).toEqual([]);
  });

  it('cuts to exactly max UTF-16 units, ending in …, and says what it cut', () => {
    const cuts: Cuts = [];
    const out = clip('x'.repeat(1500), 1024, cuts, 'summary');
    expect(out).toHaveLength(1024);
    expect(out.endsWith('…')).toBe(true);
    expect(cuts).toEqual(['summary cut from 1500 to 1024 characters']);
  });

  it('never leaves half a surrogate pair at the cut (an emoji goes whole)', () => {
    for (let max = 2; max < 12; max++) {
      const out = clip('ab😀😀😀😀😀😀', max);
      expect(out.length).toBeLessThanOrEqual(max);
      expect(out).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])/);
      expect(out.isWellFormed()).toBe(true);
    }
  });
});

describe('clipBytes: at most maxBytes of UTF-8, never inside a character', () => {
  it('cuts multi-byte text below the limit, well-formed, and says so', () => {
    const cuts: Cuts = [];
    for (let max = 4; max < 40; max++) {
      const out = clipBytes('é😀漢'.repeat(10), max, cuts);
      expect(Buffer.byteLength(out)).toBeLessThanOrEqual(max);
      expect(out.isWellFormed()).toBe(true);
      expect(out.includes('\uFFFD')).toBe(false);
      expect(out.endsWith('…')).toBe(true);
    }
    expect(cuts[0]).toMatch(/^text cut from 90 to 4 bytes$/);
  });

  it('keeps a U+FFFD the text really held', () => {
    expect(clipBytes('ab\uFFFD', 100)).toBe('ab\uFFFD');
  });
});

describe('fitCount: the most items whose rendering fits', () => {
  it('finds the largest n for which fits(n) holds', () => {
    const sizes = Array.from({ length: 300 }, (_, i) => 50 + (i % 7));
    const size = (n: number) => 100 + sizes.slice(0, n).reduce((a, b) => a + b, 0);
    const n = fitCount(sizes.length, (k) => size(k) <= 5000);
    expect(size(n)).toBeLessThanOrEqual(5000);
    expect(size(n + 1)).toBeGreaterThan(5000);
  });

  it('all when all fit, none when none fits', () => {
    expect(fitCount(10, () => true)).toBe(10);
    expect(fitCount(10, (n) => n === 0)).toBe(0);
    expect(fitCount(0, () => true)).toBe(0);
  });

  it('jsonBytes counts the body as sent', () => {
    expect(jsonBytes({ a: 'é' })).toBe(Buffer.byteLength('{"a":"é"}'));
  });
});
