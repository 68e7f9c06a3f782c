import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration, parseTime } from '../../src/config/duration.ts';

describe('parseDuration reads a number with a unit into milliseconds', () => {
  it.each([
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['250ms', 250],
    ['1h30m', 5_400_000],
    ['1m30s', 90_000],
    ['1.5s', 1500],
    ['0s', 0],
    [' 45s ', 45_000],
  ])('%j → %d', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });
});

describe('parseDuration refuses what is not a duration', () => {
  it.each([
    ['a bare number (its unit would be a guess)', '60'],
    ['a word', 'fast'],
    ['an empty string', ''],
    ['blanks', '   '],
    ['an unknown unit', '5w'],
    ['an uppercase unit', '5M'],
    ['a negative value', '-5s'],
    ['a unit without a number', 's'],
    ['a space between parts', '1h 30m'],
    ['trailing garbage', '30s!'],
    ['a leading number without unit', '1h30'],
  ])('%s: %j', (_label, text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('formatDuration prints the shortest whole unit', () => {
  it.each([
    [3_600_000, '1h'],
    [7_200_000, '2h'],
    [60_000, '1m'],
    [5_400_000, '90m'],
    [30_000, '30s'],
    [90_000, '90s'],
    [1500, '1500ms'],
    [250, '250ms'],
  ])('%d → %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it.each([250, 1000, 1500, 30_000, 90_000, 5_400_000, 86_400_000])('round-trips %d through parseDuration', (ms) => {
    expect(parseDuration(formatDuration(ms))).toBe(ms);
  });
});

describe('parseTime reads an RFC 3339 time on the calendar into epoch ms', () => {
  it.each([
    ['2026-12-01T18:00:00Z', Date.UTC(2026, 11, 1, 18)],
    ['2026-12-01T18:00Z', Date.UTC(2026, 11, 1, 18)],
    ['2026-12-01t18:00:00.250z', Date.UTC(2026, 11, 1, 18, 0, 0, 250)],
    ['2026-12-01T19:30:00+01:30', Date.UTC(2026, 11, 1, 18)],
    ['2026-12-01T16:00:00-02:00', Date.UTC(2026, 11, 1, 18)],
    ['2028-02-29T00:00:00Z', Date.UTC(2028, 1, 29)],
  ])('%j → %d', (text, ms) => {
    expect(parseTime(text)).toBe(ms);
  });

  it.each([
    '2030-02-30T10:00:00Z',
    '2027-02-29T00:00:00Z',
    '2031-04-31T10:00:00Z',
    '2030-13-01T00:00:00Z',
    '2030-00-10T00:00:00Z',
    '2030-01-00T00:00:00Z',
    '2030-01-01T24:00:00Z',
    '2030-01-01T10:60:00Z',
    '2030-01-01T10:00:60Z',
    '2030-01-01T10:00:00+24:00',
    '2030-01-01T10:00:00',
    '2030-01-01 10:00:00Z',
    'tomorrow',
    '',
  ])('%j is refused, not rolled over', (text) => {
    expect(parseTime(text)).toBeUndefined();
  });
});
