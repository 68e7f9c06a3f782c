import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './support/process.ts';

/**
 * The README is the front door and docs/ holds the reference: the README stays
 * small, names the test command, links every page of docs/, and no relative
 * link or image in README.md or docs/*.md points at a file or a heading that
 * is not there (as GitHub renders them: headings' anchors by its slug rules).
 */

const README = path.join(REPO, 'README.md');
const DOCS = path.join(REPO, 'docs');
const MAX_README_BYTES = 15 * 1024;
const docPages = fs.readdirSync(DOCS).filter((name) => name.endsWith('.md'));
/** The pages the README must link, whatever else docs/ holds (each other page of docs/ too). */
const REQUIRED_PAGES = ['configuration.md', 'notifications.md', 'operating.md', 'replicas.md', 'guarantees.md', 'troubleshooting.md', 'PERFORMANCE.md'];

const markdownFiles = [README, ...docPages.map((name) => path.join(DOCS, name))];
const shown = (file: string) => path.relative(REPO, file).split(path.sep).join('/');

/** The text with fenced code blocks and inline code blanked out (same length, same line breaks), so nothing in them counts as a link or heading. */
function withoutCode(text: string): string {
  const blank = (s: string) => s.replace(/[^\n]/g, ' ');
  const lines = text.split('\n');
  let fence: string | undefined;
  const prose = lines.map((line) => {
    const marker = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence === undefined) {
      if (marker === undefined) return line;
      fence = marker;
      return blank(line);
    }
    if (marker !== undefined && marker[0] === fence[0] && marker.length >= fence.length && line.trim() === marker) fence = undefined;
    return blank(line);
  });
  // An inline code span ends at the same run of backticks, within its paragraph.
  return prose.join('\n').replace(/(`+)(?!`)(?:(?!\n[ \t]*\n)[\s\S])*?[^`]\1(?!`)/g, blank);
}

interface Link {
  readonly line: number;
  readonly target: string;
}

/** Every inline link and image (`[text](target)`, `![alt](target)`) and reference definition (`[ref]: target`) outside code. */
function linksIn(text: string): Link[] {
  const prose = withoutCode(text);
  const links: Link[] = [];
  const at = (index: number) => prose.slice(0, index).split('\n').length;
  for (const match of prose.matchAll(/!?\[[^\]]*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g)) {
    links.push({ line: at(match.index), target: match[1]!.replace(/^<|>$/g, '') });
  }
  for (const match of prose.matchAll(/^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)/gm)) {
    links.push({ line: at(match.index), target: match[1]!.replace(/^<|>$/g, '') });
  }
  return links;
}

/** GitHub's anchor for a heading: its rendered text lowercased, punctuation but `-` and `_` dropped, each space a `-`. */
function slug(heading: string): string {
  const rendered = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, '')
    .replace(/`/g, '');
  return rendered
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** The anchors of every heading of a markdown text (ATX and setext), a repeated one suffixed `-1`, `-2`… as GitHub does. */
function anchorsOf(text: string): Set<string> {
  const lines = text.split('\n');
  const blanked = withoutCode(text).split('\n');
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const add = (heading: string) => {
    const base = slug(heading);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  };
  blanked.forEach((prose, i) => {
    // Headings are found outside fenced code, but their text keeps its inline code (GitHub drops only the backticks).
    if (prose.trim() === '' && lines[i]!.trim() !== '') return;
    const atx = /^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/.exec(lines[i]!);
    if (atx) {
      add(atx[1] ?? '');
      return;
    }
    const next = blanked[i + 1];
    if (next !== undefined && /^ {0,3}(=+|-+)[ \t]*$/.test(next) && prose.trim() !== '' && !/^ {0,3}([-*+]|\d+[.)])[ \t]|^ {0,3}[|>]/.test(prose)) add(lines[i]!.trim());
  });
  return anchors;
}

/** What is wrong with each relative link of one markdown file, one line per problem naming the file, the line and the link. */
function brokenLinks(file: string): string[] {
  const problems: string[] = [];
  for (const { line, target } of linksIn(fs.readFileSync(file, 'utf8'))) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) continue; // https:, mailto: and other absolute URLs are not checked
    const where = `${shown(file)}:${line}: link (${target})`;
    const hash = target.indexOf('#');
    const pathPart = decodeURIComponent(hash === -1 ? target : target.slice(0, hash));
    const anchor = hash === -1 ? undefined : decodeURIComponent(target.slice(hash + 1));
    const resolved = pathPart === '' ? file : path.resolve(path.dirname(file), pathPart);
    if (path.relative(REPO, resolved).startsWith('..')) {
      problems.push(`${where}: points outside the repository, at ${resolved}`);
      continue;
    }
    if (!fs.existsSync(resolved)) {
      problems.push(`${where}: ${shown(resolved)} does not exist`);
      continue;
    }
    if (anchor === undefined) continue;
    if (!resolved.endsWith('.md') || !fs.statSync(resolved).isFile()) {
      problems.push(`${where}: has an anchor, but ${shown(resolved)} is not a markdown file`);
      continue;
    }
    if (!anchorsOf(fs.readFileSync(resolved, 'utf8')).has(anchor)) {
      problems.push(`${where}: ${shown(resolved)} has no heading whose anchor is #${anchor}`);
    }
  }
  return problems;
}

describe('the README', () => {
  const text = fs.readFileSync(README, 'utf8');

  it(`is at most ${MAX_README_BYTES} bytes: the reference lives in docs/`, () => {
    const size = fs.statSync(README).size;
    expect(size, `README.md is ${size} bytes, over ${MAX_README_BYTES}: move reference text to docs/`).toBeLessThanOrEqual(MAX_README_BYTES);
  });

  it('names the test command, npm test', () => {
    expect(text.includes('npm test'), 'README.md does not contain "npm test" (CI checks that the README names its test command)').toBe(true);
  });

  it('links every page of the documentation', () => {
    const linked = new Set(linksIn(text).map(({ target }) => path.resolve(REPO, decodeURIComponent(target.split('#')[0]!))));
    const missing = [...new Set([...REQUIRED_PAGES, ...docPages])].filter((name) => !linked.has(path.join(DOCS, name))).map((name) => `README.md: no link to docs/${name}`);
    expect(missing).toEqual([]);
  });
});

describe('relative links and images', () => {
  it.each(markdownFiles.map((file) => [shown(file), file] as const))('%s: every target and anchor exists', (_name, file) => {
    expect(brokenLinks(file)).toEqual([]);
  });
});

describe('the link checker itself', () => {
  it("makes GitHub's anchors", () => {
    expect(slug('Reading the summary: `cloudflare.summary_paging`')).toBe('reading-the-summary-cloudflaresummary_paging');
    expect(slug('Opsgenie and Jira Service Management (`type: opsgenie`)')).toBe('opsgenie-and-jira-service-management-type-opsgenie');
    expect(slug('How `npm run bench` measures')).toBe('how-npm-run-bench-measures');
    expect(slug('Footprint (issue 17)')).toBe('footprint-issue-17');
    expect([...anchorsOf('# A\n\n## Notes\n\n```\n# not a heading\n```\n\n## Notes\n\nSetext\n---\n')]).toEqual(['a', 'notes', 'notes-1', 'setext']);
  });

  it('ignores links in code, and finds the rest', () => {
    const text = ['See [a](a.md#x) and ![b](img/b.png "title").', '`[not](inline.md)` and ``[nor](this.md)``', '```md', '[nor](fenced.md)', '```', '[ref]: <c d.md>'].join('\n');
    expect(linksIn(text)).toEqual([
      { line: 1, target: 'a.md#x' },
      { line: 1, target: 'img/b.png' },
      { line: 6, target: 'c d.md' },
    ]);
  });
});
