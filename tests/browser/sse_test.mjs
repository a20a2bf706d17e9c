// sse_test.mjs — the web UI's event stream (web/src/sse.ts) without a browser: the SSE parser on
// awkward framing, and EventStream against a scripted fetch: it resumes with Last-Event-ID after
// a drop, hands each seq on once, reads `type` from the data whatever the `event:` name, and
// stops for good after the terminal status or a 204. node's test runner.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ah-sse-'));
const out = path.join(dir, 'sse.mjs');
await esbuild.build({ entryPoints: [path.join(here, '..', '..', 'web', 'src', 'sse.ts')],
                      outfile: out, format: 'esm', bundle: true, logLevel: 'error' });
const { SseParser, EventStream } = await import(pathToFileURL(out).href);
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

function parse(chunks) {
    const got = [];
    const p = new SseParser((data, id, event) => got.push({ data, id, event }));
    for (const c of chunks) p.push(c);
    return got;
}

test('frames split anywhere, CRLF and CR line ends, comments, multi-line data', () => {
    const text = ': keep-alive\r\nid: 1\r\nevent: thinking\r\ndata: {"a":\r\ndata: 1}\r\n\r\nid: 2\rdata: x\r\r';
    for (let cut = 0; cut <= text.length; cut++) {
        const got = parse([text.slice(0, cut), text.slice(cut)]);
        assert.deepEqual(got, [{ data: '{"a":\n1}', id: '1', event: 'thinking' },
                               { data: 'x', id: '2', event: 'message' }], `cut at ${cut}`);
    }
});

test('a CRLF split across chunks (with an empty chunk between) is one line end', () => {
    assert.deepEqual(parse(['data: a\r', '', '\n\r\n']).map((f) => f.data), ['a']);
    assert.deepEqual(parse(['data: a\r', '\n', '\r', '\n']).map((f) => f.data), ['a']);
});

test('a frame without data dispatches nothing; "data" without colon is an empty line', () => {
    assert.deepEqual(parse(['event: status\n\n']), []);
    assert.deepEqual(parse(['data\n\n']).map((f) => f.data), ['']);
});

const ev = (seq, type = 'log', extra = {}) => ({ type, seq, sessionId: 'S', ts: '2026-01-01T00:00:00Z', ...extra });
const frame = (e, name) => `id: ${e.seq}\nevent: ${name ?? e.type}\ndata: ${JSON.stringify(e)}\n\n`;

function body(text) {
    return new ReadableStream({
        start(c) { c.enqueue(new TextEncoder().encode(text)); c.close(); },
    });
}

// Runs an EventStream against answers given in order; resolves when it reports ended/failed.
function follow(answers) {
    const requests = [];
    const events = [];
    const states = [];
    globalThis.fetch = async (url, init) => {
        requests.push({ url: String(url), lastEventId: init.headers['Last-Event-ID'] });
        const a = answers.shift();
        if (!a) return new Promise(() => {}); /* no more answers: hang (the test fails by timeout) */
        if (a === 'refuse') throw new TypeError('connection refused');
        return new Response(a.status === 204 ? null : body(a.text ?? ''), { status: a.status ?? 200 });
    };
    return new Promise((resolve) => {
        const s = new EventStream('S', {
            onEvent(e) { events.push(e); },
            onState(st) {
                states.push(st);
                if (st === 'ended' || st === 'failed') { s.close(); resolve({ requests, events, states }); }
            },
        });
    });
}

test('resume after a drop and a refused connection: Last-Event-ID, no repeats, ends at the terminal status', async () => {
    const r = await follow([
        { text: frame(ev(1)) + frame(ev(2, 'thought', { thought: 't' }), 'thinking') },
        'refuse',
        // the server replays from an older point: 2 again must be dropped
        { text: frame(ev(2, 'thought', { thought: 't' }), 'thinking') + frame(ev(3, 'tool_use'), 'tool_execution') +
                frame(ev(4, 'status', { status: 'completed' }), 'status') },
    ]);
    assert.deepEqual(r.events.map((e) => [e.seq, e.type]), [[1, 'log'], [2, 'thought'], [3, 'tool_use'], [4, 'status']]);
    assert.equal(r.requests[0].lastEventId, undefined);
    assert.equal(r.requests[1].lastEventId, '2');
    assert.equal(r.requests[2].lastEventId, '2');
    assert.equal(r.requests.length, 3, 'no request after the terminal status');
    assert.ok(r.states.includes('reconnecting'));
    assert.equal(r.states.at(-1), 'ended');
});

test('a 204 ends the stream (nothing more will come)', async () => {
    const r = await follow([{ text: frame(ev(1)) }, { status: 204 }]);
    assert.deepEqual(r.events.map((e) => e.seq), [1]);
    assert.equal(r.requests[1].lastEventId, '1');
    assert.equal(r.states.at(-1), 'ended');
});

test('a 404 fails without retrying; a 503 is retried', async () => {
    const gone = await follow([{ status: 404, text: '{"detail":"no session S"}' }]);
    assert.equal(gone.states.at(-1), 'failed');
    assert.equal(gone.requests.length, 1);
    const later = await follow([{ status: 503, text: '{}' }, { status: 204 }]);
    assert.equal(later.requests.length, 2);
    assert.equal(later.states.at(-1), 'ended');
});

test('the first request asks for the last N events of a card (tail), a resume does not', async () => {
    const requests = [];
    globalThis.fetch = async (url, init) => {
        requests.push({ url: String(url), lastEventId: init.headers['Last-Event-ID'] });
        return requests.length === 1 ? new Response(body(frame(ev(7)))) : new Response(null, { status: 204 });
    };
    await new Promise((resolve) => {
        const s = new EventStream('S', { tail: 3, onEvent() {}, onState(st) { if (st === 'ended') { s.close(); resolve(); } } });
    });
    assert.match(requests[0].url, /\/api\/v1\/sessions\/S\/events\?tail=3$/);
    assert.doesNotMatch(requests[1].url, /tail=/);
    assert.equal(requests[1].lastEventId, '7');
});
