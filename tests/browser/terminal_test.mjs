// terminal_test.mjs — the web UI's terminal screen (web/src/terminal.ts) on byte sequences
// agent CLIs print: colours, carriage-return progress lines, erasing, cursor movement, wrapping,
// scrollback, and sequences it does not draw (consumed, never shown). node's test runner.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ah-term-')), 'terminal.mjs');
await esbuild.build({ entryPoints: [path.join(here, '..', '..', 'web', 'src', 'terminal.ts')],
                      outfile: out, format: 'esm', bundle: true, logLevel: 'error' });
const { Screen, runs } = await import(pathToFileURL(out).href);
test.after(() => fs.rmSync(path.dirname(out), { recursive: true, force: true }));

const text = (s) => s.lines.map((l) => l.map((c) => c.ch).join('')).join('\n').replace(/\n+$/, '');

test('plain lines and CRLF', () => {
    const s = new Screen(20, 4);
    s.write('hello\r\nworld\r\n');
    assert.equal(text(s), 'hello\nworld');
});

test('a carriage return overwrites a progress line; erase to the end of line', () => {
    const s = new Screen(20, 4);
    s.write('50% done\r100%\x1b[K');
    assert.equal(text(s), '100%');
});

test('SGR colours become runs with classes; reset ends them', () => {
    const s = new Screen(40, 2);
    s.write('a\x1b[1;31mred\x1b[0mb\x1b[92mg\x1b[39m');
    const r = runs(s.lines[0]);
    assert.deepEqual(r.map((x) => [x.text, x.cls]), [['a', ''], ['red', 't-fg1 t-b'], ['b', ''], ['g', 't-fg10']]);
});

test('cursor positioning and clearing the screen', () => {
    const s = new Screen(10, 3);
    s.write('xxxxx\r\nyyyyy\x1b[2J\x1b[2;3HZ');
    assert.equal(text(s), '\n  Z');
});

test('long lines wrap at the width; scrollback keeps what scrolled off', () => {
    const s = new Screen(4, 2);
    s.write('abcdefgh\r\nij');
    assert.equal(text(s), 'abcd\nefgh\nij');
});

test('title (OSC) and private modes are consumed, not drawn', () => {
    const s = new Screen(20, 2);
    s.write('\x1b]0;my title\x07\x1b[?25l\x1b[?1049hok\x1b(B');
    assert.equal(text(s), 'ok');
});

test('scrollback is bounded', () => {
    const s = new Screen(10, 5);
    let big = '';
    for (let i = 0; i < 7000; i++) big += `line ${i}\r\n`;
    s.write(big);
    assert.ok(s.lines.length <= 5000 + 5, String(s.lines.length));
    assert.match(text(s), /line 6999$/);
});

test('a resize keeps the content', () => {
    const s = new Screen(10, 5);
    s.write('one\r\ntwo');
    s.resize(20, 3);
    assert.equal(s.cols, 20);
    assert.match(text(s), /one\ntwo/);
});
