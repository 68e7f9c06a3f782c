/** The console's one stylesheet, served at /console.css (no inline style: the CSP allows only 'self'). Readable on a phone. */
export const STYLESHEET = `
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #ffffff; --muted: #57606a; --line: #d0d7de; --high: #a40e26; --medium: #7d4e00; --low: #1a7f37; --link: #0550ae; --note: #ddf4ff; --bad: #ffebe9; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #30363d; --high: #ff7b72; --medium: #e3b341; --low: #56d364; --link: #79c0ff; --note: #0c2d6b; --bad: #490202; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: center; padding: .5rem 1rem; border-bottom: 1px solid var(--line); }
header nav ul { display: flex; flex-wrap: wrap; gap: .25rem 1rem; list-style: none; margin: 0; padding: 0; }
header .brand { font-weight: 700; }
main { padding: 1rem; max-width: 80rem; }
footer { padding: 0 1rem 1rem; }
a { color: var(--link); }
h1 { font-size: 1.5rem; margin: .25rem 0 1rem; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; min-width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
th { font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.level-high { color: var(--high); font-weight: 700; }
.level-medium { color: var(--medium); font-weight: 600; }
.level-low { color: var(--low); }
.muted { color: var(--muted); }
.note { background: var(--note); padding: .5rem .75rem; border-radius: 4px; }
.error { background: var(--bad); padding: .5rem .75rem; border-radius: 4px; }
form.inline { display: inline; }
fieldset { border: 1px solid var(--line); border-radius: 4px; margin: 0 0 1rem; max-width: 40rem; }
label { display: block; margin: .5rem 0 .15rem; font-weight: 600; }
input, select, button { font: inherit; padding: .3rem .5rem; max-width: 100%; }
input[type=text], input[type=password], select { width: 100%; }
button { cursor: pointer; }
.filters { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: end; margin-bottom: 1rem; }
.filters label { margin: 0; }
.pages { display: flex; gap: 1rem; margin-top: 1rem; }
ul.plain { margin: 0; padding-left: 1.2rem; }
`;
