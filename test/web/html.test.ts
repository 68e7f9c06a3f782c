import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { escapeText, Html, href, html, query } from '../../src/web/html.ts';

/**
 * The console's only way to make markup (src/web/html.ts): every value put
 * into an `html` template is text unless it is itself an `html` template, so
 * a name, email, reason or error from the API can never become markup.
 */

const XSS = '<img src=x onerror=alert(1)>';

describe('html escapes what it is given', () => {
  it('an interpolated string is text: tags, quotes, backticks and ampersands', () => {
    expect(html`<p>${XSS}</p>`.toString()).toBe('<p>&lt;img src=x onerror=alert(1)&gt;</p>');
    expect(html`<a title="${`" onmouseover="alert(1)`}">x</a>`.toString()).toBe('<a title="&quot; onmouseover=&quot;alert(1)">x</a>');
    expect(html`<a title='${"' onfocus='alert(1)"}'>x</a>`.toString()).toBe("<a title='&#39; onfocus=&#39;alert(1)'>x</a>");
    expect(html`${'`${x}`'}`.toString()).toBe('&#96;${x}&#96;');
    expect(html`${'Tom & Jerry &amp; co'}`.toString()).toBe('Tom &amp; Jerry &amp;amp; co');
  });

  it('the template text itself is markup, as written', () => {
    expect(html`<b class="x">bold</b>`.toString()).toBe('<b class="x">bold</b>');
    expect(html``.toString()).toBe('');
  });

  it('a nested html template is kept as markup, its own values escaped', () => {
    const inner = html`<i>${XSS}</i>`;
    expect(html`<p>${inner}</p>`.toString()).toBe('<p><i>&lt;img src=x onerror=alert(1)&gt;</i></p>');
    expect(html`${html`${html`<br>`}`}`.toString()).toBe('<br>');
  });

  it('an object that only looks like markup is text', () => {
    const forged = { toString: () => '<script>alert(1)</script>' };
    expect(html`${forged as unknown as string}`.toString()).toBe('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html`<p>x</p>`).toBeInstanceOf(Html);
  });

  it('arrays are joined with nothing between, each element rendered as itself (nested arrays too)', () => {
    expect(html`<ul>${['a', '<b>', html`<li>c</li>`, 4, null, false, undefined, ['<x>', html`<y>`]]}</ul>`.toString()).toBe('<ul>a&lt;b&gt;<li>c</li>4&lt;x&gt;<y></ul>');
    expect(html`<ul>${[]}</ul>`.toString()).toBe('<ul></ul>');
  });

  it('null, undefined and false render nothing; numbers render, 0 included', () => {
    expect(html`[${null}|${undefined}|${false}]`.toString()).toBe('[||]');
    expect(html`${0} ${42} ${-1.5} ${Number.NaN}`.toString()).toBe('0 42 -1.5 NaN');
    expect(html`${''}`.toString()).toBe('');
  });

  it('a condition && markup shows the markup or nothing', () => {
    const show = (on: boolean) => html`<p>${on && html`<em>on</em>`}</p>`.toString();
    expect(show(true)).toBe('<p><em>on</em></p>');
    expect(show(false)).toBe('<p></p>');
  });
});

describe('bidirectional overrides and control characters are shown as their code', () => {
  it.each([
    ['\u202e', '⟨U+202E⟩'],
    ['\u202a', '⟨U+202A⟩'],
    ['\u202b', '⟨U+202B⟩'],
    ['\u202c', '⟨U+202C⟩'],
    ['\u202d', '⟨U+202D⟩'],
    ['\u2066', '⟨U+2066⟩'],
    ['\u2067', '⟨U+2067⟩'],
    ['\u2068', '⟨U+2068⟩'],
    ['\u2069', '⟨U+2069⟩'],
    ['\u200e', '⟨U+200E⟩'],
    ['\u200f', '⟨U+200F⟩'],
    ['\u061c', '⟨U+061C⟩'],
    ['\u0000', '⟨U+0000⟩'],
    ['\u0007', '⟨U+0007⟩'],
    ['\u001b', '⟨U+001B⟩'],
    ['\u007f', '⟨U+007F⟩'],
    ['\u0085', '⟨U+0085⟩'],
    ['\u009f', '⟨U+009F⟩'],
  ])('%j → %s', (char, shown) => {
    expect(html`<p>${`a${char}b`}</p>`.toString()).toBe(`<p>a${shown}b</p>`);
  });

  it('a name that reorders what follows it reads as it is stored', () => {
    expect(escapeText('Invoice\u202egnp.exe')).toBe('Invoice⟨U+202E⟩gnp.exe');
    expect(escapeText('\u2067admin\u2069 <b>')).toBe('⟨U+2067⟩admin⟨U+2069⟩ &lt;b&gt;');
  });

  it('tab and line breaks, and ordinary letters of any script, are left as they are', () => {
    expect(escapeText('a\tb\nc\r\nd')).toBe('a\tb\nc\r\nd');
    expect(escapeText('Zoë 山田 שלום 😀')).toBe('Zoë 山田 שלום 😀');
  });
});

describe('href makes a link to one of our own pages', () => {
  it('encodes each segment, so a slash or a dot-dot inside a value stays inside its segment', () => {
    expect(href('users', 'a/b', '../x')).toBe('/users/a%2Fb/..%2Fx');
    const url = new URL(href('users', 'a/b', '../x'), 'https://console.example');
    expect(url.origin).toBe('https://console.example');
    expect(url.pathname.split('/').slice(1).map(decodeURIComponent)).toEqual(['users', 'a/b', '../x']);
  });

  it('a value cannot make it another scheme or host', () => {
    for (const evil of ['//evil.example', 'javascript:alert(1)', 'https://evil.example/', '\\\\evil.example', '?a=1#x', '%2F%2Fevil']) {
      const link = href(evil);
      expect(link.startsWith('/')).toBe(true);
      expect(link.startsWith('//')).toBe(false);
      expect(new URL(link, 'https://console.example').origin).toBe('https://console.example');
      expect(decodeURIComponent(link.slice(1))).toBe(evil);
    }
    expect(href('users', '?a=1#x')).toBe('/users/%3Fa%3D1%23x');
  });

  it('an empty first value does not make it a protocol-relative link (//host)', () => {
    expect(href('', 'evil.example')).toBe('/evil.example');
    expect(href('', '', 'evil.example')).toBe('/evil.example');
    expect(new URL(href('', 'evil.example'), 'https://console.example').origin).toBe('https://console.example');
    expect(href()).toBe('/');
  });

  it('property: for any segments, the link stays on our origin and, short of dot segments, decodes to them', () => {
    const segment = fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: fc.constantFrom('/', '\\', '.', ':', '?', '#', '%', '@', ' ', 'a', 'é') }));
    fc.assert(
      fc.property(fc.array(segment, { maxLength: 5 }), (segments) => {
        const link = href(...segments);
        const url = new URL(link, 'https://console.example');
        expect(url.origin).toBe('https://console.example');
        expect(link.startsWith('/')).toBe(true);
        // '.', '..' (and an empty segment) are what URL resolution itself removes; every other value comes back whole.
        if (segments.length > 0 && segments.every((s) => s !== '' && s !== '.' && s !== '..' && s.isWellFormed())) {
          expect(url.pathname.split('/').slice(1).map(decodeURIComponent)).toEqual(segments);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('query makes a query string', () => {
  it('from the values given, empty ones left out', () => {
    expect(query({ level: 'high', account: undefined, page: '', n: 0, m: 2 })).toBe('?level=high&n=0&m=2');
    expect(query({})).toBe('');
    expect(query({ level: undefined, account: '' })).toBe('');
  });

  it('encodes names and values', () => {
    expect(query({ sink: 'a&b=c', next: '/x?y#z', 'we ird': 'é' })).toBe('?sink=a%26b%3Dc&next=%2Fx%3Fy%23z&we+ird=%C3%A9');
    expect(new URLSearchParams(query({ sink: 'a&b=c' })).get('sink')).toBe('a&b=c');
  });
});

describe('property: any string interpolated as text cannot make markup', () => {
  /** Strings of any code points, and strings built of exactly the characters that matter here. */
  const anyText = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 60 }),
    fc.string({ unit: fc.constantFrom('<', '>', '"', "'", '`', '&', '/', '=', ';', '#', 'a', ' ', '\u202e', '\u2066', '\u200f', '\u0000', '\u007f', '⟨', '⟩'), maxLength: 60 }),
  );

  it('html`<p>${s}</p>` is <p>, then text with no < > " \' `, then </p>', () => {
    fc.assert(
      fc.property(anyText, (s) => {
        const out = html`<p>${s}</p>`.toString();
        expect(out.startsWith('<p>')).toBe(true);
        expect(out.endsWith('</p>')).toBe(true);
        const inner = out.slice('<p>'.length, -'</p>'.length);
        expect(inner).not.toMatch(/[<>"'`]/);
        // Every & starts one of the entities escapeText writes: nothing in s can spell another.
        expect(inner.replace(/&(amp|lt|gt|quot|#39|#96);/g, '')).not.toContain('&');
        expect(inner).not.toMatch(/[\u202a-\u202e\u2066-\u2069\u200e\u200f\u0000-\u0008\u007f]/);
      }),
      { numRuns: 1000 },
    );
  });

  it('and it reads back as the string it was: the entities and codes undone give s again', () => {
    const readBack = (text: string) =>
      text
        .replace(/⟨U\+([0-9A-F]{4,6})⟩/g, (_, hex: string) => String.fromCodePoint(Number.parseInt(hex, 16)))
        .replace(/&(amp|lt|gt|quot|#39|#96);/g, (_, name: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'", '#96': '`' })[name]!);
    fc.assert(
      // A string that itself spells ⟨U+…⟩ reads the same as the character it names: that is the point of showing codes.
      fc.property(
        anyText.filter((s) => !s.includes('⟨')),
        (s) => {
          expect(readBack(escapeText(s))).toBe(s);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
