import type { Io } from './command.ts';

export { iso } from '../operate/views.ts';

/** One JSON document (SPEC §8's shapes). */
export function printJson(io: Io, value: unknown): void {
  io.out(JSON.stringify(value, null, 2));
}

/** Aligned columns for people: a header row, then one row per item; cells on one line, long ones shortened. */
export function printTable(io: Io, header: readonly string[], rows: readonly (readonly (string | number | null | undefined)[])[], empty: string): void {
  if (rows.length === 0) {
    io.out(empty);
    return;
  }
  const cells = [header, ...rows.map((row) => row.map(cell))];
  const widths = header.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  for (const row of cells)
    io.out(
      row
        .map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    );
}

const MAX_CELL = 80;

function cell(value: string | number | null | undefined): string {
  if (value === null || value === undefined || value === '') return '-';
  const flat = String(value).replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ');
  return flat.length > MAX_CELL ? `${flat.slice(0, MAX_CELL - 1)}…` : flat;
}
